/**
 * `dist serve`: a store served as an OCI distribution registry (pull, push, delete, referrers).
 *
 * @module
 */
export * from "./server.ts";
export * from "./errors.ts";
export type { ServeSettings } from "./context.ts";
