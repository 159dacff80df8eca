/**
 * Typed errors of the registry client. Registry error bodies (`{"errors":[{code,message}]}`)
 * become {@link RegistryError}s (or their not-found and unauthorized relatives) that keep the HTTP
 * status and the registry's codes, so callers branch on those and never on message text.
 *
 * @module
 */
import { DistError, NotFoundError } from "../content/errors.ts";

/** One entry of a registry error body (distribution spec "error codes"). */
export interface RegistryErrorEntry {
  /** The registry's code, e.g. `MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `DENIED`, `TOOMANYREQUESTS`. */
  code: string;
  /** The registry's message. */
  message?: string;
  /** Extra detail the registry attached, as sent. */
  detail?: unknown;
}

/** What the registry errors below carry besides their message. */
export interface RegistryErrorOptions extends ErrorOptions {
  /** The HTTP status of the (last) reply; absent when no reply arrived (network error). */
  status?: number;
  /** The entries of the registry's error body. */
  errors?: RegistryErrorEntry[];
  /** Whether trying again later may succeed (5xx, 429, network errors). */
  retryable?: boolean;
}

/** A registry answered with an error, or could not be reached. */
export class RegistryError extends DistError {
  /** The HTTP status of the (last) reply; absent when no reply arrived. */
  readonly status?: number;
  /** The entries of the registry's error body. */
  readonly errors: RegistryErrorEntry[];
  /** Whether trying again later may succeed. */
  readonly retryable: boolean;

  /** Creates a registry error. */
  constructor(message: string, options: RegistryErrorOptions = {}) {
    super("registry", message, options);
    this.status = options.status;
    this.errors = options.errors ?? [];
    this.retryable = options.retryable ?? false;
  }

  /** The registry's error codes, e.g. `["MANIFEST_UNKNOWN"]`. */
  get codes(): string[] {
    return this.errors.map((e) => e.code);
  }
}

/** The registry has no such manifest, blob or repository (404 `MANIFEST_UNKNOWN`, …). */
export class RegistryNotFoundError extends NotFoundError {
  /** The HTTP status of the reply (404). */
  readonly status: number;
  /** The entries of the registry's error body. */
  readonly errors: RegistryErrorEntry[];

  /** Creates a not-found error for a registry reply. */
  constructor(message: string, options: RegistryErrorOptions = {}) {
    super(message, options);
    this.status = options.status ?? 404;
    this.errors = options.errors ?? [];
  }

  /** The registry's error codes, e.g. `["BLOB_UNKNOWN"]`. */
  get codes(): string[] {
    return this.errors.map((e) => e.code);
  }
}

/** The registry (or its token server) refused access, even after authenticating. */
export class UnauthorizedError extends DistError {
  /** The HTTP status of the reply (401 or 403). */
  readonly status?: number;
  /** The entries of the registry's error body. */
  readonly errors: RegistryErrorEntry[];

  /** Creates an unauthorized error. */
  constructor(message: string, options: RegistryErrorOptions = {}) {
    super("unauthorized", message, options);
    this.status = options.status;
    this.errors = options.errors ?? [];
  }

  /** The registry's error codes, e.g. `["UNAUTHORIZED"]`. */
  get codes(): string[] {
    return this.errors.map((e) => e.code);
  }
}
