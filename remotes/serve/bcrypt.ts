/**
 * bcrypt password checks, as `htpasswd -B` and distribution's htpasswd auth store them
 * (`$2a$`, `$2b$`, `$2y$`): Provos and Mazières' EksBlowfish over Schneier's Blowfish.
 *
 * Why our own: the npm package we used imports `node:crypto` at its top, and a single-file bundle
 * hoists that import, so every `dist` command paid 30 ms of Node start-up for a server option.
 *
 * @module
 */

/** The hex digits of π after the point, as 32-bit words: Blowfish's initial P-array and S-boxes. */
function piWords(count: number): Uint32Array {
  // π = 16·atan(1/5) − 4·atan(1/239) (Machin), in fixed point with 64 guard bits
  const bits = BigInt(count * 32 + 64);
  const atanInverse = (x: bigint): bigint => {
    let power = (1n << bits) / x; // 1/x^(2k+1)
    let sum = power;
    const square = x * x;
    for (let k = 1n; power !== 0n; k++) {
      power /= square;
      sum += (k % 2n ? -power : power) / (2n * k + 1n);
    }
    return sum;
  };
  const pi = 16n * atanInverse(5n) - 4n * atanInverse(239n);
  const fraction = (pi >> 64n) & ((1n << BigInt(count * 32)) - 1n);
  const words = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    words[i] = Number((fraction >> BigInt((count - 1 - i) * 32)) & 0xffffffffn);
  }
  return words;
}

let initialState: Uint32Array | undefined; // 18 P words, then 4 × 256 S words

/** Blowfish's state: the P-array and the four S-boxes, in one array. */
class Blowfish {
  readonly state = (initialState ??= piWords(18 + 4 * 256)).slice();
  readonly #block = new Uint32Array(2);

  /** Encrypts the block `[left, right]` in place. */
  encrypt(block: Uint32Array): void {
    const s = this.state;
    let left = block[0], right = block[1];
    for (let i = 0; i < 16; i += 2) {
      left ^= s[i];
      right ^= this.#f(left);
      right ^= s[i + 1];
      left ^= this.#f(right);
    }
    block[0] = right ^ s[17];
    block[1] = left ^ s[16];
  }

  #f(x: number): number {
    const s = this.state;
    const a = s[18 + (x >>> 24)], b = s[274 + ((x >>> 16) & 0xff)];
    const c = s[530 + ((x >>> 8) & 0xff)], d = s[786 + (x & 0xff)];
    return (((a + b) ^ c) + d) | 0;
  }

  /**
   * Mixes `key` into P, then re-encrypts the whole state, XORing `salt`'s words (cycled) into each
   * block first; an all-zero salt is plain Blowfish key expansion.
   */
  expand(key: Uint32Array, salt: Uint32Array): void {
    const s = this.state;
    for (let i = 0; i < 18; i++) s[i] ^= key[i % key.length];
    const block = this.#block;
    block[0] = block[1] = 0;
    for (let i = 0, at = 0; i < s.length; i += 2, at = (at + 2) % salt.length) {
      block[0] ^= salt[at];
      block[1] ^= salt[at + 1];
      this.encrypt(block);
      s[i] = block[0];
      s[i + 1] = block[1];
    }
  }
}

const ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** bcrypt's base64: its own alphabet, no padding, `length` bytes out. */
function decode64(text: string, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let bits = 0, value = 0, n = 0;
  for (const char of text) {
    value = (value << 6) | ALPHABET.indexOf(char);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n < length) out[n++] = (value >> bits) & 0xff;
    }
  }
  return out;
}

function encode64(bytes: Uint8Array): string {
  let text = "", value = 0, bits = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      text += ALPHABET[(value >> bits) & 63];
    }
  }
  return bits > 0 ? text + ALPHABET[(value << (6 - bits)) & 63] : text;
}

/** `bytes`, repeated as needed, read as `count` big-endian 32-bit words. */
function cycledWords(bytes: Uint8Array, count: number): Uint32Array {
  const words = new Uint32Array(count);
  for (let i = 0, at = 0; i < count; i++) {
    for (let j = 0; j < 4; j++, at = (at + 1) % bytes.length) {
      words[i] = (words[i] << 8) | bytes[at];
    }
  }
  return words;
}

const HASH = /^\$2[aby]\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})$/;

/** The bcrypt hash of `password` with the cost and salt of `hash` (a `$2?$CC$` string). */
function rehash(password: string, version: string, cost: number, salt: Uint8Array): string {
  // the key is the password's bytes with their terminating NUL, at most 72 bytes of it
  const key = new Uint8Array([...new TextEncoder().encode(password), 0]).subarray(0, 72);
  const keyWords = cycledWords(key, 18);
  const saltWords = cycledWords(salt, 4);
  const zero = new Uint32Array(2);
  const cipher = new Blowfish();
  cipher.expand(keyWords, saltWords);
  for (let round = 0; round < 2 ** cost; round++) {
    cipher.expand(keyWords, zero);
    cipher.expand(saltWords, zero);
  }
  const text = cycledWords(new TextEncoder().encode("OrpheanBeholderScryDoubt"), 6);
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 6; j += 2) cipher.encrypt(text.subarray(j, j + 2));
  }
  const out = new Uint8Array(24);
  const view = new DataView(out.buffer);
  text.forEach((word, i) => view.setUint32(i * 4, word));
  const costText = String(cost).padStart(2, "0");
  return `$2${version}$${costText}$${encode64(salt)}${encode64(out.subarray(0, 23))}`;
}

/** Whether `hash` is a bcrypt hash this module can check. */
export function isBcryptHash(hash: string): boolean {
  const match = HASH.exec(hash);
  return match !== null && Number(match[1]) >= 4 && Number(match[1]) <= 31;
}

/** Whether `password` matches the bcrypt `hash`; compares in time independent of the match. */
export function bcryptMatches(password: string, hash: string): boolean {
  if (!isBcryptHash(hash)) return false;
  const [, cost, salt] = HASH.exec(hash)!;
  const computed = rehash(password, hash[2], Number(cost), decode64(salt, 16));
  let difference = computed.length ^ hash.length;
  for (let i = 0; i < hash.length; i++) {
    difference |= computed.charCodeAt(i) ^ hash.charCodeAt(i);
  }
  return difference === 0;
}
