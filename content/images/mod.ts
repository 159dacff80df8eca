/**
 * Images: records in `index.json`, the descriptor graph of an image and choosing its platforms,
 * garbage collection and leases.
 *
 * @module
 */
export * from "./records.ts";
export * from "./graph.ts";
export * from "./gc.ts";
export * from "./lease.ts";
export * from "./copy.ts";
export * from "./check.ts";
