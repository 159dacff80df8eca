/**
 * Layers: reading and writing tar streams, decompression, and applying a layer to a root
 * filesystem.
 *
 * @module
 */
export * from "./tar_reader.ts";
export * from "./tar_writer.ts";
export * from "./decompress.ts";
export * from "./apply.ts";
