/**
 * The content-addressable store: committed blobs and in-progress ingests on local disk.
 *
 * The root is a valid OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) plus
 * `ingest/` for writes in progress, one directory per ingest ref. A blob appears in `blobs/` only
 * by an atomic rename after its size and digest were verified and its data flushed, so readers
 * never see partial content. Each ingest is written by one writer at a time, across processes
 * and within one, under an exclusive file lock; a writer that reopens an ingest resumes it.
 *
 * @example
 * ```ts
 * import { Store } from "./store.ts";
 * import { digestOf } from "../digest.ts";
 *
 * const root = await Deno.makeTempDir();
 * const store = await Store.open(root);
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * const writer = await store.writer(`example-${digest}`, { expected: digest });
 * await writer.write(bytes);
 * const info = await writer.commit(bytes.length, digest);
 * console.assert(info.size === 5 && (await store.readBytes(digest)).length === 5);
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import {
  type Digest,
  type DigestAlgorithm,
  digestAlgorithm,
  Digester,
  digestHex,
  isDigest,
  parseDigest,
} from "../digest.ts";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  SizeMismatchError,
} from "../errors.ts";
import {
  formatTime,
  INGEST_NAME,
  ingestName,
  type IngestRecord,
  moveToTrash,
  parseExpected,
  parseTime,
  parseTotal,
  readIngest,
  removeIfPresent,
  removeTrash,
  TRASH_PREFIX,
  writeSmallFileAtomic,
} from "./_ingest.ts";
import { readLockInfo, tryLockDir, writeLockInfo } from "./_lock.ts";
import { sleep } from "../internal/sleep.ts";
import { syncDirectory } from "../internal/file_stream.ts";

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

/** Options of {@link Store.writer}. */
export interface WriterOptions {
  /**
   * The digest the content will have. When it is already committed, {@link Store.writer} throws
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
   * until the writer has been open for 100 ms, or closes keeping data to resume. For many small
   * blobs that are fetched again as cheaply: most of them commit before then and never create
   * those files. Until then {@link Store.status} does not see the ingest (nor `dist active`), and
   * a process killed before then leaves nothing to resume: the next writer starts from zero.
   */
  deferMetadata?: boolean;
}

/** Options of {@link Store.open}. */
export interface OpenOptions {
  /**
   * Create the layout when it is missing (default true). False suits readers that must leave no
   * trace, such as `dist list`: a missing root then reads as an empty store (writing to it fails).
   */
  create?: boolean;
}

/** Options of {@link Store.read}. */
export interface ReadOptions {
  /** Start reading at this byte (default 0). */
  offset?: number;
}

/** Options of {@link Store.readBytes}. */
export interface ReadBytesOptions {
  /** Refuse (with {@link SizeMismatchError}) content larger than this many bytes. */
  maxSize?: number;
}

/** Selects ingests by ref in {@link Store.listStatuses}; both must match when both are given. */
export interface StatusFilter {
  /** Refs starting with this. */
  prefix?: string;
  /** Refs matching this expression. */
  pattern?: RegExp;
}

/** Options of {@link Store.prune}. */
export interface PruneOptions {
  /** Remove ingests not updated for this many milliseconds. */
  olderThan: number;
  /** Only report what would be removed. */
  dryRun?: boolean;
}

/** An exclusive writer on one ingest, from {@link Store.writer}. */
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

/** Reads of stored files go through buffers this big (1 MiB reads are ~3x faster than 64 KiB). */
const READ_CHUNK = 1 << 20;
/**
 * Chunks at least this big are hashed and written straight through. Smaller ones are gathered
 * into a buffer of {@link PENDING_SIZE} first. Measured with 1 GiB through a pipe (64 KiB per
 * read): direct 64 KiB writes took 1.2 s, gathering into 256 KiB 1.5 s and into 1 MiB 1.7 s, as
 * data written from a buffer still hot in the CPU cache is cheaper than a bigger syscall saves.
 */
const DIRECT_WRITE = 64 << 10;
const PENDING_SIZE = 256 << 10;
/**
 * Chunks at least this big (registry downloads read 1 MiB at a time) are written asynchronously:
 * a synchronous write blocks the event loop whenever the kernel throttles dirty pages, stalling
 * every other download of the process. 8 × 128 MiB from a loopback registry, 4 at once: 1.4–1.8 s
 * with async writes, 1.9–4.1 s with synchronous ones.
 */
const ASYNC_WRITE = 512 << 10;
/**
 * After this many bytes, the data written so far is flushed to disk in the background
 * (`fdatasync` on the thread pool) while writing goes on; the next flush waits for the previous.
 * This keeps the dirty pages of a big ingest few, so the kernel does not throttle our writes and
 * the flush at commit has little left to do. 1 GiB through a pipe on a busy machine: 1.5–1.8 s
 * with it, 2.9–4.1 s without (where the final flush alone took 0.3–0.5 s).
 */
const SYNC_INTERVAL = 64 << 20;
/** `updatedat` is rewritten (and pending bytes flushed) at most this often during writes. */
const TOUCH_INTERVAL_MS = 100;
/** How many files are stat'ed or read at once when listing. */
const BATCH = 128;
const HEX_NAME: Record<DigestAlgorithm, RegExp> = {
  sha256: /^[0-9a-f]{64}$/,
  sha512: /^[0-9a-f]{128}$/,
};
const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';
const EMPTY_INDEX = '{"schemaVersion":2,"manifests":[]}';
const encoder = new TextEncoder();

/** Throws {@link InvalidArgumentError} unless `ref` can name an ingest. */
function checkRef(ref: string): void {
  if (typeof ref !== "string" || ref.length === 0) {
    throw new InvalidArgumentError(`invalid ingest ref ${JSON.stringify(ref)}: must not be empty`);
  }
}

/** Throws {@link InvalidArgumentError} unless `value` is a byte count. */
function checkSize(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`invalid ${what} ${value}: want a whole number of bytes`);
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

function infoOf(digest: Digest, stat: Deno.FileInfo): Info {
  const updatedAt = stat.mtime ?? new Date();
  // the commit renames and chmods the file, which sets its ctime: the time it was committed
  return {
    digest,
    size: stat.size,
    createdAt: stat.ctime ?? stat.birthtime ?? updatedAt,
    updatedAt,
  };
}

function statusOf(record: IngestRecord): Status {
  const status: Status = {
    ref: record.ref,
    offset: record.offset,
    startedAt: record.startedAt,
    updatedAt: record.updatedAt,
  };
  if (record.total !== undefined) status.total = record.total;
  if (record.expected !== undefined) status.expected = record.expected;
  return status;
}

function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

/**
 * Runs a flush on request, at most one at a time: a request made while one runs is served by the
 * next, which starts when the running one ends and serves every request made until then.
 */
class SharedFlush {
  readonly #flush: () => Promise<void>;
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  constructor(flush: () => Promise<void>) {
    this.#flush = flush;
  }

  /** Resolves once a flush that started after this call has completed. */
  request(): Promise<void> {
    if (this.#next) return this.#next;
    if (!this.#running) return this.#start();
    this.#next = this.#running.catch(() => {}).then(() => {
      this.#next = undefined;
      return this.#start();
    });
    return this.#next;
  }

  #start(): Promise<void> {
    const run = this.#flush().finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
    this.#running = run;
    return run;
  }
}

/** Creates a file with `text` unless it exists, atomically: nobody sees it empty or half-written. */
function createFileOnce(path: string, text: string): void {
  try {
    Deno.lstatSync(path);
    return;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  Deno.writeTextFileSync(temp, text);
  try {
    Deno.linkSync(temp, path); // unlike rename, never replaces what another process created
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return;
    // a file system without hard links: create it exclusively and write it, less atomically
    try {
      Deno.writeTextFileSync(path, text, { createNew: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  } finally {
    Deno.removeSync(temp);
  }
}

function writeTotal(dir: string, total: number): void {
  Deno.writeTextFileSync(`${dir}/total`, String(total));
}

function writeExpected(dir: string, expected: Digest): void {
  Deno.writeTextFileSync(`${dir}/expected`, expected);
}

/** Hashes a file from its start (resume, or a commit with another algorithm). */
async function hashFile(file: Deno.FsFile, algorithm: DigestAlgorithm): Promise<Digester> {
  const digester = new Digester(algorithm);
  const buffer = new Uint8Array(READ_CHUNK);
  await file.seek(0, Deno.SeekMode.Start);
  for (;;) {
    const n = await file.read(buffer);
    if (n === null) break;
    digester.update(buffer.subarray(0, n));
  }
  return digester;
}

/** The local content store. */
export class Store {
  /** The absolute path of the store root. */
  readonly root: string;
  readonly #blobs: string;
  readonly #ingests: string;
  readonly #dirFlushes = new Map<string, SharedFlush>();

  private constructor(root: string) {
    this.root = root;
    this.#blobs = `${root}/blobs`;
    this.#ingests = `${root}/ingest`;
  }

  /**
   * Opens the store at `root`, creating the OCI layout and `ingest/` on first use. With
   * `create: false` nothing is created: a missing root reads as an empty store.
   */
  // deno-lint-ignore require-await
  static async open(root: string, options: OpenOptions = {}): Promise<Store> {
    // small local calls, made synchronously (see _lock.ts): every command opens the store
    const store = new Store(resolve(root));
    const create = options.create ?? true;
    try {
      if (create) {
        Deno.mkdirSync(`${store.#blobs}/sha256`, { recursive: true });
        Deno.mkdirSync(store.#ingests, { recursive: true });
        createFileOnce(`${store.root}/oci-layout`, OCI_LAYOUT);
        createFileOnce(`${store.root}/index.json`, EMPTY_INDEX);
      } else if (!Deno.statSync(store.root).isDirectory) {
        throw new Deno.errors.NotADirectory(store.root);
      }
    } catch (error) {
      if (!create && isNotFound(error)) return store; // no store yet: empty
      if (error instanceof Deno.errors.NotCapable) throw error; // the CLI names the permission
      const reason =
        error instanceof Deno.errors.NotADirectory || error instanceof Deno.errors.AlreadyExists
          ? "a file is in the way"
          : (error as Error).message;
      throw new Error(`cannot open the store at ${store.root}: ${reason}`, { cause: error });
    }
    return store;
  }

  /**
   * The path of a blob, whether or not it exists. Throws {@link InvalidArgumentError} for a
   * malformed digest, so no path is ever built from one.
   */
  blobPath(digest: Digest): string {
    if (!isDigest(digest)) parseDigest(digest); // throws, naming the value
    return `${this.#blobs}/${digestAlgorithm(digest)}/${digestHex(digest)}`;
  }

  /** Describes a committed blob; throws {@link NotFoundError} when it is absent. */
  async info(digest: Digest): Promise<Info> {
    const path = this.blobPath(digest);
    try {
      return infoOf(digest, await Deno.stat(path));
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError(`content ${digest} not found`);
      throw error;
    }
  }

  /** Reports whether a blob is committed. */
  async has(digest: Digest): Promise<boolean> {
    const path = this.blobPath(digest);
    try {
      await Deno.stat(path);
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** Opens a blob as a stream of up to 1 MiB chunks, from `offset` when given. */
  async read(digest: Digest, options: ReadOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const offset = options.offset ?? 0;
    checkSize("offset", offset);
    const file = await this.#openBlob(digest);
    let position = offset;
    let size: number;
    try {
      size = (await file.stat()).size;
      if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
    } catch (error) {
      file.close();
      throw error;
    }
    let open = true;
    const finish = () => {
      if (open) file.close();
      open = false;
    };
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          // blobs never change: stop at their size instead of reading once more to see the end
          const want = Math.min(READ_CHUNK, size - position);
          const buffer = new Uint8Array(Math.max(want, 0));
          const n = want > 0 ? await file.read(buffer) : null;
          if (n === null) {
            finish();
            controller.close();
            return;
          }
          position += n;
          controller.enqueue(n === buffer.length ? buffer : buffer.subarray(0, n));
        } catch (error) {
          finish();
          controller.error(error);
        }
      },
      cancel: finish,
    });
  }

  /** Reads a whole blob into memory: for small content such as manifests and configs. */
  async readBytes(
    digest: Digest,
    options: ReadBytesOptions = {},
  ): Promise<Uint8Array<ArrayBuffer>> {
    const file = await this.#openBlob(digest);
    try {
      const { size } = await file.stat();
      if (options.maxSize !== undefined && size > options.maxSize) {
        throw new SizeMismatchError(
          `cannot read ${digest}: size ${size} exceeds the limit of ${options.maxSize} bytes`,
        );
      }
      const bytes = new Uint8Array(size);
      let filled = 0;
      while (filled < size) {
        const n = await file.read(bytes.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      if (filled !== size) {
        throw new SizeMismatchError(`cannot read ${digest}: expected size ${size}, got ${filled}`);
      }
      return bytes;
    } finally {
      file.close();
    }
  }

  /** Lists every committed blob, in no particular order. */
  async *list(): AsyncGenerator<Info> {
    for (const algorithm of Object.keys(HEX_NAME) as DigestAlgorithm[]) {
      const dir = `${this.#blobs}/${algorithm}`;
      const names: string[] = [];
      try {
        for await (const entry of Deno.readDir(dir)) {
          if (entry.isFile && HEX_NAME[algorithm].test(entry.name)) names.push(entry.name);
        }
      } catch (error) {
        if (isNotFound(error)) continue;
        throw error;
      }
      for (let i = 0; i < names.length; i += BATCH) {
        const infos = await Promise.all(
          names.slice(i, i + BATCH).map(async (name) => {
            try {
              return infoOf(`${algorithm}:${name}` as Digest, await Deno.stat(`${dir}/${name}`));
            } catch (error) {
              if (isNotFound(error)) return undefined; // deleted since the listing
              throw error;
            }
          }),
        );
        for (const info of infos) if (info) yield info;
      }
    }
  }

  /** Deletes a committed blob; throws {@link NotFoundError} when it is absent. */
  async delete(digest: Digest): Promise<void> {
    const path = this.blobPath(digest);
    try {
      await Deno.remove(path);
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError(`content ${digest} not found`);
      throw error;
    }
  }

  /**
   * Opens the ingest `ref` for writing, exclusively, resuming what an earlier writer left.
   *
   * Throws {@link LockedError} (saying since when) while another writer holds it, unless
   * `wait` is set; {@link AlreadyExistsError} when `expected` is committed, checked before and
   * again after getting the lock (so also after waiting for a writer that committed it).
   */
  async writer(ref: string, options: WriterOptions = {}): Promise<Writer> {
    checkRef(ref);
    const expected = options.expected === undefined ? undefined : parseDigest(options.expected);
    if (options.total !== undefined) checkSize("total", options.total);
    if (expected && this.#hasSync(expected)) {
      throw new AlreadyExistsError(`content ${expected} already exists`);
    }
    const dir = `${this.#ingests}/${ingestName(ref)}`;
    let delay = 5;
    for (;;) {
      options.signal?.throwIfAborted();
      const created = this.#makeIngestDir(dir);
      const attempt = tryLockDir(dir);
      if (attempt === "gone") continue; // committed or aborted meanwhile: the path is free again
      if (attempt === "held") {
        if (!options.wait) throw await this.#lockedError(`cannot write ${ref}`, dir);
        await sleep(delay, options.signal);
        delay = Math.min(delay * 2, 100);
        continue;
      }
      const lock = attempt.file;
      let trash: string;
      try {
        if (!expected || !this.#hasSync(expected)) {
          return await IngestWriter.open(lock, {
            ...options,
            expected,
            ref,
            dir,
            created,
            ingestRoot: this.#ingests,
            blobPath: (digest) => this.blobPath(digest),
            syncDirectory: (path) => this.#syncDirectory(path),
          });
        }
        trash = moveToTrash(this.#ingests, dir); // whatever the ingest holds is useless now
      } catch (error) {
        lock.close();
        throw error;
      }
      lock.close();
      removeTrash(trash);
      throw new AlreadyExistsError(`content ${expected} already exists`);
    }
  }

  /** The status of the ingest `ref`; throws {@link NotFoundError} when there is none. */
  async status(ref: string): Promise<Status> {
    checkRef(ref);
    const record = await readIngest(`${this.#ingests}/${ingestName(ref)}`);
    if (!record || record.ref !== ref) throw new NotFoundError(`ingest ${ref} not found`);
    return statusOf(record);
  }

  /** Lists ingests in progress (or abandoned), sorted by ref. */
  async listStatuses(filter: StatusFilter = {}): Promise<Status[]> {
    const names = await this.#ingestNames();
    const statuses: Status[] = [];
    for (let i = 0; i < names.length; i += BATCH) {
      const records = await Promise.all(
        names.slice(i, i + BATCH).map((name) => readIngest(`${this.#ingests}/${name}`)),
      );
      for (const record of records) {
        if (!record) continue;
        if (filter.prefix !== undefined && !record.ref.startsWith(filter.prefix)) continue;
        if (filter.pattern && record.ref.search(filter.pattern) < 0) continue;
        statuses.push(statusOf(record));
      }
    }
    return statuses.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  }

  /**
   * Removes the ingest `ref` and its data. Throws {@link NotFoundError} when there is none and
   * {@link LockedError} while a writer holds it.
   */
  async abort(ref: string): Promise<void> {
    checkRef(ref);
    const dir = `${this.#ingests}/${ingestName(ref)}`;
    for (;;) {
      const record = await readIngest(dir);
      if (!record) throw new NotFoundError(`ingest ${ref} not found`);
      const attempt = tryLockDir(dir);
      if (attempt === "gone") continue;
      if (attempt === "held") throw await this.#lockedError(`cannot abort ${ref}`, dir);
      const trash = moveToTrash(this.#ingests, dir);
      attempt.file.close();
      removeTrash(trash);
      return;
    }
  }

  /**
   * Removes ingests not updated for `olderThan` milliseconds, skipping those a writer holds,
   * and returns what was removed (or, with `dryRun`, what would be). Also clears directories
   * that crashed writers or removers left behind.
   */
  async prune(options: PruneOptions): Promise<Status[]> {
    const { olderThan } = options;
    if (!(olderThan >= 0) || !Number.isFinite(olderThan)) {
      throw new InvalidArgumentError(`invalid age ${olderThan}: want milliseconds`);
    }
    const cutoff = Date.now() - olderThan;
    const removed: Status[] = [];
    for await (const entry of Deno.readDir(this.#ingests)) {
      const path = `${this.#ingests}/${entry.name}`;
      if (entry.name.startsWith(TRASH_PREFIX)) {
        const stat = await Deno.lstat(path).catch(() => undefined);
        if (!options.dryRun && stat && (stat.mtime?.getTime() ?? 0) < cutoff) {
          removeTrash(path);
        }
        continue;
      }
      if (!entry.isDirectory || !INGEST_NAME.test(entry.name)) continue;
      const before = await readIngest(path);
      const dirTime = async () => (await Deno.lstat(path).catch(() => undefined))?.mtime;
      const updated = before?.updatedAt ?? await dirTime();
      if (!updated || updated.getTime() >= cutoff) continue;
      const attempt = tryLockDir(path);
      if (typeof attempt === "string") continue; // being written, or gone
      const lock = attempt.file;
      // look again under the lock: the last writer may have written just before it let go
      const record = await readIngest(path);
      if (record && record.updatedAt.getTime() >= cutoff) {
        lock.close();
        continue;
      }
      if (options.dryRun) {
        lock.close();
      } else {
        const trash = moveToTrash(this.#ingests, path);
        lock.close();
        removeTrash(trash);
      }
      if (record) removed.push(statusOf(record));
    }
    return removed.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  }

  /** {@link Store.has} as one synchronous call, for the writer's hot path (see _lock.ts). */
  #hasSync(digest: Digest): boolean {
    try {
      Deno.statSync(this.blobPath(digest));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** Makes an ingest directory; true when this call made it, false when it was there. */
  #makeIngestDir(dir: string): boolean {
    try {
      Deno.mkdirSync(dir);
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) return false;
      if (!isNotFound(error)) throw error;
    }
    Deno.mkdirSync(this.#ingests, { recursive: true }); // removed behind the store's back
    return this.#makeIngestDir(dir);
  }

  /**
   * Flushes a directory's entries to disk, sharing flushes between commits: every caller waits
   * for a flush that started after it asked, so renames done before the call are covered. Many
   * blobs committed at once then cost a few directory flushes instead of one each.
   */
  #syncDirectory(path: string): Promise<void> {
    let flushes = this.#dirFlushes.get(path);
    if (!flushes) this.#dirFlushes.set(path, flushes = new SharedFlush(() => syncDirectory(path)));
    return flushes.request();
  }

  /** The ingest directory names under `ingest/`. */
  async #ingestNames(): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(this.#ingests)) {
        if (entry.isDirectory && INGEST_NAME.test(entry.name)) names.push(entry.name);
      }
    } catch (error) {
      if (!isNotFound(error)) throw error; // no ingest/ (a store opened without creating it)
    }
    return names;
  }

  async #openBlob(digest: Digest): Promise<Deno.FsFile> {
    const path = this.blobPath(digest);
    try {
      return await Deno.open(path, { read: true });
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError(`content ${digest} not found`);
      throw error;
    }
  }

  async #lockedError(action: string, dir: string): Promise<LockedError> {
    const { since, pid } = await readLockInfo(`${dir}/lock`);
    const holder = pid === undefined ? "" : ` (pid ${pid})`;
    const when = since ? ` since ${since.toISOString()}` : "";
    return new LockedError(`${action}: locked by another writer${when}${holder}`, since);
  }
}

/** What {@link IngestWriter.open} needs to know about the ingest and its store. */
interface IngestOptions extends WriterOptions {
  ref: string;
  expected?: Digest;
  /** The ingest directory. */
  dir: string;
  /** Whether this writer just made `dir`: then it holds nothing to read or clean up yet. */
  created: boolean;
  /** Where discarded ingests go to trash. */
  ingestRoot: string;
  blobPath(digest: Digest): string;
  /** Flushes a directory's entries (shared between writers, see {@link Store}). */
  syncDirectory(path: string): Promise<void>;
}

/** The {@link Writer} of one locked ingest directory. */
class IngestWriter implements Writer {
  readonly ref: string;
  readonly #options: IngestOptions;
  readonly #total: number | undefined;
  readonly #expected: Digest | undefined;
  /** The ingest directory, opened and locked: closing it releases the lock. */
  readonly #lock: Deno.FsFile;
  readonly #data: Deno.FsFile;
  /** `updatedat`, opened on the first touch that writes it (see {@link IngestWriter.#touch}). */
  #updatedFile: Deno.FsFile | undefined;
  readonly #openedAt = Date.now();
  /** Whether `ref` and the rest are still to be written (see {@link WriterOptions.deferMetadata}). */
  #deferred: boolean;
  readonly #algorithm: DigestAlgorithm;
  #digester: Digester;
  #offset: number;
  #pending: Uint8Array<ArrayBuffer> | undefined;
  #pendingLength = 0;
  #startedAt: Date;
  #updatedAt: Date;
  #lastTouch = Date.now();
  /** Bytes appended since the last background flush started. */
  #unsynced = 0;
  /** The background flush in flight, if any; it never rejects (see #syncError). */
  #syncing: Promise<void> | undefined;
  #syncError: unknown;
  #writable: WritableStream<Uint8Array> | undefined;
  /** Set after commit, close or discard; also when a write failed halfway. */
  #state: "open" | "broken" | "done" = "open";

  private constructor(
    options: IngestOptions,
    files: { lock: Deno.FsFile; data: Deno.FsFile },
    state: {
      digester: Digester;
      offset: number;
      startedAt: Date;
      total: number | undefined;
      expected: Digest | undefined;
      deferred: boolean;
    },
  ) {
    this.ref = options.ref;
    this.#options = options;
    this.#total = state.total;
    this.#expected = state.expected;
    this.#lock = files.lock;
    this.#data = files.data;
    this.#algorithm = options.expected ? digestAlgorithm(options.expected) : "sha256";
    this.#digester = state.digester;
    this.#offset = state.offset;
    this.#startedAt = state.startedAt;
    this.#deferred = state.deferred;
    this.#updatedAt = new Date();
  }

  /**
   * Sets up (or resumes) the ingest in `options.dir`, whose `lock` file is held.
   *
   * Every file created costs real time (on ext4 without a journal, creating an inode scans past
   * the recently deleted ones), so a new ingest gets only what its readers cannot derive: `data`,
   * `lock`, `total` and `expected` when known, and `ref` last; with `deferMetadata` only `data`
   * until later. `startedat` and `updatedat` fall back to the data file's birth and modification
   * times; `updatedat` is written once the ingest has been open for {@link TOUCH_INTERVAL_MS},
   * `startedat` when an existing ingest restarts from zero. The small calls are synchronous (see
   * _lock.ts); only resuming reads and hashes asynchronously.
   */
  static async open(lock: Deno.FsFile, options: IngestOptions): Promise<IngestWriter> {
    const { dir, created } = options;
    const now = new Date();
    const data = Deno.openSync(`${dir}/data`, { read: true, append: true, create: true });
    try {
      const dataInfo = data.statSync();
      let offset = dataInfo.size;
      const deferred = options.deferMetadata === true && created && offset === 0 &&
        dataInfo.birthtime !== null;
      if (!deferred) writeLockInfo(dir, now);
      // a directory this writer just made has nothing to resume (and nothing else to read)
      const [ref, total, expected, startedAt] = created && offset === 0 ? [] : await Promise.all(
        ["ref", "total", "expected", "startedat"].map((name) =>
          Deno.readTextFile(`${dir}/${name}`).catch(() => undefined)
        ),
      );
      const storedTotal = parseTotal(total);
      const storedExpected = parseExpected(expected);
      const wantTotal = options.total ?? storedTotal;
      const fresh = ref !== options.ref || // a new ingest, or one whose creation never finished
        (options.expected !== undefined && storedExpected !== undefined &&
          storedExpected !== options.expected) ||
        (options.total !== undefined && storedTotal !== undefined &&
          storedTotal !== options.total) ||
        (wantTotal !== undefined && offset > wantTotal);
      if (fresh && offset > 0) {
        data.truncateSync(0);
        offset = 0;
      }
      const started = fresh ? now : parseTime(startedAt) ?? dataInfo.birthtime ?? now;
      // the data file's birth time says when a new directory's ingest started
      if (fresh && (!created || !dataInfo.birthtime)) {
        Deno.writeTextFileSync(`${dir}/startedat`, formatTime(started));
      }
      if (!deferred) {
        if (options.total !== undefined) {
          if (options.total !== storedTotal) writeTotal(dir, options.total);
        } else if (fresh && !created) removeIfPresent(`${dir}/total`);
        if (options.expected !== undefined) {
          if (options.expected !== storedExpected) writeExpected(dir, options.expected);
        } else if (fresh && !created) removeIfPresent(`${dir}/expected`);
        // the ref file comes last and whole: it marks the directory as an ingest for readers
        if (fresh) writeSmallFileAtomic(`${dir}/ref`, options.ref);
      }
      const algorithm = options.expected ? digestAlgorithm(options.expected) : "sha256";
      const digester = offset > 0 ? await hashFile(data, algorithm) : new Digester(algorithm);
      const writer = new IngestWriter(options, { lock, data }, {
        digester,
        offset,
        startedAt: started,
        total: fresh ? options.total : wantTotal,
        expected: options.expected ?? (fresh ? undefined : storedExpected),
        deferred,
      });
      // an earlier writer's `updatedat` must not look older than this one
      if (!created) writer.#touch(true);
      return writer;
    } catch (error) {
      data.close();
      throw error;
    }
  }

  get offset(): number {
    return this.#offset;
  }

  get writable(): WritableStream<Uint8Array> {
    this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.write(chunk),
      close: () => this.#whenOpen(() => this.#touch(true)),
      abort: () => this.#whenOpen(() => this.#touch(true)),
    });
    return this.#writable;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.#checkOpen();
    const n = chunk.byteLength;
    if (n >= ASYNC_WRITE) {
      this.#flushPending();
      await this.#appendAsync(chunk);
    } else if (n >= DIRECT_WRITE) {
      this.#flushPending();
      this.#append(chunk);
    } else if (n > 0) {
      if (this.#pendingLength + n > PENDING_SIZE) this.#flushPending();
      this.#pending ??= new Uint8Array(PENDING_SIZE);
      this.#pending.set(chunk, this.#pendingLength);
      this.#pendingLength += n;
    }
    this.#offset += n;
    this.#touch(false);
    if (this.#unsynced >= SYNC_INTERVAL) await this.#syncBehind();
  }

  status(): Status {
    const status: Status = {
      ref: this.ref,
      offset: this.#offset,
      startedAt: this.#startedAt,
      updatedAt: this.#updatedAt,
    };
    if (this.#total !== undefined) status.total = this.#total;
    if (this.#expected !== undefined) status.expected = this.#expected;
    return status;
  }

  // deno-lint-ignore require-await
  async truncate(size: 0): Promise<void> {
    if (size !== 0) {
      throw new InvalidArgumentError(`cannot truncate ${this.ref} to ${size}: only 0 is supported`);
    }
    this.#checkOpen(true);
    this.#restart();
    this.#state = "open";
  }

  async commit(size: number, digest: Digest): Promise<Info> {
    this.#checkOpen();
    const target = this.#options.blobPath(digest); // throws on a malformed digest
    checkSize("size", size);
    this.#flushPending();
    if (this.#offset !== size) {
      const got = this.#offset;
      this.#restart();
      throw new SizeMismatchError(`cannot commit ${this.ref}: expected size ${size}, got ${got}`);
    }
    this.#state = "broken"; // until it is done: the digester is spent either way
    const actual = digestAlgorithm(digest) === this.#algorithm
      ? this.#digester.digest()
      : (await hashFile(this.#data, digestAlgorithm(digest))).digest();
    if (actual !== digest) {
      this.#restart();
      this.#state = "open";
      throw new DigestMismatchError(
        `cannot commit ${this.ref}: expected digest ${digest}, got ${actual}`,
      );
    }
    let exists = true;
    try {
      Deno.lstatSync(target);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      exists = false;
    }
    if (exists) {
      await this.discard();
      throw new AlreadyExistsError(`content ${digest} already exists`);
    }
    // Two writers of one blob under different refs may both get here; the second rename then
    // replaces identical, verified content, which readers cannot tell apart.
    await this.#syncing;
    if (this.#syncError) throw this.#syncError;
    await this.#data.syncData();
    const blobDir = dirname(target);
    const source = `${this.#options.dir}/data`;
    try {
      Deno.renameSync(source, target);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      Deno.mkdirSync(blobDir, { recursive: true }); // the first blob of its algorithm
      Deno.renameSync(source, target);
    }
    Deno.chmodSync(target, 0o444);
    const info = infoOf(digest, this.#data.statSync()); // still the blob's inode
    // the rename is durable once the directory is flushed; only then does the lock go
    await this.#options.syncDirectory(blobDir);
    await this.#remove(this.#deferred);
    return info;
  }

  async close(): Promise<void> {
    if (this.#state === "done") return;
    try {
      if (this.#state === "open") {
        this.#flushPending();
        if (this.#offset === 0) return await this.discard(); // nothing worth resuming
        this.#writeMetadata();
        this.#touch(true);
      }
    } finally {
      await this.#syncing; // its handle must stay open until it is done
      this.#closeFiles();
    }
  }

  discard(): Promise<void> {
    return this.#remove(false);
  }

  /**
   * Removes the ingest directory and releases the lock. `empty` says it holds no file any more (a
   * deferred ingest whose data was committed): then removing it frees its path at once, as moving
   * it to trash does for a full one.
   */
  async #remove(empty: boolean): Promise<void> {
    if (this.#state === "done") return;
    let trash: string | undefined;
    try {
      if (empty) {
        try {
          Deno.removeSync(this.#options.dir);
        } catch {
          empty = false; // something else is in there after all
        }
      }
      if (!empty) trash = moveToTrash(this.#options.ingestRoot, this.#options.dir);
    } finally {
      await this.#syncing;
      this.#closeFiles();
    }
    if (trash) removeTrash(trash);
  }

  /** Closes the files; closing the directory handle releases the lock. */
  #closeFiles(): void {
    this.#state = "done";
    this.#pendingLength = 0;
    for (const file of [this.#data, this.#updatedFile, this.#lock]) {
      try {
        file?.close();
      } catch {
        // already closed
      }
    }
  }

  #checkOpen(allowBroken = false): void {
    if (this.#state === "open" || (allowBroken && this.#state === "broken")) return;
    throw new Error(`writer of ${this.ref} is ${this.#state === "done" ? "closed" : "broken"}`);
  }

  #whenOpen(action: () => void): void {
    if (this.#state === "open") action();
  }

  /** Hashes bytes and appends them to `data`: the digest always covers exactly the file. */
  #append(bytes: Uint8Array): void {
    this.#digester.update(bytes);
    this.#unsynced += bytes.length;
    try {
      writeAllSync(this.#data, bytes);
    } catch (error) {
      this.#state = "broken"; // the file and the digest disagree now; a resume rehashes
      throw error;
    }
  }

  /** {@link #append} with the write off the main thread, for big chunks (see ASYNC_WRITE). */
  async #appendAsync(bytes: Uint8Array): Promise<void> {
    this.#digester.update(bytes);
    this.#unsynced += bytes.length;
    try {
      let offset = 0;
      while (offset < bytes.length) offset += await this.#data.write(bytes.subarray(offset));
    } catch (error) {
      this.#state = "broken";
      throw error;
    }
  }

  /** Starts a background flush of `data`, after waiting for the one before (see SYNC_INTERVAL). */
  async #syncBehind(): Promise<void> {
    this.#unsynced = 0;
    await this.#syncing;
    this.#syncing = this.#data.syncData().catch((error) => {
      this.#syncError ??= error;
    });
  }

  #flushPending(): void {
    if (this.#pendingLength === 0) return;
    const bytes = this.#pending!.subarray(0, this.#pendingLength);
    this.#pendingLength = 0;
    this.#append(bytes);
  }

  /** Empties the ingest: the data file, the digest state and the pending bytes. */
  #restart(): void {
    this.#pendingLength = 0;
    this.#data.truncateSync(0); // opened for appending: the next write lands at 0
    this.#digester = new Digester(this.#algorithm);
    this.#offset = 0;
    this.#touch(true);
  }

  /** Writes the files {@link WriterOptions.deferMetadata} left out, `ref` last. */
  #writeMetadata(): void {
    if (!this.#deferred) return;
    this.#deferred = false;
    const { dir } = this.#options;
    writeLockInfo(dir, new Date(this.#openedAt));
    if (this.#total !== undefined) writeTotal(dir, this.#total);
    if (this.#expected !== undefined) writeExpected(dir, this.#expected);
    writeSmallFileAtomic(`${dir}/ref`, this.ref);
  }

  /**
   * Records progress for `dist active` and for prune: flushes pending bytes and rewrites
   * `updatedat` (same length, in place, so a reader never sees it empty), at most every 100 ms.
   * A writer that made its directory leaves `updatedat` out for its first 100 ms, which is all
   * of the life of most small blobs: until then the data file's mtime says the same.
   */
  #touch(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#lastTouch < TOUCH_INTERVAL_MS) return;
    this.#lastTouch = now;
    this.#updatedAt = new Date(now);
    this.#flushPending();
    if (!this.#updatedFile) {
      if (this.#options.created && now - this.#openedAt < TOUCH_INTERVAL_MS) return;
      this.#writeMetadata();
      this.#updatedFile = Deno.openSync(`${this.#options.dir}/updatedat`, {
        write: true,
        create: true,
      });
    }
    this.#updatedFile.seekSync(0, Deno.SeekMode.Start);
    writeAllSync(this.#updatedFile, encoder.encode(formatTime(this.#updatedAt)));
  }
}
