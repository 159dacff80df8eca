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
// the OCI vocabulary
export * from "./errors.ts";
export * from "./digest.ts";
export * from "./descriptor.ts";
export * from "./platform.ts";
export * from "./reference.ts";
export * from "./verify.ts";
// the groups, by role
export * from "./store/mod.ts";
export * from "./images/mod.ts";
export * from "./layers/mod.ts";
export * from "./bundle/mod.ts";
export * from "./archives/mod.ts";
