/**
 * Helpers that `content/`, `remotes/` and `cli.ts` share: public to the package's own modules,
 * not part of its API (`content/mod.ts` does not re-export them).
 *
 * @module
 */
export * from "./bytes.ts";
export * from "./chunk_reader.ts";
export * from "./direct_stream.ts";
export * from "./env.ts";
export * from "./file_stream.ts";
export * from "./path.ts";
export * from "./sleep.ts";
