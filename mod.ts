/**
 * `dist`: fetch container images from OCI and Docker registries into a local content-addressable
 * store, and turn them into runtime bundles.
 *
 * @module
 */
export * from "./content/mod.ts";
export * from "./remotes/mod.ts";
