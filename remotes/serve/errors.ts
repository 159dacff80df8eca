/**
 * Replies in the distribution API's shape: the JSON error format with the spec's codes, and the
 * headers every reply carries.
 *
 * @module
 */

/** The error codes of the OCI distribution spec that `dist serve` answers with. */
export type ErrorCode =
  | "BLOB_UNKNOWN"
  | "BLOB_UPLOAD_INVALID"
  | "BLOB_UPLOAD_UNKNOWN"
  | "DIGEST_INVALID"
  | "MANIFEST_BLOB_UNKNOWN"
  | "MANIFEST_INVALID"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "SIZE_INVALID"
  | "UNAUTHORIZED"
  | "DENIED"
  | "UNSUPPORTED";

/** An error a handler throws to answer with `status` and the registry error body. */
export class ServeError extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** The spec's code. */
  readonly code: ErrorCode;
  /** Extra headers (a `WWW-Authenticate` challenge, a `Range`). */
  readonly headers: Record<string, string>;

  /** Creates an error answered as `status` with `code` and `message`. */
  constructor(
    status: number,
    code: ErrorCode,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** The headers every reply has. */
export const API_HEADERS: Record<string, string> = {
  "docker-distribution-api-version": "registry/2.0",
};

/** The reply for `error`: its status and `{"errors":[{code,message}]}`. */
export function errorResponse(error: ServeError, method: string): Response {
  const body = JSON.stringify({ errors: [{ code: error.code, message: error.message }] });
  return new Response(method === "HEAD" ? null : body, {
    status: error.status,
    headers: { ...API_HEADERS, "content-type": "application/json", ...error.headers },
  });
}
