/**
 * The blob store: committed content under `blobs/`, ingests (writes in progress, locked per ref
 * across processes), and where the store lives.
 *
 * @module
 */
export * from "./capabilities.ts";
export * from "./store.ts";
export * from "./write_blob.ts";
export * from "./root.ts";
export * from "./short_digest.ts";
