/**
 * Typed errors shared by the store, the registry client and the CLI.
 *
 * Every error `dist` throws on purpose extends {@link DistError} and carries a stable `code`,
 * so callers branch on the type (or `code`) and never on message text.
 *
 * @module
 */

/** The stable codes of {@link DistError} subclasses. */
export type DistErrorCode =
  | "not_found"
  | "already_exists"
  | "locked"
  | "size_mismatch"
  | "digest_mismatch"
  | "invalid_argument"
  | "unsafe_entry"
  | "unsupported"
  | "corrupt_content"
  | "registry"
  | "unauthorized"
  | "in_use";

/** Base class of every error `dist` throws deliberately. */
export class DistError extends Error {
  /** A stable, machine-readable code. */
  readonly code: DistErrorCode;

  /** Creates an error with a code and a message (lower-case start, no trailing period). */
  constructor(code: DistErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The named content, ingest or image does not exist. */
export class NotFoundError extends DistError {
  /** Creates a not-found error. */
  constructor(message: string, options?: ErrorOptions) {
    super("not_found", message, options);
  }
}

/** The content already exists; most callers treat this as success. */
export class AlreadyExistsError extends DistError {
  /** Creates an already-exists error. */
  constructor(message: string, options?: ErrorOptions) {
    super("already_exists", message, options);
  }
}

/** Another writer holds the ingest; retry later or wait. */
export class LockedError extends DistError {
  /** When the current holder took the lock, if known. */
  readonly since?: Date;

  /** Creates a locked error; `since` is when the holder took the lock. */
  constructor(message: string, since?: Date, options?: ErrorOptions) {
    super("locked", message, options);
    this.since = since;
  }
}

/** The number of bytes differs from the expected size. */
export class SizeMismatchError extends DistError {
  /** Creates a size-mismatch error. */
  constructor(message: string, options?: ErrorOptions) {
    super("size_mismatch", message, options);
  }
}

/** The content's digest differs from the expected digest. */
export class DigestMismatchError extends DistError {
  /** Creates a digest-mismatch error. */
  constructor(message: string, options?: ErrorOptions) {
    super("digest_mismatch", message, options);
  }
}

/** A caller passed a malformed value (digest, reference, duration, flag value…). */
export class InvalidArgumentError extends DistError {
  /** Creates an invalid-argument error. */
  constructor(message: string, options?: ErrorOptions) {
    super("invalid_argument", message, options);
  }
}

/** An archive or layer entry would write outside its target directory. */
export class UnsafeEntryError extends DistError {
  /** Creates an unsafe-entry error. */
  constructor(message: string, options?: ErrorOptions) {
    super("unsafe_entry", message, options);
  }
}

/** The content is of a kind `dist` does not handle (for example a schema 1 manifest). */
export class UnsupportedError extends DistError {
  /** Creates an unsupported error. */
  constructor(message: string, options?: ErrorOptions) {
    super("unsupported", message, options);
  }
}

/** Stored or received content cannot be parsed: a truncated tar, bad gzip, malformed JSON. */
export class CorruptContentError extends DistError {
  /** Creates a corrupt-content error. */
  constructor(message: string, options?: ErrorOptions) {
    super("corrupt_content", message, options);
  }
}

/** The content is in use (an image record reaches it): removing it would break that image. */
export class InUseError extends DistError {
  /** Creates an in-use error. */
  constructor(message: string, options?: ErrorOptions) {
    super("in_use", message, options);
  }
}
