/**
 * Content digests: validation, hashing as a stream, and verification.
 *
 * A {@link Digest} is only ever made by {@link parseDigest} (or a hasher), so code that builds a
 * path from one can trust it holds nothing but an algorithm and lower-case hex.
 *
 * @example
 * ```ts
 * import { digestOf, parseDigest } from "./digest.ts";
 * const d = digestOf(new TextEncoder().encode("hello"));
 * console.assert(parseDigest(d) === d);
 * ```
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";
import { Sha256 } from "./internal/sha256.ts";

/** A validated digest string such as `sha256:` followed by 64 lower-case hex digits. */
export type Digest = string & { readonly __brand: "Digest" };

/** The digest algorithms `dist` accepts. */
export type DigestAlgorithm = "sha256" | "sha512";

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST_PATTERN = /^(sha256|sha512):([0-9a-f]+)$/;

/** Returns `value` as a {@link Digest}, or throws {@link InvalidArgumentError} naming it. */
export function parseDigest(value: string): Digest {
  const match = DIGEST_PATTERN.exec(value);
  if (!match || match[2].length !== HEX_LENGTH[match[1] as DigestAlgorithm]) {
    throw new InvalidArgumentError(
      `invalid digest ${JSON.stringify(value)}: want sha256:<64 hex> or sha512:<128 hex>`,
    );
  }
  return value as Digest;
}

/** Reports whether `value` is a well-formed digest. */
export function isDigest(value: string): value is Digest {
  const match = DIGEST_PATTERN.exec(value);
  return match !== null && match[2].length === HEX_LENGTH[match[1] as DigestAlgorithm];
}

/** The algorithm part of a digest. */
export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.slice(0, digest.indexOf(":")) as DigestAlgorithm;
}

/** The hex part of a digest. */
export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(":") + 1);
}

/** A native hasher from `node:crypto`. */
interface NativeHash {
  update(data: Uint8Array): NativeHash;
  copy(): NativeHash;
  digest(encoding: "hex"): string;
}
type NativeCrypto = { createHash(algorithm: string): NativeHash };

/** `node:crypto`, once something loaded it. */
let nativeCrypto: NativeCrypto | undefined;

/**
 * Loads the native hasher now, without blocking. Worth calling early in a command that will hash
 * many blobs: until it is loaded, content up to {@link SMALL_CONTENT} bytes is collected and
 * hashed whole at its end (see {@link Digester}), which costs a copy of it.
 */
export async function preloadNativeHash(): Promise<void> {
  nativeCrypto ??= await import("node:crypto");
}

/** Loads the native hasher synchronously (30–40 ms the first time, in a process that had none). */
function native(): NativeCrypto {
  // deno-lint-ignore no-explicit-any
  nativeCrypto ??= (globalThis as any).process.getBuiltinModule("node:crypto") as NativeCrypto;
  return nativeCrypto;
}

/**
 * Content up to this size is hashed in TypeScript unless the native hasher is already loaded:
 * below it, loading `node:crypto` costs a short process more time than it saves.
 */
export const SMALL_CONTENT = 1 << 20;

/** Buffers for small content, reused by digesters one after another (a few run at once). */
const pendingPool: Uint8Array<ArrayBuffer>[] = [];
const MAX_POOLED = 16;

/**
 * An incremental hasher that yields a {@link Digest}.
 *
 * Until the native hasher is loaded, sha256 bytes are only collected; past
 * {@link SMALL_CONTENT} they go to the native hasher (loading it). Content that ends below that
 * is hashed by Web Crypto ({@link Digester.finish}) or, for synchronous callers, in TypeScript.
 */
export class Digester {
  readonly #algorithm: DigestAlgorithm;
  #hash?: NativeHash;
  /** The content so far while it is small: a buffer of {@link SMALL_CONTENT} from the pool. */
  #pending?: Uint8Array<ArrayBuffer>;
  #pendingBytes = 0;
  /** Whether the content is known to be past {@link SMALL_CONTENT}. */
  readonly #large: boolean;

  /**
   * Starts a hash with `algorithm` (default sha256). Content known to be past
   * {@link SMALL_CONTENT} (`size`) goes to the native hasher from its first byte.
   */
  constructor(algorithm: DigestAlgorithm = "sha256", size?: number) {
    this.#algorithm = algorithm;
    this.#large = (size ?? 0) > SMALL_CONTENT;
    if (nativeCrypto || algorithm !== "sha256") this.#hash = native().createHash(algorithm);
  }

  /** Adds bytes to the hash. */
  update(chunk: Uint8Array): void {
    // the native hasher may have loaded since this digester was made (see preloadNativeHash);
    // large content loads it (here, not at the start: the load takes 20–30 ms of this thread)
    if (!this.#hash && (nativeCrypto || this.#large) && this.#pendingBytes === 0) {
      this.#hash = native().createHash(this.#algorithm);
    }
    if (this.#hash) {
      this.#hash.update(chunk);
      return;
    }
    if (chunk.length === 0) return;
    if (this.#pendingBytes + chunk.length <= SMALL_CONTENT) {
      // copied (the caller may reuse its buffer) into memory used before: fresh memory costs a
      // page fault every 4 KiB, more than the copy
      this.#pending ??= pendingPool.pop() ?? new Uint8Array(SMALL_CONTENT);
      this.#pending.set(chunk, this.#pendingBytes);
      this.#pendingBytes += chunk.length;
      return;
    }
    this.#hash = native().createHash(this.#algorithm);
    this.#hash.update(this.#small());
    this.#hash.update(chunk);
    this.#givePendingBack();
  }

  /** The digest of the bytes so far; hashing can go on. */
  peek(): Digest {
    return this.#hash ? this.#format(this.#hash.copy().digest("hex")) : this.#smallDigest();
  }

  /** Finishes the hash; the digester cannot be used afterwards. */
  digest(): Digest {
    if (this.#hash) return this.#format(this.#hash.digest("hex"));
    const digest = this.#smallDigest();
    this.#givePendingBack();
    return digest;
  }

  /**
   * {@link digest}, for callers that can wait: small content goes to Web Crypto, which hashes it
   * off this thread, and 5× faster than the TypeScript hash in a process that just started.
   */
  async finish(): Promise<Digest> {
    if (this.#hash) return this.digest();
    try {
      const digest = await crypto.subtle.digest("SHA-256", this.#small());
      return this.#format(hexOf(new Uint8Array(digest)));
    } finally {
      this.#givePendingBack(); // only once Web Crypto is done with it
    }
  }

  #small(): Uint8Array<ArrayBuffer> {
    return this.#pending?.subarray(0, this.#pendingBytes) ?? new Uint8Array(0);
  }

  #givePendingBack(): void {
    if (this.#pending && pendingPool.length < MAX_POOLED) pendingPool.push(this.#pending);
    this.#pending = undefined;
    this.#pendingBytes = 0;
  }

  #smallDigest(): Digest {
    return this.#format(hexOf(new Sha256().update(this.#small()).digest()));
  }

  #format(hex: string): Digest {
    return `${this.#algorithm}:${hex}` as Digest;
  }
}

function hexOf(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

/** Computes the digest of bytes held in memory (small content only: manifests, configs). */
export function digestOf(bytes: Uint8Array, algorithm: DigestAlgorithm = "sha256"): Digest {
  const digester = new Digester(algorithm);
  digester.update(bytes);
  return digester.digest();
}

/** Shortens a digest for messages and tables: `sha256:0123456789ab`. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return colon < 0 ? digest : digest.slice(0, colon + 13);
}
