/**
 * Fetching a whole image from a registry into the store: resolve the reference, store the top
 * descriptor's content, walk the graph for the chosen platforms, download every missing blob
 * through the store's ingests (a bounded number at once, resuming partial ingests), then record
 * the image in `index.json`.
 *
 * Ingests are keyed by digest (`layer-sha256:…`, `manifest-sha256:…`, `config-sha256:…`), so
 * concurrent processes fetching the same image share one download per blob: the second waits on
 * the first's lock and then finds the blob committed.
 *
 * @example
 * ```ts ignore
 * import { Store } from "../content/store/store.ts";
 * import { RegistryClient } from "./client.ts";
 * import { fetchImage } from "./copy.ts";
 * const store = await Store.open("/tmp/dist-store");
 * const result = await fetchImage(new RegistryClient(), store, "localhost:5000/app:v1", {
 *   onProgress: (event) => console.log(event.status, event.digest),
 * });
 * console.log(result.name, result.descriptor.digest);
 * ```
 *
 * @module
 */
import type { Descriptor, Platform } from "../content/descriptor.ts";
import type { Digest } from "../content/digest.ts";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  SizeMismatchError,
} from "../content/errors.ts";
import {
  type Children,
  childrenOf,
  type GraphNode,
  kindOf,
  MAX_MANIFEST_SIZE,
  type NodeKind,
} from "../content/images/graph.ts";
import { Images } from "../content/images/records.ts";
import { acquireLease } from "../content/images/gc.ts";
import type { Store, Writer } from "../content/store/mod.ts";
import type { RegistryClient } from "./client.ts";
import { formatReference, parseReference, type Reference } from "../content/reference.ts";

/**
 * The default number of blobs downloaded at once. Small blobs are bound by round trips and
 * flushes, so many at once pay: 48 × 512 KiB took 214 ms with 8, 245 ms with 4 (bench/fetch.ts).
 */
export const DEFAULT_MAX_CONCURRENT_DOWNLOADS = 8;

/**
 * A blob bigger than this takes two download slots. Big blobs are bound by CPU (hashing, copies),
 * where more streams only contend: 8 × 128 MiB took 1.56 s four at a time, 1.73 s eight at a time.
 */
const LARGE_BLOB = 16 * 1024 * 1024;

/** How often (at most) a blob's `downloading` event repeats while bytes arrive. */
const PROGRESS_INTERVAL_MS = 100;

/** What happened to one blob (or to the image, for `resolved` and `recorded`). */
export type FetchStatus =
  | "resolved"
  | "waiting"
  | "downloading"
  | "exists"
  | "done"
  | "skipped"
  | "recorded";

/** A progress event of {@link fetchImage}; plain data, so it serializes as one JSON line. */
export interface FetchEvent {
  /** `waiting`: queued or another process is downloading it; `exists`: already in the store. */
  status: FetchStatus;
  /** The full reference being fetched. */
  name: string;
  /** The blob's (or image's) digest. */
  digest: Digest;
  /** Its media type. */
  mediaType: string;
  /** Its role: index, manifest, config, layer or blob. */
  kind: NodeKind;
  /** The blob's size. */
  size: number;
  /** Bytes in the store so far (`downloading`, `done`). */
  offset?: number;
  /** Where this run started in a partial ingest left by an earlier one (resume), when not 0. */
  resumedFrom?: number;
  /** Why a blob was skipped (`skipped`). */
  reason?: string;
}

/** Options of {@link fetchImage}. */
export interface FetchImageOptions {
  /** Wanted platforms; default: the host's. Each gets its best-matching manifest. */
  platforms?: Platform[];
  /** Fetch every manifest of an index, attestations included. */
  allPlatforms?: boolean;
  /**
   * Blobs downloaded at once (default {@link DEFAULT_MAX_CONCURRENT_DOWNLOADS}); one over 16 MiB
   * counts as two.
   */
  maxConcurrentDownloads?: number;
  /** Stops the fetch; partial ingests stay behind to resume, never a partial blob. */
  signal?: AbortSignal;
  /** Receives progress events. */
  onProgress?: (event: FetchEvent) => void;
  /** Record the image in `index.json` under its full reference (default true). */
  record?: boolean;
}

/** What {@link fetchImage} fetched. */
export interface FetchImageResult {
  /** The full reference, the record's name. */
  name: string;
  /** The top descriptor (index or manifest). */
  descriptor: Descriptor;
  /** The single-platform manifests that were fetched. */
  manifests: Descriptor[];
  /** Non-distributable layers that were not fetched. */
  skipped: Descriptor[];
  /** Bytes downloaded by this run. */
  downloaded: number;
}

/** The registry operations {@link fetchImage} needs; {@link RegistryClient} has them. */
export type ImageSource = Pick<RegistryClient, "resolve" | "fetchManifest" | "fetch">;

/**
 * Fetches the image `reference` from `source` into `store` for the chosen platforms and records
 * it. Blobs already in the store are not fetched again; partial ingests are continued.
 */
export async function fetchImage(
  source: ImageSource,
  store: Store,
  reference: string | Reference,
  options: FetchImageOptions = {},
): Promise<FetchImageResult> {
  const ref = typeof reference === "string" ? parseReference(reference) : reference;
  // garbage collection must not sweep blobs committed before the record points at them
  const lease = await acquireLease(store.root);
  try {
    const job = new FetchJob(source, store, ref, options);
    return await job.run();
  } finally {
    await lease.release();
  }
}

class FetchJob {
  readonly #source: ImageSource;
  readonly #store: Store;
  readonly #ref: Reference;
  readonly #name: string;
  readonly #options: FetchImageOptions;
  /** Blobs in transfer. */
  readonly #limit: Limiter;
  /** Open ingests (transfer, commit, or waiting for another process): bounds open files. */
  readonly #writers: Limiter;
  // a failed blob stops the others, as does the caller's signal
  readonly #abort = new AbortController();
  readonly #visited = new Map<string, Promise<void>>();
  readonly #manifests: Descriptor[] = [];
  readonly #skipped: Descriptor[] = [];
  readonly #buffers: Uint8Array<ArrayBuffer>[] = [];
  #downloaded = 0;
  #failure: unknown;

  constructor(source: ImageSource, store: Store, ref: Reference, options: FetchImageOptions) {
    this.#source = source;
    this.#store = store;
    this.#ref = ref;
    this.#name = formatReference(ref);
    this.#options = options;
    const max = options.maxConcurrentDownloads ?? DEFAULT_MAX_CONCURRENT_DOWNLOADS;
    this.#limit = new Limiter(max);
    this.#writers = new Limiter(2 * max);
  }

  get #signal(): AbortSignal {
    return this.#abort.signal;
  }

  async run(): Promise<FetchImageResult> {
    const outer = this.#options.signal;
    outer?.throwIfAborted();
    const onAbort = () => this.#abort.abort(outer!.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    try {
      const descriptor = await this.#source.resolve(this.#ref, { signal: this.#signal });
      this.#emit("resolved", { descriptor, kind: kindOf(descriptor) });
      await this.#visit({ descriptor, kind: kindOf(descriptor) });
      if (this.#options.record !== false) {
        await new Images(this.#store.root).put(this.#name, descriptor);
        this.#emit("recorded", { descriptor, kind: kindOf(descriptor) });
      }
      return {
        name: this.#name,
        descriptor,
        manifests: this.#manifests,
        skipped: this.#skipped,
        downloaded: this.#downloaded,
      };
    } finally {
      outer?.removeEventListener("abort", onAbort);
    }
  }

  #emit(
    status: FetchStatus,
    extra: { descriptor: Descriptor; kind: NodeKind } & Partial<FetchEvent>,
  ) {
    const { descriptor, ...rest } = extra;
    this.#options.onProgress?.({
      status,
      name: this.#name,
      digest: descriptor.digest,
      mediaType: descriptor.mediaType,
      size: descriptor.size,
      ...rest,
    });
  }

  /** Fetches a node once, however many parents point at it. */
  #visit(node: GraphNode): Promise<void> {
    let pending = this.#visited.get(node.descriptor.digest);
    if (!pending) {
      pending = node.kind === "index" || node.kind === "manifest"
        ? this.#visitManifest(node)
        : this.#visitBlob(node);
      this.#visited.set(node.descriptor.digest, pending);
    }
    return pending;
  }

  async #visitManifest(node: GraphNode): Promise<void> {
    const { bytes, stored } = await this.#limit.run(
      () => this.#manifestBytes(node),
      this.#signal,
    );
    let graph: Children;
    try {
      graph = childrenOf(node.descriptor, bytes, this.#options);
    } catch (error) {
      await stored.catch(() => {}); // the index stays stored even when no platform matches
      if (!(error instanceof NotFoundError)) throw error;
      throw new NotFoundError(`cannot fetch ${this.#name}: ${error.message}`, { cause: error });
    }
    const { children, skipped } = graph;
    if (node.kind === "manifest") this.#manifests.push(node.descriptor);
    for (const layer of skipped) {
      this.#skipped.push(layer);
      this.#emit("skipped", { descriptor: layer, kind: "layer", reason: "non-distributable" });
    }
    await this.#all([stored, ...children.map((child) => this.#visit(child))]);
  }

  async #visitBlob(node: GraphNode): Promise<void> {
    if (await this.#store.has(node.descriptor.digest)) {
      this.#emit("exists", node);
      return;
    }
    this.#emit("waiting", { ...node, offset: 0 });
    await this.#writers.run(() => this.#download(node), this.#signal);
  }

  /** Waits for every promise, then throws the first failure (stopping the rest early). */
  async #all(promises: Promise<void>[]): Promise<void> {
    const results = await Promise.allSettled(promises.map((p) =>
      p.catch((error) => {
        if (this.#failure === undefined) this.#failure = error;
        this.#abort.abort(error);
        throw error;
      })
    ));
    if (results.some((r) => r.status === "rejected")) throw this.#failure;
  }

  /**
   * The content of a manifest or index: from the store, else fetched and verified. `stored`
   * settles once fetched content is committed, which runs while the children are fetched.
   */
  async #manifestBytes(
    node: GraphNode,
  ): Promise<{ bytes: Uint8Array<ArrayBuffer>; stored: Promise<void> }> {
    const { descriptor } = node;
    if (await this.#store.has(descriptor.digest)) {
      this.#emit("exists", node);
      const bytes = await this.#store.readBytes(descriptor.digest, {
        maxSize: MAX_MANIFEST_SIZE,
      });
      return { bytes, stored: Promise.resolve() };
    }
    this.#emit("downloading", { ...node, offset: 0 });
    const bytes = await this.#source.fetchManifest(this.#ref, descriptor, {
      signal: this.#signal,
    });
    this.#downloaded += bytes.length;
    return { bytes, stored: this.#storeManifest(node, bytes) };
  }

  async #storeManifest(node: GraphNode, bytes: Uint8Array): Promise<void> {
    const writer = await this.#openWriter(node);
    if (writer) {
      try {
        if (writer.offset > 0) await writer.truncate(0);
        await writer.write(bytes);
        await writer.commit(bytes.length, node.descriptor.digest);
      } catch (error) {
        await writer.close().catch(() => {});
        if (!(error instanceof AlreadyExistsError)) throw error;
      }
    }
    this.#emit("done", { ...node, offset: bytes.length });
  }

  /**
   * Opens the ingest for a node, waiting when another process holds it; undefined when the blob
   * got committed meanwhile (by that other process).
   */
  async #openWriter(node: GraphNode): Promise<Writer | undefined> {
    const { descriptor } = node;
    const ingest = `${node.kind === "index" ? "manifest" : node.kind}-${descriptor.digest}`;
    const options = {
      expected: descriptor.digest,
      total: descriptor.size,
      signal: this.#signal,
      // most small blobs commit before their ingest's metadata is worth its files
      deferMetadata: true,
    };
    try {
      try {
        return await this.#store.writer(ingest, options);
      } catch (error) {
        if (!(error instanceof LockedError)) throw error;
        this.#emit("waiting", { ...node, reason: "another process is fetching it" });
        return await this.#store.writer(ingest, { ...options, wait: true });
      }
    } catch (error) {
      if (error instanceof AlreadyExistsError) return undefined;
      throw error;
    }
  }

  async #download(node: GraphNode): Promise<void> {
    const { descriptor } = node;
    const writer = await this.#openWriter(node);
    if (!writer) {
      this.#emit("exists", node);
      return;
    }
    // Only the transfer takes a download slot: opening the ingest (or waiting for another
    // process's lock on it) and committing (fsync, rename) overlap other downloads.
    const weight = descriptor.size > LARGE_BLOB ? 2 : 1;
    const fill = () => this.#limit.run(() => this.#fill(node, writer), this.#signal, weight);
    try {
      const resumed = await fill();
      try {
        await writer.commit(descriptor.size, descriptor.digest);
      } catch (error) {
        const mismatch = error instanceof DigestMismatchError ||
          error instanceof SizeMismatchError;
        if (!mismatch || !resumed) throw error;
        // the partial ingest an earlier run left was damaged; commit dropped it: fetch it whole
        await fill();
        await writer.commit(descriptor.size, descriptor.digest);
      }
    } catch (error) {
      await writer.close().catch(() => {});
      if (error instanceof AlreadyExistsError) {
        this.#emit("exists", node);
        return;
      }
      throw naming(error, node);
    }
    this.#emit("done", { ...node, offset: descriptor.size });
  }

  /**
   * Streams the rest of a blob into its ingest, from the ingest's current offset; returns whether
   * it continued bytes an earlier run left.
   */
  async #fill(node: GraphNode, writer: Writer): Promise<boolean> {
    const { descriptor } = node;
    let offset = writer.offset;
    if (offset > descriptor.size) {
      await writer.truncate(0);
      offset = 0;
    }
    const resumedFrom = offset > 0 ? offset : undefined;
    this.#emit("downloading", { ...node, offset, resumedFrom });
    if (offset === descriptor.size) return offset > 0;
    const response = await this.#source.fetch(this.#ref, descriptor, {
      offset,
      signal: this.#signal,
    });
    if (response.offset !== offset) {
      // the registry ignored the range and sends everything: start the ingest over
      await response.stream.cancel().catch(() => {});
      if (response.offset !== 0) {
        throw new SizeMismatchError(
          `cannot resume ${descriptor.digest} at ${offset}: the registry answered from ` +
            response.offset,
        );
      }
      await writer.truncate(0);
      await this.#fillFrom(node, writer, response, 0, undefined);
      return false;
    }
    await this.#fillFrom(node, writer, response, offset, resumedFrom);
    return offset > 0;
  }

  async #fillFrom(
    node: GraphNode,
    writer: Writer,
    response: { stream: ReadableStream<Uint8Array> },
    start: number,
    resumedFrom: number | undefined,
  ): Promise<void> {
    let offset = start;
    let last = Date.now();
    const chunks = new ChunkReader(response.stream, this.#buffers);
    try {
      for (let chunk; (chunk = await chunks.read()) !== undefined;) {
        await writer.write(chunk);
        offset += chunk.byteLength;
        this.#downloaded += chunk.byteLength;
        const now = Date.now();
        if (now - last >= PROGRESS_INTERVAL_MS) {
          last = now;
          this.#emit("downloading", { ...node, offset, resumedFrom });
        }
      }
    } catch (error) {
      await chunks.cancel(error);
      throw error;
    } finally {
      chunks.release();
    }
  }
}

/**
 * An OS error (a full disk, a lost permission) with the blob it happened to named: "no space
 * left on device" alone does not say what was being written. Other errors already say.
 */
function naming(error: unknown, node: GraphNode): unknown {
  // Deno's OS errors end in "(os error N)"; some have a class of their own, others (ENOSPC) not
  if (!(error instanceof Error) || !/ \(os error \d+\)$/.test(error.message)) return error;
  const reason = error.message.replace(/ \(os error \d+\)$/, ""); // as cli.ts shows OS errors
  const message = reason[0].toLowerCase() + reason.slice(1);
  const what = `${node.kind} ${node.descriptor.digest}`;
  return new Error(`cannot store ${what}: ${message}`, { cause: error });
}

/** Read buffers, reused from blob to blob: 1 MiB each, at most one per running download. */
const BUFFER_SIZE = 1 << 20;

/**
 * Reads a stream chunk by chunk. A byte stream (the registry client's) is read BYOB into a
 * buffer taken from `pool` and reused for every chunk, so a download allocates nothing per
 * chunk; other streams are read as they come.
 */
class ChunkReader {
  readonly #pool: Uint8Array<ArrayBuffer>[];
  readonly #byob?: ReadableStreamBYOBReader;
  readonly #default?: ReadableStreamDefaultReader<Uint8Array>;
  #buffer?: Uint8Array<ArrayBuffer>;

  constructor(stream: ReadableStream<Uint8Array>, pool: Uint8Array<ArrayBuffer>[]) {
    this.#pool = pool;
    try {
      this.#byob = stream.getReader({ mode: "byob" });
      this.#buffer = pool.pop() ?? new Uint8Array(BUFFER_SIZE);
    } catch {
      this.#default = stream.getReader(); // not a byte stream
    }
  }

  /** The next chunk (valid until the next call), or undefined at the end. */
  async read(): Promise<Uint8Array | undefined> {
    if (this.#default) {
      const { done, value } = await this.#default.read();
      return done ? undefined : value;
    }
    const { done, value } = await this.#byob!.read(this.#buffer!);
    if (!value) return undefined; // cancelled
    this.#buffer = new Uint8Array(value.buffer); // the read transferred it
    return done ? undefined : value;
  }

  async cancel(reason: unknown): Promise<void> {
    await (this.#byob ?? this.#default)!.cancel(reason).catch(() => {});
  }

  /** Releases the stream and gives the buffer back (unless a failed read took it along). */
  release(): void {
    (this.#byob ?? this.#default)!.releaseLock();
    if (this.#buffer?.byteLength === BUFFER_SIZE) this.#pool.push(this.#buffer);
    this.#buffer = undefined;
  }
}

/**
 * A FIFO semaphore of `max` slots: tasks run in the order they asked, each once its `weight`
 * slots (at most all of them) are free.
 */
class Limiter {
  readonly #max: number;
  #used = 0;
  readonly #queue: { weight: number; start: () => void }[] = [];

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new InvalidArgumentError(`invalid number of concurrent downloads ${max}`);
    }
    this.#max = max;
  }

  async run<T>(task: () => Promise<T>, signal: AbortSignal, weight = 1): Promise<T> {
    weight = Math.min(weight, this.#max);
    if (this.#queue.length === 0 && this.#used + weight <= this.#max) this.#used += weight;
    else await new Promise<void>((start) => this.#queue.push({ weight, start })); // slots taken for us
    try {
      signal.throwIfAborted();
      return await task();
    } finally {
      this.#used -= weight;
      while (this.#queue.length > 0 && this.#used + this.#queue[0].weight <= this.#max) {
        const next = this.#queue.shift()!;
        this.#used += next.weight;
        next.start();
      }
    }
  }
}
