/**
 * Runtime bundles: an image unpacked into a root filesystem, and the OCI runtime `config.json`
 * made from its configuration.
 *
 * @module
 */
export * from "./unpack.ts";
export * from "./runtime_spec.ts";
