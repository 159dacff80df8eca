/**
 * SHA-256 (FIPS 180-4) in plain TypeScript, for small content only.
 *
 * Why it exists: the native hasher lives in `node:crypto`, and loading Node's compatibility layer
 * costs a short-lived `dist` process 30–40 ms, more than hashing a few hundred KiB here. Digests of
 * large content still go to the native hasher (see `Digester` in `../digest.ts`).
 *
 * @module
 */

/** The first 32 bits of the fractional part of `root`(p) of each prime p, found exactly. */
function primeRootFractions(count: number, degree: 2n | 3n): Uint32Array {
  const words = new Uint32Array(count);
  const bits = 32n * degree;
  let found = 0;
  for (let p = 2; found < count; p++) {
    let prime = true;
    for (let d = 2; d * d <= p; d++) if (p % d === 0) prime = false;
    if (!prime) continue;
    // floor(root(p) * 2^32) is the integer root of p * 2^(32·degree); Newton's method from above.
    const n = BigInt(p) << bits;
    let x = 1n << (bits / degree + 8n);
    for (;;) {
      const next = ((degree - 1n) * x + n / x ** (degree - 1n)) / degree;
      if (next >= x) break;
      x = next;
    }
    words[found++] = Number(x & 0xffffffffn);
  }
  return words;
}

const K = new Int32Array(primeRootFractions(64, 3n).buffer);
const H0 = primeRootFractions(8, 2n);

/** An incremental SHA-256. */
export class Sha256 {
  readonly #state = H0.slice();
  readonly #block = new Uint8Array(64);
  readonly #words = new Int32Array(64);
  #buffered = 0;
  #length = 0;

  /** Adds bytes to the hash. */
  update(data: Uint8Array): this {
    this.#length += data.length;
    let offset = 0;
    if (this.#buffered > 0) {
      const take = Math.min(64 - this.#buffered, data.length);
      this.#block.set(data.subarray(0, take), this.#buffered);
      this.#buffered += take;
      offset = take;
      if (this.#buffered < 64) return this;
      this.#compress(this.#block, 0, 64);
      this.#buffered = 0;
    }
    const whole = offset + ((data.length - offset) & ~63);
    this.#compress(data, offset, whole);
    this.#block.set(data.subarray(whole));
    this.#buffered = data.length - whole;
    return this;
  }

  /** Finishes the hash: the 32-byte digest. The hasher cannot be used afterwards. */
  digest(): Uint8Array {
    const bitLength = this.#length * 8;
    const tail = this.#buffered < 56 ? 64 : 128;
    const padding = new Uint8Array(tail - this.#buffered);
    padding[0] = 0x80;
    const view = new DataView(padding.buffer);
    view.setUint32(padding.length - 8, Math.floor(bitLength / 2 ** 32));
    view.setUint32(padding.length - 4, bitLength >>> 0);
    this.update(padding);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setUint32(i * 4, this.#state[i]);
    return out;
  }

  #compress(data: Uint8Array, from: number, to: number): void {
    const w = this.#words;
    const s = this.#state;
    let h0 = s[0], h1 = s[1], h2 = s[2], h3 = s[3], h4 = s[4], h5 = s[5], h6 = s[6], h7 = s[7];
    for (let at = from; at < to; at += 64) {
      for (let i = 0; i < 16; i++) {
        const j = at + i * 4;
        w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
      }
      for (let i = 16; i < 64; i++) {
        const a = w[i - 15], b = w[i - 2];
        const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
      for (let i = 0; i < 64; i++) {
        const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        h = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0;
      h1 = (h1 + b) | 0;
      h2 = (h2 + c) | 0;
      h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0;
      h5 = (h5 + f) | 0;
      h6 = (h6 + g) | 0;
      h7 = (h7 + h) | 0;
    }
    s[0] = h0, s[1] = h1, s[2] = h2, s[3] = h3, s[4] = h4, s[5] = h5, s[6] = h6, s[7] = h7;
  }
}
