/**
 * Runtime bundles: an unpacked root filesystem and the OCI runtime `config.json` made from the
 * image's configuration.
 *
 * @module
 */
export * from "./runtime_spec.ts";
