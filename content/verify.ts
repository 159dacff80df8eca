/**
 * A pass-through stream that checks the size and digest of what flows through it.
 *
 * @module
 */
import { type Digest, digestAlgorithm, Digester } from "./digest.ts";
import { DigestMismatchError, SizeMismatchError } from "./errors.ts";

/** What {@link verifyStream} expects, and a label for its error messages. */
export interface VerifyOptions {
  /** The expected digest. */
  digest: Digest;
  /** The expected size in bytes; checked as bytes arrive, so an overlong stream fails early. */
  size: number;
  /** Names the content in errors, e.g. a reference or a digest. */
  label?: string;
}

/**
 * Returns a `TransformStream` that passes bytes through unchanged and errors with
 * {@link SizeMismatchError} or {@link DigestMismatchError} when they do not match `options`.
 */
export function verifyStream(options: VerifyOptions): TransformStream<Uint8Array, Uint8Array> {
  const digester = new Digester(digestAlgorithm(options.digest));
  const label = options.label ?? options.digest;
  let received = 0;
  return new TransformStream({
    transform(chunk, controller) {
      received += chunk.byteLength;
      if (received > options.size) {
        throw new SizeMismatchError(
          `cannot verify ${label}: expected size ${options.size}, got more than that`,
        );
      }
      digester.update(chunk);
      controller.enqueue(chunk);
    },
    flush() {
      if (received !== options.size) {
        throw new SizeMismatchError(
          `cannot verify ${label}: expected size ${options.size}, got ${received}`,
        );
      }
      const actual = digester.digest();
      if (actual !== options.digest) {
        throw new DigestMismatchError(
          `cannot verify ${label}: expected digest ${options.digest}, got ${actual}`,
        );
      }
    },
  });
}
