/**
 * The local content store: digests, descriptors, blobs, ingests and their locks, image records,
 * unpacking layers into runtime bundles, archives and garbage collection.
 *
 * @example List what a store holds
 * ```ts
 * import { Images, Store } from "./mod.ts";
 *
 * const root = await Deno.makeTempDir();
 * const store = await Store.open(root); // creates an empty OCI image layout
 * for await (const info of store.list()) console.log(info.digest, info.size);
 * console.assert((await new Images(root).list()).length === 0);
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */
export * from "./errors.ts";
export * from "./digest.ts";
export * from "./descriptor.ts";
export * from "./verify.ts";
export * from "./root.ts";
export * from "./store.ts";
export * from "./write_blob.ts";
export * from "./tar.ts";
export * from "./decompress.ts";
export * from "./unpack.ts";
export * from "./bundle.ts";
export * from "./archive.ts";
export * from "./platform.ts";
export * from "./image_graph.ts";
export * from "./images.ts";
export * from "./gc.ts";
