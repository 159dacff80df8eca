/**
 * Unpacking a stored image into a runtime bundle ({@link unpackImage}): its layers applied in
 * order into `BUNDLE/rootfs`, then the runtime `config.json` made from its configuration.
 *
 * Everything read from the store is verified on the way, as a cache may have been changed on
 * disk: the manifest and config against their digests, each layer blob against its digest and
 * its uncompressed content against the config's `diff_ids`.
 *
 * @module
 */
import { isIndexType, MediaType } from "../descriptor.ts";
import { type Digest, digestOf, parseDigest, shortDigest } from "../digest.ts";
import {
  AlreadyExistsError,
  CorruptContentError,
  DigestMismatchError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  SizeMismatchError,
  UnsupportedError,
} from "../errors.ts";
import type { ProgressEvent } from "../images/copy.ts";
import { MAX_MANIFEST_SIZE, parseManifest } from "../images/graph.ts";
import { removeAll } from "../internal/remove.ts";
import { applyLayer, type ApplyLayerOptions, type ApplyLayerResult } from "../layers/apply.ts";
import type { Provider } from "../store/capabilities.ts";
import { VerifyStream } from "../verify.ts";
import { type ImageConfig, type RuntimeOptions, writeRuntimeConfig } from "./runtime_spec.ts";
import { readLayer } from "./_layer_reader.ts";

/** Options for {@link unpackImage}. */
export interface UnpackImageOptions extends ApplyLayerOptions {
  /**
   * Called before (`unpacking`) and after (`unpacked`, with the entries and bytes written) each
   * layer.
   */
  onProgress?: (event: ProgressEvent) => void;
  /**
   * The most bytes the layers may unpack to, all together (default: no limit): a small layer
   * that inflates without end (a gzip bomb) stops there.
   */
  maxUnpackedSize?: number;
  /** How the bundle is to run: rootless, read-only, with a terminal, a hostname. */
  runtime?: RuntimeOptions;
}

/** What {@link unpackImage} produced. */
export interface UnpackImageResult {
  /** The rootfs directory, `BUNDLE/rootfs`. */
  rootfs: string;
  /** The runtime config, `BUNDLE/config.json`. */
  config: string;
  /** The manifest that was unpacked. */
  manifest: Digest;
  /** Number of layers applied. */
  layers: number;
}

/**
 * Unpacks the image whose manifest is `manifest` into a runtime bundle at `bundleDir`: applies
 * its layers in order into `bundleDir/rootfs`, checking each uncompressed layer against the
 * config's `rootfs.diff_ids`, then writes `bundleDir/config.json`. The bundle is locked meanwhile
 * and must be new (see {@link checkBundle}).
 *
 * Without a `rootfs`, the layers go into `bundleDir/.rootfs.partial`, renamed to `rootfs` once
 * all are in and verified; an empty `rootfs` (a mount point, say) is filled in place. On failure
 * nothing is left but what was there before (a `bundleDir` this call created is removed again).
 */
export async function unpackImage(
  store: Provider,
  manifest: Digest,
  bundleDir: string,
  options: UnpackImageOptions = {},
): Promise<UnpackImageResult> {
  await checkBundle(bundleDir); // a bundle that cannot be made fails before anything is read
  const manifestBytes = await readVerified(store, manifest, "manifest");
  const mediaType = mediaTypeOf(manifestBytes);
  if (isIndexType(mediaType) || mediaType === "index") {
    throw new InvalidArgumentError(
      `cannot unpack ${manifest}: it is an image index; unpack one of its platform manifests`,
    );
  }
  const descriptor = { mediaType, digest: manifest, size: manifestBytes.length };
  const { config: configDescriptor, layers } = parseManifest(manifestBytes, descriptor);
  const configDigest = configDescriptor.digest;
  const config = parseJson<ImageConfig>(
    await readVerified(store, configDigest, "image config"),
    `image config ${configDigest}`,
  );
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== layers.length) {
    throw new CorruptContentError(
      `cannot unpack ${manifest}: ${layers.length} layers but ${diffIds.length} diff_ids in config ${
        shortDigest(configDigest)
      }`,
    );
  }

  const dir = bundleDir.replace(/\/+$/, "") || "/";
  const rootfs = dir === "/" ? "/rootfs" : `${dir}/rootfs`;
  const bundleExisted = await Deno.lstat(dir).then(() => true, () => false);
  const bundle = await lockBundle(dir);
  if (bundleExisted) warnIfOpen(dir, options.onWarning);
  // A new rootfs is built aside and renamed into place only once every layer is in and verified:
  // a failed or killed unpack never leaves a rootfs that looks complete.
  const partial = `${dir}/.rootfs.partial`;
  let inPlace = false;
  let renamed = false;
  try {
    inPlace = await checkBundle(dir);
    const target = inPlace ? rootfs : partial;
    if (!inPlace) {
      await removeAll(partial); // left by a killed unpack: we hold the lock, nobody else uses it
      await Deno.mkdir(partial, { mode: 0o755 });
    }
    const unpacked = new UnpackedBytes(options.maxUnpackedSize);
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i];
      const diffId = parseDigest(diffIds[i]);
      const event = (status: "unpacking" | "unpacked") => ({
        status,
        name: manifest,
        digest: layer.digest,
        mediaType: layer.mediaType,
        kind: "layer" as const,
        size: layer.size,
        layer: i,
        layers: layers.length,
      });
      options.onProgress?.(event("unpacking"));
      const label = `layer ${i + 1}/${layers.length} ${layer.digest}`;
      let tar: ReadableStream<Uint8Array>;
      try {
        tar = await readLayer(store, layer, {
          label,
          diffId,
          count: unpacked.counter(label),
          signal: options.signal,
        });
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
        throw new NotFoundError(
          `cannot unpack ${label}: the blob is not in the store (not fetched, or a foreign layer)`,
          { cause: error },
        );
      }
      let result: ApplyLayerResult;
      try {
        result = await applyLayer(target, tar, options);
      } catch (error) {
        // A blob changed on disk mostly fails to decompress or to parse before its digest is
        // known: say what is wrong with it, not what it broke.
        if (!options.signal?.aborted) await verifyStored(store, layer, label, error);
        throw error;
      }
      options.onProgress?.({ ...event("unpacked"), entries: result.entries, bytes: result.bytes });
    }
    options.signal?.throwIfAborted(); // stopped after the last entry: nothing is kept either
    if (!inPlace) {
      await Deno.rename(partial, rootfs);
      renamed = true;
    }
    const configPath = await writeRuntimeConfig(dir, config, options.runtime);
    return { rootfs, config: configPath, manifest, layers: layers.length };
  } catch (error) {
    // back to what was there: an empty rootfs, or none
    if (inPlace) await emptyDirectory(rootfs);
    await removeAll(renamed ? rootfs : partial);
    // a bundle directory this call made goes too; one that holds anything else stays
    if (!bundleExisted) await Deno.remove(dir).catch(() => {});
    throw error;
  } finally {
    bundle.close();
  }
}

/**
 * Creates the bundle directory `dir` when missing and locks it, so that two unpacks into one
 * bundle cannot mix their layers: the second is refused.
 */
async function lockBundle(dir: string): Promise<Deno.FsFile> {
  try {
    // 0700, as containerd and runc make it: the image's setuid files and device nodes inside
    // must not be reachable by other local users (the runtime maps access for the container)
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    // a file where the bundle (or one of its parents) should be
    if (error instanceof Deno.errors.AlreadyExists || error instanceof Deno.errors.NotADirectory) {
      throw new InvalidArgumentError(`cannot unpack into ${dir}: ${dir} is not a directory`, {
        cause: error,
      });
    }
    throw error;
  }
  const file = await Deno.open(dir, { read: true });
  if (!(await file.tryLock(true))) {
    file.close();
    throw new LockedError(`cannot unpack into ${dir}: another unpack into it is running`);
  }
  return file;
}

/**
 * Warns when a bundle directory that was there before is open to other users: what the image
 * brings (setuid files, device nodes) is then theirs to run and open. It is the caller's
 * directory: its mode is left as it is.
 */
function warnIfOpen(dir: string, onWarning?: (message: string) => void): void {
  const mode = (Deno.statSync(dir).mode ?? 0) & 0o777;
  if ((mode & 0o077) === 0) return;
  onWarning?.(
    `bundle directory ${dir} is open to other users (mode 0${mode.toString(8)}): the image's ` +
      `setuid files and device nodes in it are theirs to use; a bundle dist creates is 0700`,
  );
}

/**
 * Checks that `bundleDir` can take a new bundle: it is not "" (which would put the bundle at the
 * root of the file system), it has no `config.json`, and its `rootfs`, if any, is an empty
 * directory. Returns whether that empty `rootfs` exists. Throws {@link InvalidArgumentError} or
 * {@link AlreadyExistsError}; a missing `bundleDir` is fine.
 */
export async function checkBundle(bundleDir: string): Promise<boolean> {
  if (bundleDir === "") throw new InvalidArgumentError(`invalid bundle directory ""`);
  const dir = bundleDir.replace(/\/+$/, "") || "/";
  const prefix = dir === "/" ? "" : dir;
  const self = await Deno.stat(dir).catch(() => undefined);
  if (self && !self.isDirectory) {
    throw new InvalidArgumentError(`cannot unpack into ${dir}: ${dir} is not a directory`);
  }
  if (await Deno.lstat(`${prefix}/config.json`).then(() => true, () => false)) {
    throw new AlreadyExistsError(`cannot unpack into ${dir}: ${prefix}/config.json exists`);
  }
  const rootfs = `${prefix}/rootfs`;
  const info = await Deno.stat(rootfs).catch(() => undefined); // a symlink to a directory is fine
  if (!info) return false;
  if (!info.isDirectory) {
    throw new InvalidArgumentError(`cannot unpack into ${dir}: ${rootfs} is not a directory`);
  }
  for await (const _ of Deno.readDir(rootfs)) {
    throw new AlreadyExistsError(`cannot unpack into ${dir}: ${rootfs} is not empty`);
  }
  return true;
}

/** Removes everything inside `path`, keeping `path` itself (a mount point, say). */
async function emptyDirectory(path: string): Promise<void> {
  const names = await Array.fromAsync(Deno.readDir(path), (entry) => entry.name).catch(() => []);
  await Promise.all(names.map((name) => removeAll(`${path}/${name}`)));
}

/** Counts what the layers of an image unpack to, against a limit. */
class UnpackedBytes {
  readonly #limit: number;
  #total = 0;

  constructor(limit = Infinity) {
    this.#limit = limit;
  }

  /** Counts the uncompressed bytes of one layer; throws past the limit. */
  counter(label: string): (bytes: number) => void {
    return (bytes) => {
      this.#total += bytes;
      if (this.#total > this.#limit) {
        throw new UnsupportedError(
          `cannot unpack ${label}: the image unpacks to more than ${this.#limit} bytes ` +
            `(the --max-unpacked-size limit)`,
        );
      }
    };
  }
}

/**
 * Reads the stored blob of a layer that failed to unpack to its end: throws its size or digest
 * mismatch (caused by `error`) when it is not what its descriptor says, else returns.
 */
async function verifyStored(
  store: Provider,
  layer: { digest: Digest; size: number },
  label: string,
  error: unknown,
): Promise<void> {
  if (error instanceof NotFoundError) return;
  let stream: ReadableStream<Uint8Array>;
  try {
    stream = await store.read(layer.digest);
  } catch {
    return; // the first error says enough
  }
  try {
    await stream.pipeThrough(new VerifyStream({ ...layer, label: `stored ${label}` }))
      .pipeTo(new WritableStream());
  } catch (mismatch) {
    if (mismatch instanceof DigestMismatchError || mismatch instanceof SizeMismatchError) {
      throw new (mismatch.constructor as typeof DigestMismatchError)(mismatch.message, {
        cause: error,
      });
    }
  }
}

/** A small blob read whole, checked against its digest (the store may have been changed on disk). */
async function readVerified(store: Provider, digest: Digest, what: string): Promise<Uint8Array> {
  const bytes = await store.readBytes(digest, { maxSize: MAX_MANIFEST_SIZE });
  const actual = digestOf(bytes);
  if (actual !== digest) {
    throw new DigestMismatchError(`cannot unpack: stored ${what} ${digest} has digest ${actual}`);
  }
  return bytes;
}

/** The media type a manifest names, `index` for one that lists manifests, else the OCI type. */
function mediaTypeOf(bytes: Uint8Array): string {
  const value = parseJson<{ mediaType?: unknown; manifests?: unknown }>(bytes, "manifest");
  if (Array.isArray(value?.manifests)) return "index";
  return typeof value?.mediaType === "string" ? value.mediaType : MediaType.ociManifest;
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (error) {
    throw new CorruptContentError(`cannot parse ${what}: ${(error as Error).message}`);
  }
}
