/**
 * `dist`: fetch container images from OCI and Docker registries into a local content-addressable
 * store, and turn them into runtime bundles.
 *
 * The store ({@link Store}) is an OCI image layout on disk; {@link RegistryClient} talks to
 * registries; {@link fetchImage} copies an image from one into the other, and
 * {@link unpackImage} turns a stored image into a runtime bundle.
 *
 * @example Write a blob into a store and read it back
 * ```ts
 * import { digestOf, Store, writeBlob } from "./mod.ts";
 *
 * const root = await Deno.makeTempDir();
 * const store = await Store.open(root);
 * const bytes = new TextEncoder().encode("hello, dist\n");
 * const digest = digestOf(bytes);
 * const info = await writeBlob(store, `layer-${digest}`, [bytes], { digest, size: bytes.length });
 * console.assert(info.size === bytes.length);
 * const back = await store.readBytes(digest);
 * console.assert(new TextDecoder().decode(back) === "hello, dist\n");
 * await Deno.remove(root, { recursive: true }).catch(() => {}); // blobs are read-only files
 * ```
 *
 * @example Fetch an image from a registry (needs a registry to talk to)
 * ```ts ignore
 * import { fetchImage, RegistryClient, Store } from "./mod.ts";
 *
 * const store = await Store.open("/tmp/dist-store");
 * const image = await fetchImage(new RegistryClient(), store, "localhost:5000/app:latest");
 * console.log(image.descriptor.digest);
 * ```
 *
 * @module
 */
export * from "./content/mod.ts";
export * from "./remotes/mod.ts";
