/**
 * Reading a docker-archive or OCI image-layout archive into the store ({@link importArchive}).
 *
 * The import reads either kind, and older docker-archives whose layers sit at `<id>/layer.tar`.
 * A tar stream is read once, in order: every blob goes through the store's verified ingest path
 * as it comes (content under `blobs/<alg>/<hex>` must have that digest, other files are named by
 * the digest of what they hold), then the one graph copy walks each image from what the archive
 * brought into the store, which proves it complete. Entry names with `..` components or absolute
 * paths, and links leaving the archive, are refused with an `UnsafeEntryError`. Images are
 * recorded only after the whole archive was read and every image was found complete, so a failed
 * import records nothing.
 *
 * @example
 * ```ts ignore
 * import { Store } from "../store/store.ts";
 * import { importArchive } from "./import.ts";
 * const store = await Store.open(await Deno.makeTempDir());
 * const file = await Deno.open("alpine.tar");
 * const { records } = await importArchive(store, file.readable);
 * console.log(records.map((r) => r.name));
 * ```
 *
 * @module
 */
import { type Descriptor, isManifestType, MediaType } from "../descriptor.ts";
import { type Digest, digestOf, isDigest } from "../digest.ts";
import {
  AlreadyExistsError,
  CorruptContentError,
  DigestMismatchError,
  DistError,
  InvalidArgumentError,
  NotFoundError,
  SizeMismatchError,
  UnsupportedError,
} from "../errors.ts";
import {
  copyImage,
  type CopySource,
  type ProgressEvent,
  storeSource,
  StoreTarget,
} from "../images/copy.ts";
import { acquireLease } from "../images/lease.ts";
import {
  type ImageManifest,
  kindOf,
  MAX_MANIFEST_SIZE,
  parseIndex,
  parseManifest,
} from "../images/graph.ts";
import { type ImageRecord, Images, recordName, withoutNames } from "../images/records.ts";
import { detectCompression } from "../layers/decompress.ts";
import { parseReference } from "../reference.ts";
import { readTar, type TarEntry } from "../layers/tar_reader.ts";
import type { Store } from "../store/store.ts";
import { writeBlob } from "../store/write_blob.ts";
import type { ArchiveFormat } from "./export.ts";
import {
  diffIdsOf,
  DOCKER_MANIFEST_FILE,
  type DockerItem,
  INDEX_FILE,
  linkTargetPath,
  nameOfRepoTag,
  OCI_LAYOUT_FILE,
  REPOSITORIES_FILE,
  safeArchivePath,
} from "./_archive.ts";

/** Options of {@link importArchive}. */
export interface ImportOptions {
  /** Stops the import, also while it waits for input; nothing is recorded. */
  signal?: AbortSignal;
  /** Called for each blob of the archive: `done` when written to the store, else `exists`. */
  onProgress?: (event: ProgressEvent) => void;
  /** Receives warnings: a name given to two different images, say. */
  onWarning?: (message: string) => void;
}

/** What {@link importArchive} imported. */
export interface ImportResult {
  /** `docker` when the archive has a `manifest.json`, else `oci`. */
  format: ArchiveFormat;
  /** The records written to the store's `index.json`. */
  records: ImageRecord[];
  /**
   * Images the archive gives no name: their content is in the store (reachable by digest, e.g.
   * `dist unpack DIGEST`) but not recorded, so the next garbage collection removes it.
   */
  unnamed: Descriptor[];
}

/** The options an import passes on: the caller's, and the lease's claim on a digest. */
interface Importing extends ImportOptions {
  claim(digest: Digest): void;
}

/** `index.json`, `manifest.json` and the like are read into memory up to this size. */
const MAX_METADATA_SIZE = 16 << 20;
const METADATA_FILES = new Set([
  OCI_LAYOUT_FILE,
  INDEX_FILE,
  DOCKER_MANIFEST_FILE,
  REPOSITORIES_FILE,
]);
/** The per-layer `json` and `VERSION` files of docker-archives before Docker 25: never used. */
const LEGACY_LAYER_METADATA = /^[^/]+\/(json|VERSION)$/;
const MAX_LINK_DEPTH = 16;

/**
 * Reads a docker-archive (with or without the OCI layout Docker 25+ adds) or an OCI image-layout
 * archive from `source` into `store` and records its images: names from `index.json` annotations
 * (`io.containerd.image.name`, else `org.opencontainers.image.ref.name`) and from `manifest.json`
 * `RepoTags` (normalized: `alpine:3` → `docker.io/library/alpine:3`).
 *
 * In a docker-archive, `manifest.json` decides what the images are, as for `docker load`: an
 * image whose manifest is also in the OCI part keeps that manifest (and so its digest); for
 * others an OCI manifest is built from the config and layer blobs. A name already recorded as an
 * image index that lists the imported manifest keeps that record: a docker-archive holds one
 * platform of the image, and replacing the index would lose the others.
 *
 * Throws {@link UnsafeEntryError} for entries that could point outside the archive,
 * {@link DigestMismatchError} for a blob that differs from the digest it is named by, and
 * {@link InvalidArgumentError} for an archive that is not a complete image archive. Blobs that
 * were committed before a failure stay in the store unreferenced (garbage collection removes
 * them); no image is recorded.
 */
export async function importArchive(
  store: Store,
  source: ReadableStream<Uint8Array>,
  options: ImportOptions = {},
): Promise<ImportResult> {
  // garbage collection must not sweep blobs committed before the records point at them
  const lease = await acquireLease(store.root);
  // every digest is claimed before the store is asked for it: `delete` leaves it alone from then
  const importing = { ...options, claim: (digest: Digest) => lease.protect(digest) };
  try {
    const contents = await readArchive(store, source, importing);
    options.signal?.throwIfAborted();
    const found = await imagesOf(store, contents, importing);
    options.signal?.throwIfAborted();
    // one change of index.json, after every name was checked: all images are recorded or none
    const records = await new Images(store.root).putAll(
      [...found.named].map(([name, target]) => ({ name, target })),
      {
        // A docker-archive holds one platform of an image: where the record is the image's
        // index listing that platform, keep it, or the next prune would drop the other platforms.
        keep: (current, next) => indexLists(store, current.target, next.target.digest),
      },
    );
    return { format: found.format, records, unnamed: found.unnamed };
  } finally {
    await lease.release();
  }
}

/** Whether `index` is an image index in the store that lists the manifest `digest`. */
async function indexLists(store: Store, index: Descriptor, digest: Digest): Promise<boolean> {
  if (kindOf(index) !== "index" || !(await store.has(index.digest))) return false;
  const bytes = await store.readBytes(index.digest, { maxSize: MAX_MANIFEST_SIZE });
  return parseIndex(bytes, index).manifests.some((m) => m.digest === digest);
}

/** A regular file of the archive, now a blob in the store. */
interface ArchiveFile {
  digest: Digest;
  size: number;
}

/** What reading an archive left: blobs by path, links, and the metadata files' bytes. */
class ArchiveContents {
  readonly files = new Map<string, ArchiveFile>();
  readonly links = new Map<string, string>();
  readonly metadata = new Map<string, Uint8Array>();

  /** The blob at `path` (as `manifest.json` names it), following links inside the archive. */
  lookup(path: string, what: string): ArchiveFile {
    let current = safeArchivePath(path, `${DOCKER_MANIFEST_FILE} ${what} path`);
    for (let depth = 0; depth <= MAX_LINK_DEPTH; depth++) {
      const file = this.files.get(current);
      if (file) return file;
      const next = this.links.get(current);
      if (next === undefined) break;
      current = next;
    }
    throw new CorruptContentError(
      `invalid archive: ${DOCKER_MANIFEST_FILE} names ${what} ${JSON.stringify(path)}, ` +
        `which is not a file in the archive`,
    );
  }
}

async function readArchive(
  store: Store,
  source: ReadableStream<Uint8Array>,
  options: Importing,
): Promise<ArchiveContents> {
  const contents = new ArchiveContents();
  const seen = new Set<string>();
  let entries = 0;
  // The signal also ends a read that waits for input (a stalled pipe), so that an import stopped
  // there discards the ingest it has open instead of hanging until a second Ctrl-C kills it.
  const input = options.signal
    ? source.pipeThrough(new TransformStream(), { signal: options.signal })
    : source;
  try {
    for await (const entry of readTar(input)) {
      entries++;
      await readEntry(store, entry, contents, seen, options);
    }
  } catch (error) {
    // a bad first header means some other kind of file, not a damaged archive
    if (entries === 0 && error instanceof CorruptContentError) {
      throw new CorruptContentError(`invalid archive: not a tar file (${error.message})`, {
        cause: error,
      });
    }
    throw error;
  }
  return contents;
}

/** Takes one entry of an archive being imported into `contents`. */
async function readEntry(
  store: Store,
  entry: TarEntry,
  contents: ArchiveContents,
  seen: Set<string>,
  options: Importing,
): Promise<void> {
  options.signal?.throwIfAborted();
  const { header } = entry;
  if (header.type === "directory") {
    // `./`, the archive root, is what `tar -cf FILE -C DIR .` writes first; other names are checked
    if (!header.name.split("/").every((part) => part === "" || part === ".")) {
      safeArchivePath(header.name);
    }
    return;
  }
  const path = safeArchivePath(header.name);
  if (seen.has(path)) {
    throw new CorruptContentError(`invalid archive: entry ${path} appears twice`);
  }
  seen.add(path);
  if (header.type === "symlink" || header.type === "link") {
    contents.links.set(path, linkTargetPath(path, header.linkname, header.type === "link"));
    return;
  }
  if (header.type !== "file") return; // devices and FIFOs are no part of an image archive
  if (METADATA_FILES.has(path)) {
    contents.metadata.set(path, await readSmall(entry, path));
  } else if (path.startsWith("blobs/")) {
    contents.files.set(path, await ingestNamed(store, entry, path, options));
  } else if (!LEGACY_LAYER_METADATA.test(path)) {
    contents.files.set(path, await ingestUnnamed(store, entry, path, options));
  }
}

async function readSmall(entry: TarEntry, path: string): Promise<Uint8Array> {
  const size = entry.header.size;
  if (size > MAX_METADATA_SIZE) {
    throw new CorruptContentError(
      `invalid archive: ${path} has ${size} bytes, more than the limit of ${MAX_METADATA_SIZE}`,
    );
  }
  const bytes = new Uint8Array(size);
  let filled = 0;
  for (let piece; (piece = await entry.read()) !== null;) {
    bytes.set(piece, filled);
    filled += piece.length;
  }
  return bytes;
}

async function* pieces(entry: TarEntry): AsyncGenerator<Uint8Array> {
  for (let piece; (piece = await entry.read()) !== null;) yield piece;
}

/** Ingests `blobs/<alg>/<hex>`, which must hold content of that digest. */
async function ingestNamed(
  store: Store,
  entry: TarEntry,
  path: string,
  options: Importing,
): Promise<ArchiveFile> {
  const match = /^blobs\/([^/]+)\/([^/]+)$/.exec(path);
  const digest = match ? `${match[1]}:${match[2]}` : "";
  if (!isDigest(digest)) {
    throw new CorruptContentError(
      `invalid archive: ${path} is not named blobs/<algorithm>/<hex digest>`,
    );
  }
  const size = entry.header.size;
  // content already in the store was verified when it was committed: the archive's copy of it
  // is skipped unread (the tar reader passes over it)
  options.claim(digest);
  if (await store.has(digest)) {
    const info = await store.info(digest);
    options.onProgress?.(blobEvent("exists", path, digest, info.size));
    return { digest, size: info.size };
  }
  try {
    await writeBlob(store, `import-${digest}`, pieces(entry), {
      digest,
      size,
      signal: options.signal,
    });
  } catch (error) {
    if (error instanceof DigestMismatchError || error instanceof SizeMismatchError) {
      throw new DigestMismatchError(
        `invalid archive: ${path} does not hold content of digest ${digest}: ${error.message}`,
        { cause: error },
      );
    }
    throw error;
  }
  options.onProgress?.(blobEvent("done", path, digest, size));
  return { digest, size };
}

/** Ingests a file not named by digest (a layer of an older docker-archive) under its digest. */
async function ingestUnnamed(
  store: Store,
  entry: TarEntry,
  path: string,
  options: Importing,
): Promise<ArchiveFile> {
  const size = entry.header.size;
  const writer = await store.writer(`import-${crypto.randomUUID()}`, { total: size });
  let status: "done" | "exists" = "done";
  let digest: Digest;
  try {
    for await (const piece of pieces(entry)) {
      options.signal?.throwIfAborted();
      await writer.write(piece);
    }
    digest = writer.digest(); // the writer hashed it on the way: no second pass
    options.claim(digest);
    try {
      await writer.commit(size, digest);
    } catch (error) {
      if (!(error instanceof AlreadyExistsError)) throw error;
      status = "exists";
    }
  } finally {
    await writer.discard(); // a random ref cannot be resumed; does nothing after a commit
  }
  options.onProgress?.(blobEvent(status, path, digest, size));
  return { digest, size };
}

/** A manifest found through `index.json`, parsed. */
interface KnownManifest {
  descriptor: Descriptor;
  manifest: ImageManifest;
}

/** The images of an archive whose blobs are all in the store now. */
interface FoundImages {
  format: ArchiveFormat;
  named: Map<string, Descriptor>;
  unnamed: Descriptor[];
}

async function imagesOf(
  store: Store,
  contents: ArchiveContents,
  options: Importing,
): Promise<FoundImages> {
  const layout = contents.metadata.get(OCI_LAYOUT_FILE);
  const index = contents.metadata.get(INDEX_FILE);
  const docker = contents.metadata.get(DOCKER_MANIFEST_FILE);
  if (!index && !docker) {
    throw new CorruptContentError(
      `invalid archive: it has neither ${INDEX_FILE} (OCI layout) nor ${DOCKER_MANIFEST_FILE} ` +
        `(docker-archive)`,
    );
  }
  if (layout) checkLayout(layout);
  const found: FoundImages = {
    format: docker ? "docker" : "oci",
    named: new Map(),
    unnamed: [],
  };
  const known: KnownManifest[] = [];
  // Docker 25.0 wrote `"manifests": null` (fixed later); its manifest.json says it all
  const nullIndex = docker !== undefined && index !== undefined && nullManifests(index);
  if (index && !nullIndex) {
    const parsed = parseIndex(index, {
      mediaType: MediaType.ociIndex,
      digest: digestOf(index),
      size: index.length,
    });
    for (const entry of parsed.manifests) {
      try {
        await checkImage(store, entry, known, options);
      } catch (error) {
        // In a docker-archive manifest.json is what counts (docker load reads nothing else),
        // and some writers put an OCI part beside it that is not a complete image.
        if (docker && error instanceof DistError) continue;
        throw error;
      }
      const target = withoutNames(entry);
      const name = recordName(entry);
      if (name === undefined) found.unnamed.push(target);
      else if (!found.named.has(name)) found.named.set(checkedName(name), target);
      else if (found.named.get(name)!.digest !== target.digest) {
        options.onWarning?.(
          `the archive names two images ${name}: kept ${found.named.get(name)!.digest}, ` +
            `not ${target.digest}`,
        );
      }
    }
  }
  if (docker) {
    for (const [i, item] of parseDockerManifest(docker).entries()) {
      const target = await dockerImage(store, contents, item, i, known, options);
      const names = (item.RepoTags ?? []).map(nameOfRepoTag);
      for (const name of names) if (!found.named.has(name)) found.named.set(name, target);
      const covered = [...found.named.values(), ...found.unnamed].some((d) =>
        d.digest === target.digest
      );
      if (!covered) found.unnamed.push(target);
    }
  }
  return found;
}

function checkLayout(bytes: Uint8Array): void {
  let version: unknown;
  try {
    version = JSON.parse(new TextDecoder().decode(bytes))?.imageLayoutVersion;
  } catch {
    throw new CorruptContentError(`invalid archive: ${OCI_LAYOUT_FILE} is not JSON`);
  }
  if (typeof version !== "string" || !version.startsWith("1.")) {
    throw new UnsupportedError(
      `unsupported OCI layout version ${JSON.stringify(version)} in ${OCI_LAYOUT_FILE}: want 1.x`,
    );
  }
}

/**
 * Checks that the image below an `index.json` entry is in the store: the one graph copy from what
 * the archive brought (now in the store) into the store finds every blob there and verifies the
 * manifests. Manifests an index lists may be missing (platforms that were not exported), and so
 * may non-distributable layers. Every manifest found goes to `known`.
 */
async function checkImage(
  store: Store,
  top: Descriptor,
  known: KnownManifest[],
  options: Importing,
): Promise<void> {
  const target = new StoreTarget(store, (digests) => digests.forEach(options.claim));
  const copied = await copyImage(archiveSource(store, top), target, [top], {
    allPlatforms: true,
    present: true,
    action: "import",
  });
  if (kindOf(top) === "index" && copied.manifests.length === 0) {
    throw new CorruptContentError(
      `invalid archive: none of the manifests of ${INDEX_FILE} entry ${top.digest} is in it`,
    );
  }
  for (const descriptor of copied.manifests) {
    if (!isManifestType(descriptor.mediaType)) continue; // an artifact
    const bytes = await store.readBytes(descriptor.digest, { maxSize: MAX_MANIFEST_SIZE });
    const manifest = parseManifest(bytes, descriptor);
    const config = await store.readBytes(manifest.config.digest, { maxSize: MAX_MANIFEST_SIZE });
    const diffIds = diffIdsOf(config);
    if (diffIds && diffIds.length !== manifest.layers.length) {
      throw new CorruptContentError(
        `invalid archive: manifest ${descriptor.digest} has ${manifest.layers.length} layers ` +
          `but its config lists ${diffIds.length} diff_ids`,
      );
    }
    known.push({ descriptor, manifest });
  }
}

/**
 * What an archive brought, as a copy source: the blobs it held are in the store now; one it
 * lacked is an archive error, not a missing blob of the store.
 */
function archiveSource(store: Store, top: Descriptor): CopySource {
  const stored = storeSource(store);
  const missing = (error: unknown, descriptor: Descriptor) => {
    if (!(error instanceof NotFoundError)) return error;
    return new CorruptContentError(
      `invalid archive: ${kindOf(descriptor)} ${descriptor.digest} of ${INDEX_FILE} entry ` +
        `${top.digest} is neither in the archive nor in the store`,
    );
  };
  return {
    ...stored,
    readManifest: (descriptor, options) =>
      stored.readManifest(descriptor, options).catch((error) => {
        throw missing(error, descriptor);
      }),
    open: (descriptor, options) =>
      stored.open(descriptor, options).catch((error) => {
        throw missing(error, descriptor);
      }),
  };
}

function parseDockerManifest(bytes: Uint8Array): DockerItem[] {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new CorruptContentError(`invalid archive: ${DOCKER_MANIFEST_FILE} is not JSON`);
  }
  const strings = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === "string");
  if (!Array.isArray(value)) {
    throw new CorruptContentError(`invalid archive: ${DOCKER_MANIFEST_FILE} is not a list`);
  }
  return value.map((item, i) => {
    if (
      typeof item?.Config !== "string" || !strings(item.Layers) ||
      !(item.RepoTags === undefined || item.RepoTags === null || strings(item.RepoTags))
    ) {
      throw new CorruptContentError(
        `invalid archive: ${DOCKER_MANIFEST_FILE} item ${i} needs Config, Layers and RepoTags`,
      );
    }
    return { Config: item.Config, RepoTags: item.RepoTags ?? null, Layers: item.Layers };
  });
}

/**
 * The manifest of one `manifest.json` item: the OCI part's manifest with the same config and
 * layers when there is one, else an OCI manifest built and stored for it.
 */
async function dockerImage(
  store: Store,
  contents: ArchiveContents,
  item: DockerItem,
  i: number,
  known: KnownManifest[],
  options: Importing,
): Promise<Descriptor> {
  const config = contents.lookup(item.Config, `item ${i} Config`);
  const layers = item.Layers.map((path, n) => contents.lookup(path, `item ${i} Layers[${n}]`));
  const diffIds = diffIdsOf(
    await store.readBytes(config.digest, { maxSize: MAX_MANIFEST_SIZE }),
  );
  if (diffIds?.length !== layers.length) {
    throw new CorruptContentError(
      `invalid archive: ${DOCKER_MANIFEST_FILE} item ${i} has ${layers.length} layers but its ` +
        `config lists ${diffIds?.length ?? "no"} diff_ids`,
    );
  }
  const same = known.find(({ manifest }) =>
    manifest.config.digest === config.digest &&
    manifest.layers.length === layers.length &&
    manifest.layers.every((l, n) => l.digest === layers[n].digest)
  );
  if (same) {
    const { annotations: _, ...descriptor } = same.descriptor;
    return descriptor;
  }
  const layerDescriptors: Descriptor[] = [];
  for (const [n, layer] of layers.entries()) {
    const compression = detectCompression(await head(store, layer.digest));
    // docker load checks an uncompressed layer against its diff_id; so do we, it costs nothing
    if (compression === "none" && layer.digest !== diffIds[n]) {
      throw new DigestMismatchError(
        `invalid archive: layer ${item.Layers[n]} has digest ${layer.digest}, but the config's ` +
          `diff_ids[${n}] is ${diffIds[n]}`,
      );
    }
    layerDescriptors.push({
      mediaType: compression === "gzip"
        ? MediaType.ociLayerGzip
        : compression === "zstd"
        ? MediaType.ociLayerZstd
        : MediaType.ociLayer,
      digest: layer.digest,
      size: layer.size,
    });
  }
  const bytes = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
    layers: layerDescriptors,
  }));
  const digest = digestOf(bytes);
  options.claim(digest);
  await writeBlob(store, `import-${digest}`, [bytes], { digest, size: bytes.length });
  return { mediaType: MediaType.ociManifest, digest, size: bytes.length };
}

/** The first bytes of a blob, enough to recognize its compression. */
async function head(store: Store, digest: Digest): Promise<Uint8Array> {
  const reader = (await store.read(digest)).getReader();
  try {
    const { value } = await reader.read();
    return value?.subarray(0, 8) ?? new Uint8Array(0);
  } finally {
    await reader.cancel();
  }
}

function blobEvent(
  status: "done" | "exists",
  path: string,
  digest: Digest,
  size: number,
): ProgressEvent {
  return { status, name: path, path, digest, mediaType: "", kind: "blob", size };
}

/**
 * A name from an archive's `index.json`, which must be an image reference: the name of a record
 * is printed, matched and fetched again, so anything else (`../x`, `a b`) is refused.
 */
function checkedName(name: string): string {
  try {
    parseReference(name);
  } catch (error) {
    throw new InvalidArgumentError(`invalid image name ${JSON.stringify(name)}`, { cause: error });
  }
  return name;
}

/** Whether an `index.json` is Docker 25.0's `{"manifests": null}`. */
function nullManifests(index: Uint8Array): boolean {
  try {
    return JSON.parse(new TextDecoder().decode(index))?.manifests === null;
  } catch {
    return false;
  }
}
