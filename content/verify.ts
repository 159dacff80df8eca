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
  /**
   * The expected size in bytes, checked as bytes arrive, so an overlong stream fails early;
   * unchecked when not known (the uncompressed content of a layer).
   */
  size?: number;
  /** Names the content in errors, e.g. a reference or a digest. */
  label?: string;
  /** The message of a digest mismatch, given the actual digest (default: names both). */
  mismatch?: (actual: Digest) => string;
}

/**
 * Checks bytes as they arrive against {@link VerifyOptions}: {@link Verifier.update} fails as soon
 * as there are too many, {@link Verifier.finish} when the total or the digest is wrong. For
 * readers that are not streams of their own, such as a BYOB read loop.
 */
export class Verifier {
  readonly #options: VerifyOptions;
  readonly #digester: Digester;
  #received = 0;

  /** Starts checking content that should match `options`. */
  constructor(options: VerifyOptions) {
    this.#options = options;
    this.#digester = new Digester(digestAlgorithm(options.digest), options.size);
  }

  /** Hashes `chunk`; throws {@link SizeMismatchError} once more bytes came than expected. */
  update(chunk: Uint8Array): void {
    this.#received += chunk.byteLength;
    if (this.#options.size !== undefined && this.#received > this.#options.size) {
      throw new SizeMismatchError(
        `cannot verify ${this.#label}: expected size ${this.#options.size}, got more than that`,
      );
    }
    this.#digester.update(chunk);
  }

  /** Throws {@link SizeMismatchError} or {@link DigestMismatchError} unless all matched. */
  async finish(): Promise<void> {
    if (this.#options.size !== undefined && this.#received !== this.#options.size) {
      throw new SizeMismatchError(
        `cannot verify ${this.#label}: expected size ${this.#options.size}, got ${this.#received}`,
      );
    }
    const actual = await this.#digester.finish();
    if (actual !== this.#options.digest) {
      throw new DigestMismatchError(
        this.#options.mismatch?.(actual) ??
          `cannot verify ${this.#label}: expected digest ${this.#options.digest}, got ${actual}`,
      );
    }
  }

  get #label(): string {
    return this.#options.label ?? this.#options.digest;
  }
}

/**
 * A pass-through stream that checks what flows through it: it errors with
 * {@link SizeMismatchError} once more bytes came than expected, and at the end with
 * {@link SizeMismatchError} or {@link DigestMismatchError} unless size and digest matched.
 */
export class VerifyStream extends TransformStream<Uint8Array, Uint8Array> {
  /** Checks content that should match `options`. */
  constructor(options: VerifyOptions) {
    const verifier = new Verifier(options);
    super({
      transform(chunk, controller) {
        verifier.update(chunk);
        controller.enqueue(chunk);
      },
      flush: () => verifier.finish(),
    });
  }
}
