/**
 * Talking to OCI and Docker registries: references, the registry client, authentication,
 * retries and redirects, and copying an image from a registry into a store.
 *
 * @example
 * ```ts
 * import { formatReference, parseReference } from "./mod.ts";
 * console.assert(formatReference(parseReference("redis")) === "docker.io/library/redis:latest");
 * ```
 *
 * @module
 */
export * from "../content/reference.ts";
export * from "./errors.ts";
export * from "./credentials.ts";
export * from "./client.ts";
export * from "./fetch_object.ts";
export * from "./copy.ts";
export * from "./push.ts";
export * from "./hosts.ts";
export * from "./mirrors.ts";
export * from "./referrers.ts";
export * from "./serve/mod.ts";
export * from "./transports.ts";
