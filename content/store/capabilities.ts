/**
 * The store's capabilities, after containerd's content package (content.go): a {@link Provider}
 * reads committed content, an {@link Ingester} writes new content through locked ingests, a
 * {@link Manager} lists and deletes it, an {@link IngestManager} watches and aborts writes in
 * progress. {@link Store} implements all four; code asks for the one it needs.
 *
 * @module
 */
import type { Digest } from "../digest.ts";

/** A committed blob. */
export interface Info {
  /** Its digest. */
  digest: Digest;
  /** Its size in bytes. */
  size: number;
  /** When it was committed. */
  createdAt: Date;
  /** When its data was last written. */
  updatedAt: Date;
}

/** An ingest: a write in progress under a ref. */
export interface Status {
  /** The ref the ingest is keyed by, e.g. `layer-sha256:…`. */
  ref: string;
  /** Bytes written so far. */
  offset: number;
  /** The expected size, when the writer said. */
  total?: number;
  /** The expected digest, when the writer said. */
  expected?: Digest;
  /** When the ingest was started (or last restarted from zero). */
  startedAt: Date;
  /** When data was last written to it. */
  updatedAt: Date;
}

/** Options of {@link Ingester.writer}. */
export interface WriterOptions {
  /**
   * The digest the content will have. When it is already committed, {@link Ingester.writer} throws
   * {@link AlreadyExistsError}; when a stale ingest under the ref expects another digest, it is
   * restarted from zero.
   */
  expected?: Digest;
  /** The size the content will have; a stale ingest with another total restarts from zero. */
  total?: number;
  /** Wait (polling with backoff) while another writer holds the ref, instead of throwing. */
  wait?: boolean;
  /** Stops waiting for the lock. */
  signal?: AbortSignal;
  /**
   * Leave a new ingest's files other than `data` (`ref`, `total`, `expected`, `lock`) unwritten
   * until 100 ms after the writer's first byte (after its opening while it has none), or until
   * it closes keeping data to resume. For many small blobs that are fetched again as cheaply:
   * most of them commit before then and never create those files, even when they waited for a
   * download slot. Until then {@link IngestManager.status} does not see the ingest (nor
   * `dist active`), and a process killed before then leaves nothing to resume: the next writer
   * starts from zero.
   */
  deferMetadata?: boolean;
  /**
   * Keep the ingest when it is closed empty (by default an empty one is removed): an upload a
   * registry client opened is in progress, and shows in `dist active`, before its first byte.
   */
  keepEmpty?: boolean;
}

/** Options of {@link Provider.read}. */
export interface ReadOptions {
  /** Start reading at this byte (default 0). */
  offset?: number;
  /** Read at most this many bytes (default: to the end). */
  length?: number;
}

/** Options of {@link Provider.readBytes}. */
export interface ReadBytesOptions {
  /** Refuse (with {@link SizeMismatchError}) content larger than this many bytes. */
  maxSize?: number;
}

/** Selects ingests by ref in {@link IngestManager.listStatuses}; both must match when both are given. */
export interface StatusFilter {
  /** Refs starting with this. */
  prefix?: string;
  /** Refs matching this expression. */
  pattern?: RegExp;
}

/** An exclusive writer on one ingest, from {@link Ingester.writer}. */
export interface Writer {
  /** The ref of the ingest. */
  readonly ref: string;
  /**
   * Bytes in the ingest so far. Right after opening, the resume point: a resumed ingest keeps
   * what an earlier writer left, and its digest state was rebuilt from those bytes.
   */
  readonly offset: number;
  /** A stream over {@link Writer.write}; closing it flushes but neither commits nor unlocks. */
  readonly writable: WritableStream<Uint8Array>;
  /** Appends bytes. The chunk may be reused by the caller once the promise settles. */
  write(chunk: Uint8Array): Promise<void>;
  /** The ingest's current status. */
  status(): Status;
  /**
   * The digest of the bytes written so far, without ending the hash: callers that learn the
   * digest only from the content (an archive's unnamed layer) need not hash it a second time.
   */
  digest(): Digest;
  /** Drops everything written so far and restarts the ingest at offset 0. */
  truncate(size: 0): Promise<void>;
  /**
   * Verifies that the ingest holds exactly `size` bytes with `digest`, flushes them to disk,
   * renames them into `blobs/` and releases the lock. On a size or digest mismatch it throws
   * {@link SizeMismatchError} or {@link DigestMismatchError} naming both values and drops the bad
   * bytes: the writer stays open at offset 0, to be written again or closed. When the blob
   * exists already it throws {@link AlreadyExistsError} and removes the ingest.
   */
  commit(size: number, digest: Digest): Promise<Info>;
  /**
   * Flushes, releases the lock and keeps the data for a later writer to resume; an ingest that
   * holds no data is removed. Does nothing after commit or discard.
   */
  close(): Promise<void>;
  /** Removes the ingest and its data and releases the lock. Does nothing after commit or close. */
  discard(): Promise<void>;
}

/** Reads committed content (containerd's `content.Provider` with `InfoProvider`). */
export interface Provider {
  /** Describes a committed blob; throws {@link NotFoundError} when it is absent. */
  info(digest: Digest): Promise<Info>;
  /** Reports whether a blob is committed. */
  has(digest: Digest): Promise<boolean>;
  /** Opens a blob as a stream, from `offset` and for `length` bytes when given. */
  read(digest: Digest, options?: ReadOptions): Promise<ReadableStream<Uint8Array>>;
  /** Reads a whole blob into memory: for small content such as manifests and configs. */
  readBytes(digest: Digest, options?: ReadBytesOptions): Promise<Uint8Array<ArrayBuffer>>;
}

/** Writes new content (containerd's `content.Ingester`). */
export interface Ingester {
  /**
   * Opens the ingest `ref` exclusively, across processes: a new one, or one an earlier writer
   * left, resumed at its length. Throws {@link LockedError} while another writer holds it
   * (unless `wait`), {@link AlreadyExistsError} when `expected` is committed already.
   */
  writer(ref: string, options?: WriterOptions): Promise<Writer>;
}

/** Lists and removes committed content (containerd's `content.Manager`). */
export interface Manager {
  /** Lists every committed blob, in no particular order. */
  list(): AsyncIterable<Info>;
  /** Removes a blob; throws {@link NotFoundError} when it is absent. */
  delete(digest: Digest): Promise<void>;
}

/** Watches and ends writes in progress (containerd's `content.IngestManager`). */
export interface IngestManager {
  /** The status of one ingest; throws {@link NotFoundError} when there is none. */
  status(ref: string): Promise<Status>;
  /** The statuses of the ingests that match `filter`. */
  listStatuses(filter?: StatusFilter): Promise<Status[]>;
  /** Removes an ingest and its data; throws {@link LockedError} while a writer holds it. */
  abort(ref: string): Promise<void>;
}
