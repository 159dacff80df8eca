/**
 * Image archives: export to and import from docker-archive and OCI image-layout tar files.
 *
 * @module
 */
export * from "./export.ts";
export * from "./import.ts";
