/**
 * The one graph copy: {@link copyImage} moves an image's descriptor graph from a
 * {@link CopySource} (a registry, a store, an archive) to a {@link CopyTarget} (a store, a
 * registry, an archive writer), after containerd's `images.Dispatch` with fetch and push handlers
 * and go-containerregistry's interchangeable `layout` and `remote`.
 *
 * Each digest is visited once, however many parents name it. Manifests are read whole (bounded
 * and verified) to find their children; indexes follow the platform selection. Blobs the target
 * has are not copied again. A bounded number of blobs move at once (one over 16 MiB counts as
 * two); a target that must see children before their parent (a registry, which checks the
 * references of a manifest) gets them first, and a target that takes one write at a time (a tar
 * stream) gets them one by one. The first failure stops the rest.
 *
 * @example Copy an image from one store into another
 * ```ts
 * import { copyImage, StoreTarget, storeSource } from "./copy.ts";
 * import { Store } from "../store/store.ts";
 * import { writeBlob } from "../store/write_blob.ts";
 * import { digestOf } from "../digest.ts";
 * import { MediaType } from "../descriptor.ts";
 *
 * const [a, b] = [await Deno.makeTempDir(), await Deno.makeTempDir()];
 * const from = await Store.open(a);
 * const put = async (text: string, mediaType: string) => {
 *   const bytes = new TextEncoder().encode(text);
 *   const digest = digestOf(bytes);
 *   await writeBlob(from, `example-${digest}`, [bytes], { digest, size: bytes.length });
 *   return { mediaType, digest, size: bytes.length };
 * };
 * const config = await put("{}", MediaType.ociConfig);
 * const manifest = await put(
 *   JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [] }),
 *   MediaType.ociManifest,
 * );
 * const to = await Store.open(b);
 * const result = await copyImage(storeSource(from), new StoreTarget(to), [manifest]);
 * console.assert(result.manifests.length === 1 && (await to.has(config.digest)));
 * await Deno.remove(a, { recursive: true });
 * await Deno.remove(b, { recursive: true });
 * ```
 *
 * @module
 */
import type { Descriptor } from "../descriptor.ts";
import { type Digest, digestOf, preloadNativeHash } from "../digest.ts";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  SizeMismatchError,
} from "../errors.ts";
import { ChunkReader } from "../internal/chunk_reader.ts";
import type { Ingester, Provider, Writer } from "../store/capabilities.ts";
import { VerifyStream } from "../verify.ts";
import {
  type Children,
  childrenOf,
  type GraphNode,
  kindOf,
  MAX_MANIFEST_SIZE,
  type NodeKind,
  type PlatformSelection,
} from "./graph.ts";

/**
 * The default number of blobs moved at once. Small blobs are bound by round trips and flushes,
 * so many at once pay: 48 × 512 KiB took 214 ms with 8, 245 ms with 4 (bench/fetch.ts).
 */
export const DEFAULT_MAX_CONCURRENCY = 8;

/**
 * A blob bigger than this takes two transfer slots. Big blobs are bound by CPU (hashing, copies),
 * where more streams only contend: 8 × 128 MiB took 1.56 s four at a time, 1.73 s eight at a time.
 */
const LARGE_BLOB = 16 * 1024 * 1024;

/** How often (at most) a blob's transfer event repeats while bytes move. */
const PROGRESS_INTERVAL_MS = 100;

/** What happened to one blob, or to the image (`resolved`, `recorded`), or to a layer unpacked. */
export type ProgressStatus =
  | "resolved"
  | "waiting"
  | "downloading"
  | "uploading"
  | "exists"
  | "done"
  | "skipped"
  | "recorded"
  | "unpacking"
  | "unpacked";

/**
 * The one progress event of fetch, push, copy, import, export and unpack: plain data, so it
 * serializes as one JSON line.
 */
export interface ProgressEvent {
  /** `waiting`: queued, or another process is writing it; `exists`: the target had it. */
  status: ProgressStatus;
  /** The image: its full reference, record name or digest. */
  name: string;
  /** The blob's (or image's) digest. */
  digest: Digest;
  /** Its media type. */
  mediaType: string;
  /** Its role: index, manifest, config, layer or blob. */
  kind: NodeKind;
  /** The blob's size. */
  size: number;
  /** Bytes moved so far (`downloading`, `uploading`, `done`). */
  offset?: number;
  /** Where this run started in a partial write an earlier one left (resume), when not 0. */
  resumedFrom?: number;
  /** Why a blob waits or was skipped. */
  reason?: string;
  /** The file an archive holds the blob in (import). */
  path?: string;
  /** The registry host that served the blob, where a mirror may have (fetch). */
  host?: string;
  /** Index of the layer being unpacked (0-based) and the number of layers (unpack). */
  layer?: number;
  /** The number of layers of the image being unpacked. */
  layers?: number;
  /** Entries applied and file bytes written by an unpacked layer. */
  entries?: number;
  /** File bytes written by an unpacked layer. */
  bytes?: number;
}

/** A blob's bytes as a source opened them. */
export interface OpenedBlob {
  /** The bytes, from {@link OpenedBlob.offset} to the end. */
  stream: ReadableStream<Uint8Array>;
  /** Where the stream starts: a registry may ignore the range asked for and send everything. */
  offset: number;
  /** The host that serves it, where a source has several (mirrors). */
  host?: string;
}

/** Where {@link copyImage} reads: a registry, a store, an archive. */
export interface CopySource {
  /** Reads a manifest or index whole, bounded by {@link MAX_MANIFEST_SIZE} and verified. */
  readManifest(
    descriptor: Descriptor,
    options: { signal?: AbortSignal },
  ): Promise<Uint8Array<ArrayBuffer>>;
  /** Opens a blob from `offset` (default 0). */
  open(
    descriptor: Descriptor,
    options: { offset?: number; signal?: AbortSignal },
  ): Promise<OpenedBlob>;
  /**
   * Whether the source holds a blob, for those that can tell cheaply (a store). Non-distributable
   * layers are copied only from a source that has them, and {@link CopyOptions.present} needs it.
   */
  has?(descriptor: Descriptor): Promise<boolean>;
}

/** What a target's write may do besides writing: report, and take a transfer slot. */
export interface WriteContext {
  /** The role of the content being written. */
  kind: NodeKind;
  /** Stops the write. */
  signal: AbortSignal;
  /** Runs `task` (the transfer of the bytes) in a slot of the copy's concurrency limit. */
  transfer<T>(task: () => Promise<T>): Promise<T>;
  /** Counts bytes read from the source. */
  moved(bytes: number): void;
  /** Reports a `waiting`, `downloading` or `uploading` state of the write. */
  report(
    update: Pick<ProgressEvent, "status" | "offset" | "resumedFrom" | "reason" | "host">,
  ): void;
}

/** Where {@link copyImage} writes: a store, a registry, an archive. */
export interface CopyTarget {
  /** Children must be complete before their parent is written (a registry checks references). */
  readonly childrenFirst: boolean;
  /** The most writes the target takes at once (a tar stream: 1); default: no limit of its own. */
  readonly maxConcurrency?: number;
  /** Whether the target already holds the content. */
  has(descriptor: Descriptor, signal: AbortSignal): Promise<boolean>;
  /** The bytes of a manifest the target already holds, sparing a read from the source. */
  readManifest?(descriptor: Descriptor): Promise<Uint8Array<ArrayBuffer> | undefined>;
  /**
   * Writes a manifest or index with exactly these bytes; resolves `exists` when the target turned
   * out to hold it.
   */
  writeManifest(
    descriptor: Descriptor,
    bytes: Uint8Array,
    context: WriteContext,
  ): Promise<"done" | "exists">;
  /**
   * Writes a blob read from `source`, resuming what an earlier write left where the target can;
   * resolves `exists` when it turned out that another writer stored it meanwhile.
   */
  writeBlob(
    descriptor: Descriptor,
    source: CopySource,
    context: WriteContext,
  ): Promise<"done" | "exists">;
}

/** Options of {@link copyImage}. */
export interface CopyOptions extends PlatformSelection {
  /** Names the image in progress events and errors. */
  name?: string;
  /** The verb errors name the copy by (default `copy`): `fetch`, `push`, `export`. */
  action?: string;
  /**
   * Copy only the manifests of an index that the source holds (a store holds the platforms that
   * were fetched); needs a source with {@link CopySource.has}.
   */
  present?: boolean;
  /** Blobs moved at once (default {@link DEFAULT_MAX_CONCURRENCY}); one over 16 MiB counts as two. */
  maxConcurrency?: number;
  /** Stops the copy; what a target can resume (a store's ingests) stays for the next run. */
  signal?: AbortSignal;
  /** Receives progress events. */
  onProgress?: (event: ProgressEvent) => void;
}

/** What {@link copyImage} copied. */
export interface CopyResult {
  /** The single-platform manifests below the roots that were copied (or found at the target). */
  manifests: Descriptor[];
  /** Non-distributable layers that were left out. */
  skipped: Descriptor[];
  /** Bytes this run moved to the target (read from the source and written). */
  copied: number;
}

/**
 * Copies the graphs below `roots` from `source` to `target` for the selected platforms (default:
 * the host's). Throws the first failure, after stopping the rest; {@link NotFoundError} when an
 * index has no manifest for a wanted platform.
 */
export async function copyImage(
  source: CopySource,
  target: CopyTarget,
  roots: Descriptor[],
  options: CopyOptions = {},
): Promise<CopyResult> {
  const job = new CopyJob(source, target, options);
  return await job.run(roots);
}

class CopyJob {
  readonly #source: CopySource;
  readonly #target: CopyTarget;
  readonly #options: CopyOptions;
  /** Blobs in transfer. */
  readonly #transfers: Limiter;
  /** Writes open at the target (transfer, commit, or waiting on another process): bounds files. */
  readonly #writes: Limiter;
  // a failed blob stops the others, as does the caller's signal
  readonly #abort = new AbortController();
  readonly #visited = new Map<string, Promise<void>>();
  /** The host that served each blob, for its `done` event. */
  readonly #hosts = new Map<string, string>();
  readonly #manifests: Descriptor[] = [];
  readonly #skipped: Descriptor[] = [];
  #copied = 0;
  #failure: unknown;

  constructor(source: CopySource, target: CopyTarget, options: CopyOptions) {
    this.#source = source;
    this.#target = target;
    this.#options = options;
    const max = options.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
    this.#transfers = new Limiter(max);
    this.#writes = new Limiter(Math.min(2 * max, target.maxConcurrency ?? Infinity));
  }

  get #signal(): AbortSignal {
    return this.#abort.signal;
  }

  async run(roots: Descriptor[]): Promise<CopyResult> {
    const outer = this.#options.signal;
    outer?.throwIfAborted();
    const onAbort = () => this.#abort.abort(outer!.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    try {
      await this.#all(
        roots.map((descriptor) => this.#visit({ descriptor, kind: kindOf(descriptor) })),
      );
      return { manifests: this.#manifests, skipped: this.#skipped, copied: this.#copied };
    } finally {
      outer?.removeEventListener("abort", onAbort);
    }
  }

  #emit(node: GraphNode, update: Partial<ProgressEvent> & Pick<ProgressEvent, "status">): void {
    const { descriptor, kind } = node;
    this.#options.onProgress?.({
      name: this.#options.name ?? descriptor.digest,
      digest: descriptor.digest,
      mediaType: descriptor.mediaType,
      kind,
      size: descriptor.size,
      ...update,
    });
  }

  #context(node: GraphNode): WriteContext {
    const weight = node.descriptor.size > LARGE_BLOB ? 2 : 1;
    let last = 0;
    return {
      kind: node.kind,
      signal: this.#signal,
      transfer: (task) => this.#transfers.run(task, this.#signal, weight),
      moved: (bytes) => (this.#copied += bytes),
      report: (update) => {
        if (update.host) this.#hosts.set(node.descriptor.digest, update.host);
        // transfer updates repeat at most every PROGRESS_INTERVAL_MS, apart from the first
        const now = Date.now();
        const moving = update.status === "downloading" || update.status === "uploading";
        // the last update of a stopped copy always goes out: it is what `dist active` shows
        const final = this.#signal.aborted;
        if (moving && !final && update.offset !== 0 && update.offset !== node.descriptor.size) {
          if (now - last < PROGRESS_INTERVAL_MS) return;
        }
        last = now;
        this.#emit(node, update);
      },
    };
  }

  /** Copies a node once, however many parents point at it. */
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
    const held = await this.#target.readManifest?.(node.descriptor);
    const bytes = held ?? await this.#transfers.run(() => this.#readManifest(node), this.#signal);
    if (held) this.#emit(node, { status: "exists" });
    const write = async () => {
      if (held) return;
      const outcome = await this.#writes.run(
        () => this.#target.writeManifest(node.descriptor, bytes, this.#context(node)),
        this.#signal,
      );
      if (outcome === "exists") return this.#emit(node, { status: "exists" });
      this.#copied += bytes.length;
      this.#emit(node, { status: "done", offset: bytes.length });
    };
    let graph: Children;
    try {
      graph = childrenOf(node.descriptor, bytes, this.#options);
    } catch (error) {
      if (!this.#target.childrenFirst) await write().catch(() => {}); // an index stays stored
      if (!(error instanceof NotFoundError)) throw error;
      const name = this.#options.name ?? node.descriptor.digest;
      const action = this.#options.action ?? "copy";
      throw new NotFoundError(`cannot ${action} ${name}: ${error.message}`, { cause: error });
    }
    if (node.kind === "manifest") this.#manifests.push(node.descriptor);
    const children = await this.#wanted(graph);
    const copies = children.map((child) => this.#visit(child));
    if (this.#target.childrenFirst) {
      await this.#all(copies);
      await write();
    } else await this.#all([write(), ...copies]);
  }

  /** The children to copy: non-distributable layers only from a source that has them. */
  async #wanted(graph: Children): Promise<GraphNode[]> {
    const children = [...graph.children];
    if (this.#options.present) {
      const held = await Promise.all(
        children.map((c) => (c.kind === "config" || c.kind === "layer") || this.#has(c)),
      );
      children.splice(0, children.length, ...children.filter((_, i) => held[i]));
    }
    for (const layer of graph.skipped) {
      const node: GraphNode = { descriptor: layer, kind: "layer" };
      if (await this.#has(node)) children.push(node);
      else {
        this.#skipped.push(layer);
        this.#emit(node, { status: "skipped", reason: "non-distributable" });
      }
    }
    return children;
  }

  async #has(node: GraphNode): Promise<boolean> {
    return (await this.#source.has?.(node.descriptor)) ?? false;
  }

  #readManifest(node: GraphNode): Promise<Uint8Array<ArrayBuffer>> {
    return this.#source.readManifest(node.descriptor, { signal: this.#signal });
  }

  async #visitBlob(node: GraphNode): Promise<void> {
    if (await this.#target.has(node.descriptor, this.#signal)) {
      this.#emit(node, { status: "exists" });
      return;
    }
    this.#emit(node, { status: "waiting", offset: 0 });
    const outcome = await this.#writes.run(
      () => this.#target.writeBlob(node.descriptor, this.#source, this.#context(node)),
      this.#signal,
    );
    const host = this.#hosts.get(node.descriptor.digest);
    this.#emit(
      node,
      outcome === "done"
        ? { status: "done", offset: node.descriptor.size, ...(host ? { host } : {}) }
        : { status: "exists" },
    );
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
}

// ---------------------------------------------------------------------------------------------
// A store as source and as target

/**
 * A store (or any {@link Provider}) as a copy source. Content is verified as it is read, unless
 * `verify` is false: for a target that verifies it anyway (a registry checks the digest of every
 * upload), where hashing twice only costs time.
 */
export function storeSource(provider: Provider, settings: { verify?: boolean } = {}): CopySource {
  return {
    async readManifest(descriptor) {
      const bytes = await provider.readBytes(descriptor.digest, { maxSize: MAX_MANIFEST_SIZE });
      const actual = digestOf(bytes);
      if (actual !== descriptor.digest || bytes.length !== descriptor.size) {
        throw new DigestMismatchError(
          `stored ${descriptor.digest} does not match its digest (got ${actual}, ${bytes.length} bytes)`,
        );
      }
      return bytes;
    },
    async open(descriptor, options) {
      const offset = options.offset ?? 0;
      const stream = await provider.read(descriptor.digest, { offset });
      // whole reads are checked on the way: a blob changed on disk is not passed on
      if (offset > 0 || settings.verify === false) return { stream, offset };
      const label = `stored ${descriptor.digest}`;
      return { stream: stream.pipeThrough(new VerifyStream({ ...descriptor, label })), offset };
    },
    has: (descriptor) => provider.has(descriptor.digest),
  };
}

/**
 * A store as a copy target: every blob through an ingest keyed by its digest (`layer-sha256:…`,
 * `manifest-sha256:…`), so concurrent copies of one blob share one write, and a partial ingest
 * an earlier run left is resumed where the source allows.
 */
export class StoreTarget implements CopyTarget {
  readonly childrenFirst = false;
  readonly #store: Provider & Ingester;
  readonly #claim?: (digests: Digest[]) => void;
  /** Digests asked about meanwhile: claimed together, in one turn of the lease lock. */
  #unclaimed: Digest[] = [];
  #claiming: Promise<void> | undefined;
  readonly #buffers: Uint8Array<ArrayBuffer>[] = [];
  /** Set once the native hasher is being loaded (see {@link StoreTarget.#fill}). */
  #hashLoading: Promise<void> | undefined;

  /**
   * Writes into `store`. `claim` is told every digest before the store is asked for it: a lease
   * protects it from `delete` from then on (see lease.ts). The digests asked about in one go
   * (a manifest's children) are claimed together.
   */
  constructor(store: Provider & Ingester, claim?: (digests: Digest[]) => void) {
    this.#store = store;
    this.#claim = claim;
  }

  async has(descriptor: Descriptor): Promise<boolean> {
    if (this.#claim) {
      this.#unclaimed.push(descriptor.digest);
      // the first ask of a go claims, a microtask later, all the digests asked for until then
      await (this.#claiming ??= Promise.resolve().then(() => {
        const digests = this.#unclaimed;
        this.#unclaimed = [];
        this.#claiming = undefined;
        this.#claim!(digests);
      }));
    }
    return await this.#store.has(descriptor.digest);
  }

  async readManifest(descriptor: Descriptor): Promise<Uint8Array<ArrayBuffer> | undefined> {
    if (!(await this.has(descriptor))) return undefined;
    return await storeSource(this.#store).readManifest(descriptor, {});
  }

  async writeManifest(
    descriptor: Descriptor,
    bytes: Uint8Array,
    context: WriteContext,
  ): Promise<"done" | "exists"> {
    const writer = await this.#openWriter(descriptor, context);
    if (!writer) return "exists";
    try {
      if (writer.offset > 0) await writer.truncate(0);
      await writer.write(bytes);
      await writer.commit(bytes.length, descriptor.digest);
    } catch (error) {
      await writer.close().catch(() => {});
      if (!(error instanceof AlreadyExistsError)) throw error;
      return "exists";
    }
    return "done";
  }

  async writeBlob(
    descriptor: Descriptor,
    source: CopySource,
    context: WriteContext,
  ): Promise<"done" | "exists"> {
    const writer = await this.#openWriter(descriptor, context);
    if (!writer) return "exists";
    // Only the transfer takes a slot: opening the ingest (or waiting for another process's lock
    // on it) and committing (fsync, rename) overlap other transfers.
    const fill = () => context.transfer(() => this.#fill(descriptor, source, writer, context));
    try {
      const resumed = await fill();
      try {
        await writer.commit(descriptor.size, descriptor.digest);
      } catch (error) {
        const mismatch = error instanceof DigestMismatchError ||
          error instanceof SizeMismatchError;
        if (!mismatch || !resumed) throw error;
        // the partial ingest an earlier run left was damaged; commit dropped it: copy it whole
        await fill();
        await writer.commit(descriptor.size, descriptor.digest);
      }
    } catch (error) {
      await writer.close().catch(() => {});
      if (error instanceof AlreadyExistsError) return "exists";
      throw naming(error, context.kind, descriptor);
    }
    return "done";
  }

  /**
   * Opens the ingest for a blob, waiting when another process holds it; undefined when the blob
   * got committed meanwhile (by that other process).
   */
  async #openWriter(descriptor: Descriptor, context: WriteContext): Promise<Writer | undefined> {
    const role = context.kind === "index" ? "manifest" : context.kind;
    const ref = `${role}-${descriptor.digest}`;
    const options = {
      expected: descriptor.digest,
      total: descriptor.size,
      signal: context.signal,
      // most small blobs commit before their ingest's metadata is worth its files
      deferMetadata: true,
    };
    try {
      try {
        return await this.#store.writer(ref, options);
      } catch (error) {
        if (!(error instanceof LockedError)) throw error;
        context.report({ status: "waiting", reason: "another process is fetching it" });
        return await this.#store.writer(ref, { ...options, wait: true });
      }
    } catch (error) {
      if (error instanceof AlreadyExistsError) return undefined;
      throw error;
    }
  }

  /**
   * Streams the rest of a blob into its ingest, from the ingest's current offset; returns whether
   * it continued bytes an earlier run left.
   */
  async #fill(
    descriptor: Descriptor,
    source: CopySource,
    writer: Writer,
    context: WriteContext,
  ): Promise<boolean> {
    let offset = writer.offset;
    if (offset > descriptor.size) {
      await writer.truncate(0);
      offset = 0;
    }
    const resumedFrom = offset > 0 ? offset : undefined;
    context.report({ status: "downloading", offset, resumedFrom });
    if (offset === descriptor.size) return offset > 0;
    const opened = await source.open(descriptor, { offset, signal: context.signal });
    // Everything written here is hashed. The native hasher costs this thread 20–30 ms to load:
    // spent once the first reply is in, the source works on the other blobs asked for meanwhile
    // (a request is only on its way some turns after it is asked for). Blobs whose first bytes
    // come before it is loaded are collected and hashed by Web Crypto (see Digester).
    this.#hashLoading ??= preloadNativeHash().catch(() => {});
    if (opened.host) {
      context.report({ status: "downloading", offset, resumedFrom, host: opened.host });
    }
    if (opened.offset !== offset) {
      // the source ignored the range and sends everything: start the ingest over
      await opened.stream.cancel().catch(() => {});
      if (opened.offset !== 0) {
        throw new SizeMismatchError(
          `cannot resume ${descriptor.digest} at ${offset}: the source answered from ` +
            opened.offset,
        );
      }
      await writer.truncate(0);
      await this.#append(writer, opened.stream, descriptor, 0, undefined, context);
      return false;
    }
    await this.#append(writer, opened.stream, descriptor, offset, resumedFrom, context);
    return offset > 0;
  }

  async #append(
    writer: Writer,
    stream: ReadableStream<Uint8Array>,
    { digest, size }: Descriptor,
    start: number,
    resumedFrom: number | undefined,
    context: WriteContext,
  ): Promise<void> {
    let offset = start;
    const chunks = new ChunkReader(stream, this.#buffers);
    try {
      for (let chunk; (chunk = await chunks.read()) !== undefined;) {
        if (offset + chunk.byteLength > size) {
          // a source that sends more than the descriptor says must not fill the disk
          throw new SizeMismatchError(
            `cannot store ${context.kind} ${digest}: the source sent more than ${size} bytes`,
          );
        }
        await writer.write(chunk);
        offset += chunk.byteLength;
        context.moved(chunk.byteLength);
        context.report({ status: "downloading", offset, resumedFrom });
      }
    } catch (error) {
      await chunks.cancel(error);
      context.report({ status: "downloading", offset, resumedFrom }); // where it stopped
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
function naming(error: unknown, kind: NodeKind, descriptor: Descriptor): unknown {
  // Deno's OS errors end in "(os error N)"; some have a class of their own, others (ENOSPC) not
  if (!(error instanceof Error) || !/ \(os error \d+\)$/.test(error.message)) return error;
  const reason = error.message.replace(/ \(os error \d+\)$/, ""); // as cli.ts shows OS errors
  const message = reason[0].toLowerCase() + reason.slice(1);
  return new Error(`cannot store ${kind} ${descriptor.digest}: ${message}`, { cause: error });
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
    if (!(Number.isInteger(max) || max === Infinity) || max < 1) {
      throw new InvalidArgumentError(`invalid number of concurrent transfers ${max}`);
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
