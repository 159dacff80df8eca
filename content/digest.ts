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
import { createHash, type Hash } from "node:crypto";
import { InvalidArgumentError } from "./errors.ts";

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

/** An incremental hasher that yields a {@link Digest}. */
export class Digester {
  readonly #algorithm: DigestAlgorithm;
  readonly #hash: Hash;

  /** Starts a hash with `algorithm` (default sha256). */
  constructor(algorithm: DigestAlgorithm = "sha256") {
    this.#algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  /** Adds bytes to the hash. */
  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
  }

  /** The digest of the bytes so far; hashing can go on. */
  peek(): Digest {
    return `${this.#algorithm}:${this.#hash.copy().digest("hex")}` as Digest;
  }

  /** Finishes the hash; the digester cannot be used afterwards. */
  digest(): Digest {
    return `${this.#algorithm}:${this.#hash.digest("hex")}` as Digest;
  }
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
