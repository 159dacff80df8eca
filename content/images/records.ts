/**
 * Image records: names bound to top descriptors, kept in the store's `index.json` (an OCI image
 * index), so the store stays an OCI image layout that skopeo and umoci read directly.
 *
 * Each record is one entry of `manifests`, annotated with the full reference twice:
 * `io.containerd.image.name` (containerd's key) and `org.opencontainers.image.ref.name` (the key
 * skopeo's `oci:ROOT:NAME` and umoci's `--image ROOT:NAME` look up). Changes take an exclusive lock
 * on `index.json.lock`, write a temporary file and rename it over `index.json`, so concurrent
 * processes never lose each other's records and readers never see a partial file.
 *
 * @example
 * ```ts
 * import { Images } from "./records.ts";
 * import { parseDigest } from "../digest.ts";
 * const root = await Deno.makeTempDir();
 * const images = new Images(root);
 * const digest = parseDigest(`sha256:${"0".repeat(64)}`);
 * await images.put("localhost:5000/app:v1", {
 *   mediaType: "application/vnd.oci.image.manifest.v1+json",
 *   digest,
 *   size: 2,
 * });
 * console.assert((await images.get("localhost:5000/app:v1")).target.digest === digest);
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */
import { type Descriptor, MediaType } from "../descriptor.ts";
import { isDigest, parseDigest } from "../digest.ts";
import { CorruptContentError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { checkDescriptor, storedDescriptor } from "./graph.ts";
import { expandDigest, isShortDigest } from "../store/short_digest.ts";
import type { Store } from "../store/store.ts";
import { writeFileAtomic } from "../internal/file_stream.ts";
// Reference parsing is pure (no network): record names are image references.
import { formatReference, parseReference } from "../reference.ts";

/** The annotation containerd names images with. */
export const IMAGE_NAME_ANNOTATION = "io.containerd.image.name";
/** The OCI layout's reference-name annotation. */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/** A named image: its reference and the descriptor of its index or manifest. */
export interface ImageRecord {
  /** The full reference, e.g. `docker.io/library/alpine:3.20`. */
  name: string;
  /** The top descriptor (index or manifest), without the naming annotations. */
  target: Descriptor;
}

interface IndexFile {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  [key: string]: unknown;
}

// Names are references, which never hold whitespace or control characters.
const NAME = /^[\x21-\x7e]+$/;

/** The image records of one store root. */
export class Images {
  readonly #root: string;

  /** Opens the records of the store at `root` (nothing is read until a method is called). */
  constructor(root: string) {
    this.#root = root;
  }

  /** Every record, in `index.json` order. Entries other tools wrote count by their ref.name. */
  async list(): Promise<ImageRecord[]> {
    const index = await this.#read();
    const records: ImageRecord[] = [];
    for (const entry of index.manifests) {
      const name = recordName(entry);
      if (name !== undefined) records.push({ name, target: withoutNames(entry) });
    }
    return records;
  }

  /** The record named `name`; {@link NotFoundError} when there is none. */
  async get(name: string): Promise<ImageRecord> {
    const found = (await this.list()).find((r) => r.name === name);
    if (!found) throw notFound(name);
    return found;
  }

  /**
   * The record named `name`, else the record of another spelling of the same reference (`alpine`
   * finds `docker.io/library/alpine:latest`). Throws {@link NotFoundError} when there is none, and
   * {@link InvalidArgumentError} for a name no record can have (whitespace, control characters).
   */
  async find(name: string): Promise<ImageRecord> {
    const records = await this.list();
    const exact = records.find((r) => r.name === name);
    if (exact) return exact;
    if (!NAME.test(name)) {
      throw new InvalidArgumentError(`invalid image name ${JSON.stringify(name)}`);
    }
    let normalized: string | undefined;
    try {
      normalized = formatReference(parseReference(name));
    } catch {
      // not a reference: only a record of exactly that name (another tool's) could match
    }
    const found = records.find((r) => r.name === normalized);
    if (!found) throw notFound(name, records);
    return found;
  }

  /** Binds `name` to `target`, replacing any record of that name; returns the record. */
  async put(name: string, target: Descriptor): Promise<ImageRecord> {
    return (await this.putAll([{ name, target }]))[0];
  }

  /**
   * Binds each record's name to its target, replacing any record of that name, in one change of
   * `index.json`: all are written or none. Every name and digest is checked first and an invalid
   * one throws {@link InvalidArgumentError}. Of two records with one name the later wins. A
   * record for which `options.keep(current, next)` resolves true stays as it is; the question is
   * asked under the records lock, so no other process changes the record meanwhile. Returns the
   * records as stored.
   */
  async putAll(records: ImageRecord[], options: PutAllOptions = {}): Promise<ImageRecord[]> {
    const entries = records.map(({ name, target }) => ({ name, entry: recordEntry(name, target) }));
    const stored: ImageRecord[] = [];
    if (entries.length === 0) return stored;
    await this.#update(async (index) => {
      let changed = false;
      for (const { name, entry } of entries) {
        const at = index.manifests.findIndex((m) => holdsName(m, name));
        const next = { name, target: withoutNames(entry) };
        const current = at < 0 ? undefined : { name, target: withoutNames(index.manifests[at]) };
        if (current && (await options.keep?.(current, next))) {
          stored.push(current);
          continue;
        }
        // keep one entry per name, in place, so skopeo never sees the name twice
        index.manifests = index.manifests.filter((m) => !holdsName(m, name));
        index.manifests.splice(at < 0 ? index.manifests.length : at, 0, entry);
        stored.push(next);
        changed = true;
      }
      return changed;
    });
    return stored;
  }

  /** Removes the record named `name`; {@link NotFoundError} when there is none. */
  async remove(name: string): Promise<void> {
    let found = false;
    await this.#update((index) => {
      const kept = index.manifests.filter((m) => !holdsName(m, name));
      found = kept.length !== index.manifests.length;
      index.manifests = kept;
      return found;
    });
    if (!found) throw notFound(name);
  }

  /** Every descriptor in `index.json`, named or not: the roots of garbage collection. */
  async roots(): Promise<Descriptor[]> {
    return (await this.#read()).manifests;
  }

  async #read(): Promise<IndexFile> {
    const path = `${this.#root}/index.json`;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return emptyIndex();
      throw error;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new CorruptContentError(`cannot read ${path}: not JSON`);
    }
    const index = value as IndexFile;
    if (typeof value !== "object" || value === null || !Array.isArray(index.manifests)) {
      throw new CorruptContentError(`cannot read ${path}: not an OCI image index`);
    }
    // one bad entry (a null, a hand edit) is named, never a TypeError somewhere later
    index.manifests.forEach((entry, i) => checkDescriptor(entry, `${path} entry ${i}`));
    return index;
  }

  /**
   * Reads, changes and replaces `index.json` under the records lock; `change` returns false when
   * it changed nothing, and then nothing is written.
   */
  async #update(change: (index: IndexFile) => boolean | Promise<boolean>): Promise<void> {
    await Deno.mkdir(this.#root, { recursive: true });
    // the lock file is never removed, so every process locks the same inode
    using lock = await Deno.open(`${this.#root}/index.json.lock`, {
      read: true,
      write: true,
      create: true,
    });
    await lock.lock(true);
    try {
      const index = await this.#read();
      if (!(await change(index))) return;
      await writeFileAtomic(`${this.#root}/index.json`, JSON.stringify(index, null, 2) + "\n");
    } finally {
      await lock.unlock();
    }
  }
}

/** Options of {@link Images.putAll}. */
export interface PutAllOptions {
  /** Whether the record `current` should stay rather than become `next`. */
  keep?(current: ImageRecord, next: ImageRecord): boolean | Promise<boolean>;
}

/** An image to work on: a record, or content named by its digest. */
export interface FoundImage {
  /** The record's name; undefined for an image named by its digest. */
  name?: string;
  /** The top descriptor (index or manifest). */
  target: Descriptor;
}

/**
 * Finds what `name` names in `store`: a manifest or index by its digest, or an image record by
 * its name or any other spelling of the same reference (see {@link Images.find}). Throws
 * {@link NotFoundError}, or {@link InvalidArgumentError} for a malformed digest.
 */
export async function findImage(store: Store, name: string): Promise<FoundImage> {
  if (isShortDigest(name)) name = await expandDigest(store, name);
  if (isDigest(name)) return { target: await storedDescriptor(store, name) };
  try {
    return await new Images(store.root).find(name);
  } catch (error) {
    // `sha256:../x` is a broken digest rather than the name of a missing record
    if (error instanceof NotFoundError && /^sha(256|512):/.test(name)) parseDigest(name);
    throw error;
  }
}

/**
 * Image `name` not found, with the records it may have meant: `bench/zstd:v1` with the registry
 * forgotten hints at `127.0.0.1:5000/bench/zstd:v1`.
 */
function notFound(name: string, records: ImageRecord[] = []): NotFoundError {
  const shown = NAME.test(name) ? name : JSON.stringify(name);
  const close = records.map((r) => r.name).filter((n) => n.endsWith(`/${name}`)).sort();
  const hint = close.length ? ` (did you mean ${close.slice(0, 3).join(" or ")}?)` : "";
  return new NotFoundError(`image ${shown} not found${hint}`);
}

/** The `index.json` entry of a record; {@link InvalidArgumentError} for a bad name or digest. */
function recordEntry(name: string, target: Descriptor): Descriptor {
  if (!NAME.test(name)) {
    throw new InvalidArgumentError(`invalid image name ${JSON.stringify(name)}`);
  }
  if (!isDigest(target.digest)) {
    throw new InvalidArgumentError(`invalid digest ${JSON.stringify(target.digest)}`);
  }
  return {
    mediaType: target.mediaType,
    digest: target.digest,
    size: target.size,
    ...(target.platform ? { platform: target.platform } : {}),
    annotations: { ...target.annotations, ...nameAnnotations(name) },
  };
}

function emptyIndex(): IndexFile {
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
}

/** The name an `index.json` entry goes by: containerd's annotation, else the OCI ref.name. */
export function recordName(entry: Descriptor): string | undefined {
  return entry.annotations?.[IMAGE_NAME_ANNOTATION] ?? entry.annotations?.[REF_NAME_ANNOTATION];
}

/** Whether an entry answers to `name` under either annotation (skopeo looks at ref.name). */
function holdsName(entry: Descriptor, name: string): boolean {
  return recordName(entry) === name || entry.annotations?.[REF_NAME_ANNOTATION] === name;
}

/**
 * The annotations that name an image in an `index.json`: the full `name` for containerd, and
 * `refName` (default: the full name; `docker save` puts the tag there) as the OCI ref.name.
 */
export function nameAnnotations(name: string, refName: string = name): Record<string, string> {
  return { [IMAGE_NAME_ANNOTATION]: name, [REF_NAME_ANNOTATION]: refName };
}

/** An `index.json` entry without the annotations that name it. */
export function withoutNames(entry: Descriptor): Descriptor {
  const { annotations, ...rest } = entry;
  const others = { ...annotations };
  delete others[IMAGE_NAME_ANNOTATION];
  delete others[REF_NAME_ANNOTATION];
  return Object.keys(others).length ? { ...rest, annotations: others } : rest;
}
