/**
 * Writing images from the store as one tar archive ({@link exportImages}), through the one graph
 * copy: the store is the source, the archive being written the target.
 *
 * Two formats are written:
 * - `docker` (default): what `docker save` writes since Docker 25, so `docker load` reads it:
 *   `manifest.json` (`[{Config, RepoTags, Layers}]`, paths into `blobs/`) and `repositories`,
 *   plus `oci-layout`, `index.json` and `blobs/<alg>/<hex>`, which make the same file an OCI
 *   image layout. A docker-archive holds one platform per image: of a multi-platform image the
 *   manifest for the host's platform (or the one asked for) is written. Layers stay as stored,
 *   compressed or not (`docker load` and skopeo decompress them).
 * - `oci`: an OCI image layout (`oci-layout`, `index.json` naming each image with the
 *   `org.opencontainers.image.ref.name` and `io.containerd.image.name` annotations, `blobs/`).
 *   Images keep their whole index; manifests of platforms that were never fetched are left out.
 *
 * Blobs are streamed from the store, never held whole in memory, and verified on the way: a blob
 * changed on disk fails the archive instead of shipping under its old digest.
 *
 * @example
 * ```ts ignore
 * import { Store } from "../store/store.ts";
 * import { exportImages } from "./export.ts";
 * const store = await Store.open("/var/lib/dist");
 * const archive = await exportImages(store, ["docker.io/library/alpine:3.20"]);
 * await archive.pipeTo((await Deno.create("alpine.tar")).writable);
 * ```
 *
 * @module
 */
import { type Descriptor, MediaType, type Platform } from "../descriptor.ts";
import { type Digest, digestAlgorithm, digestHex } from "../digest.ts";
import {
  CorruptContentError,
  InvalidArgumentError,
  NotFoundError,
  UnsupportedError,
} from "../errors.ts";
import {
  copyImage,
  type CopyResult,
  type CopySource,
  type CopyTarget,
  storeSource,
  type WriteContext,
} from "../images/copy.ts";
import { kindOf, parseManifest, resolveManifest } from "../images/graph.ts";
import { findImage, type FoundImage, nameAnnotations } from "../images/records.ts";
import type { Store } from "../store/store.ts";
import { type TarWriteEntry, writeTar } from "../layers/tar_writer.ts";
import {
  diffIdsOf,
  DOCKER_MANIFEST_FILE,
  type DockerItem,
  INDEX_FILE,
  OCI_LAYOUT,
  OCI_LAYOUT_FILE,
  REPOSITORIES_FILE,
  repoTagOf,
} from "./_archive.ts";

/** The archive formats: a docker-archive (also an OCI layout) or an OCI image-layout archive. */
export type ArchiveFormat = "docker" | "oci";

/** Options of {@link exportImages}. */
export interface ExportOptions {
  /** `docker` (default) for `docker load`, or `oci` for an OCI image-layout archive. */
  format?: ArchiveFormat;
  /** Which manifest of a multi-platform image a docker-archive gets (default: the host's). */
  platform?: Platform;
  /** Stops the archive stream: it errors with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Writes the images `names` (record names, any spelling of their references, or digests of
 * manifests and indexes in the store) as a tar archive in the chosen format. Everything is looked
 * up and checked before the stream is returned: a missing image or blob throws
 * {@link NotFoundError} here, not halfway through the archive.
 */
export async function exportImages(
  store: Store,
  names: string[],
  options: ExportOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const format = options.format ?? "docker";
  if (format !== "docker" && format !== "oci") {
    throw new CorruptContentError(
      `invalid archive format ${JSON.stringify(format)}: want docker or oci`,
    );
  }
  if (names.length === 0) throw new InvalidArgumentError("nothing to export: name an image");
  const images: FoundImage[] = [];
  for (const name of names) {
    const image = await findImage(store, name);
    // `alpine` and `docker.io/library/alpine:latest` name one record: it goes in once
    const key = image.name ?? image.target.digest;
    if (!images.some((i) => (i.name ?? i.target.digest) === key)) images.push(image);
  }
  const archive = new ArchiveTarget();
  const writer = format === "docker"
    ? new DockerArchive(store, archive, options.platform)
    : new OciArchive(store, archive);
  for (const image of images) {
    const label = image.name ?? image.target.digest;
    try {
      await writer.add(image, label);
    } catch (error) {
      if (!(error instanceof NotFoundError) || error.message.startsWith("cannot")) throw error;
      throw new NotFoundError(`cannot export ${label}: ${error.message}`, { cause: error });
    }
  }
  const stream = writeTar(archive.entries(writer.metadata()));
  // piping through an identity stream is what lets the signal cancel a blob midway
  return options.signal
    ? stream.pipeThrough(new TransformStream(), { signal: options.signal })
    : stream;
}

/** An archive's metadata files, each with its text. */
type Metadata = [name: string, text: string][];

/** Copies one image into the archive in docker-archive form. */
class DockerArchive {
  readonly #store: Store;
  readonly #archive: ArchiveTarget;
  readonly #platform: Platform | undefined;
  readonly #index: Descriptor[] = [];
  readonly #items = new Map<string, DockerItem>();
  readonly #repositories: Record<string, Record<string, string>> = {};

  constructor(store: Store, archive: ArchiveTarget, platform: Platform | undefined) {
    this.#store = store;
    this.#archive = archive;
    this.#platform = platform;
  }

  async add(image: FoundImage, label: string): Promise<void> {
    const source = storeSource(this.#store);
    const chosen = await resolveManifest(this.#store, image.target, { platform: this.#platform });
    const manifest = parseManifest(await source.readManifest(chosen, {}), chosen);
    const config = await source.readManifest(manifest.config, {}); // small, read whole, verified
    const diffIds = diffIdsOf(config);
    if (diffIds?.length !== manifest.layers.length) {
      throw new UnsupportedError(
        `cannot export ${label} as a docker archive: its config lists ` +
          `${diffIds?.length ?? "no"} diff_ids for ${manifest.layers.length} layers`,
      );
    }
    const copied = await copyImage(source, this.#archive, [chosen], { name: label });
    const [foreign] = copied.skipped;
    if (foreign) {
      throw new UnsupportedError(
        `cannot export ${label} as a docker archive: its non-distributable layer ` +
          `${foreign.digest} is not in the store (an OCI archive leaves it out)`,
      );
    }
    let item = this.#items.get(chosen.digest);
    if (!item) {
      item = {
        Config: blobPath(manifest.config.digest),
        RepoTags: null,
        Layers: manifest.layers.map((l) => blobPath(l.digest)),
      };
      this.#items.set(chosen.digest, item);
    }
    const tag = image.name === undefined ? undefined : repoTagOf(image.name);
    if (tag) {
      item.RepoTags ??= [];
      if (!item.RepoTags.includes(tag.repoTag)) item.RepoTags.push(tag.repoTag);
      const top = manifest.layers.at(-1);
      if (top) (this.#repositories[tag.repository] ??= {})[tag.tag] = digestHex(top.digest);
    }
    const entry: Descriptor = {
      mediaType: chosen.mediaType,
      digest: chosen.digest,
      size: chosen.size,
    };
    // as docker save: the full name for containerd, the tag as the OCI ref.name
    if (image.name !== undefined) entry.annotations = nameAnnotations(image.name, tag?.tag);
    this.#index.push(entry);
  }

  metadata(): Metadata {
    const files: Metadata = [
      [INDEX_FILE, indexJson(this.#index)],
      [DOCKER_MANIFEST_FILE, JSON.stringify([...this.#items.values()]) + "\n"],
    ];
    if (Object.keys(this.#repositories).length) {
      files.push([REPOSITORIES_FILE, JSON.stringify(this.#repositories) + "\n"]);
    }
    return files;
  }
}

/** Copies one image into the archive in OCI form: its whole index, as far as the store has it. */
class OciArchive {
  readonly #store: Store;
  readonly #archive: ArchiveTarget;
  readonly #index: Descriptor[] = [];

  constructor(store: Store, archive: ArchiveTarget) {
    this.#store = store;
    this.#archive = archive;
  }

  async add(image: FoundImage, label: string): Promise<void> {
    // platforms that were never fetched, and layers nobody may redistribute, stay out
    const copied: CopyResult = await copyImage(
      storeSource(this.#store),
      this.#archive,
      [image.target],
      { name: label, allPlatforms: true, present: true },
    );
    if (kindOf(image.target) === "index" && copied.manifests.length === 0) {
      throw new NotFoundError(`cannot export ${label}: none of its manifests is in the store`);
    }
    const entry: Descriptor = { ...image.target };
    if (image.name !== undefined) {
      entry.annotations = { ...entry.annotations, ...nameAnnotations(image.name, image.name) };
    }
    this.#index.push(entry);
  }

  metadata(): Metadata {
    return [[INDEX_FILE, indexJson(this.#index)]];
  }
}

function indexJson(manifests: Descriptor[]): string {
  return JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }) + "\n";
}

/** The archive path of a blob. */
function blobPath(digest: Digest): string {
  return `blobs/${digestAlgorithm(digest)}/${digestHex(digest)}`;
}

/** A blob of the archive: its bytes, or the source to stream them from when its turn comes. */
interface ArchiveBlob {
  descriptor: Descriptor;
  bytes?: Uint8Array;
  source?: CopySource;
}

/**
 * An archive being written, as a copy target. A tar stream takes one entry at a time and its
 * metadata goes first, so the copy only collects: every blob is checked to be in the source now
 * and streamed from it later, when {@link ArchiveTarget.entries} reaches it.
 */
class ArchiveTarget implements CopyTarget {
  readonly childrenFirst = true;
  readonly maxConcurrency = 1;
  readonly #blobs: ArchiveBlob[] = [];

  // deno-lint-ignore require-await
  async has(descriptor: Descriptor): Promise<boolean> {
    return this.#blobs.some((b) => b.descriptor.digest === descriptor.digest); // an earlier image's
  }

  // deno-lint-ignore require-await
  async readManifest(descriptor: Descriptor): Promise<Uint8Array<ArrayBuffer> | undefined> {
    const held = this.#blobs.find((b) => b.descriptor.digest === descriptor.digest);
    return held?.bytes && new Uint8Array(held.bytes);
  }

  // deno-lint-ignore require-await
  async writeManifest(descriptor: Descriptor, bytes: Uint8Array): Promise<"done"> {
    this.#blobs.push({ descriptor, bytes });
    return "done";
  }

  async writeBlob(
    descriptor: Descriptor,
    source: CopySource,
    context: WriteContext,
  ): Promise<"done"> {
    if (source.has && !(await source.has(descriptor))) {
      throw new NotFoundError(`its ${context.kind} ${descriptor.digest} is not in the store`);
    }
    this.#blobs.push({ descriptor, source });
    return "done";
  }

  /** The archive's entries: metadata first, then the blobs, each opened only when its turn comes. */
  async *entries(metadata: Metadata): AsyncGenerator<TarWriteEntry> {
    const encoder = new TextEncoder();
    const file = (name: string, text: string): TarWriteEntry => ({
      header: { name, mode: 0o644 },
      body: encoder.encode(text),
    });
    yield file(OCI_LAYOUT_FILE, OCI_LAYOUT);
    for (const [name, text] of metadata) yield file(name, text);
    yield { header: { name: "blobs/", type: "directory" } };
    const algorithms = new Set(this.#blobs.map((b) => digestAlgorithm(b.descriptor.digest)));
    for (const algorithm of algorithms) {
      yield { header: { name: `blobs/${algorithm}/`, type: "directory" } };
    }
    for (const { descriptor, bytes, source } of this.#blobs) {
      const header = { name: blobPath(descriptor.digest), size: descriptor.size, mode: 0o644 };
      yield { header, body: bytes ?? (await source!.open(descriptor, {})).stream };
    }
  }
}
