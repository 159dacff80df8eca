/**
 * The writer of one locked ingest directory: appends and hashes bytes, flushes them behind the
 * writes, keeps the ingest's metadata files, and commits by an atomic rename into `blobs/`.
 *
 * @module
 */
import { type Digest, type DigestAlgorithm, digestAlgorithm, Digester } from "../digest.ts";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InvalidArgumentError,
  SizeMismatchError,
} from "../errors.ts";
import type { Info, Status, Writer, WriterOptions } from "./capabilities.ts";
import { checkSize, hashFile, infoOf, isNotFound } from "./_files.ts";
import {
  formatTime,
  moveToTrash,
  parseExpected,
  parseTime,
  parseTotal,
  removeIfPresent,
  removeTrash,
  writeSmallFileAtomic,
} from "./_ingest.ts";
import { writeLockInfo } from "./_lock.ts";
import { parentDirectory } from "../internal/path.ts";

const encoder = new TextEncoder();
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

function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

function writeTotal(dir: string, total: number): void {
  Deno.writeTextFileSync(`${dir}/total`, String(total));
}

function writeExpected(dir: string, expected: Digest): void {
  Deno.writeTextFileSync(`${dir}/expected`, expected);
}

/** What {@link IngestWriter.open} needs to know about the ingest and its store. */
export interface IngestOptions extends WriterOptions {
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
export class IngestWriter implements Writer {
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
  /**
   * Until when a new ingest writes no `updatedat` (nor, deferred, its other files): 100 ms from
   * its first byte (from its opening while it has none), so an ingest that waited for a download
   * slot still commits before it needs them.
   */
  #quietUntil = this.#openedAt + TOUCH_INTERVAL_MS;
  #receiving = false;
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
   * times; `updatedat` is written once the ingest has received bytes for {@link TOUCH_INTERVAL_MS},
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
      const digester = offset > 0
        ? await hashFile(data, algorithm)
        : new Digester(algorithm, options.total);
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
    if (n > 0 && !this.#receiving) {
      this.#receiving = true;
      this.#lastTouch = Date.now();
      this.#quietUntil = this.#lastTouch + TOUCH_INTERVAL_MS;
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

  digest(): Digest {
    this.#checkOpen();
    this.#flushPending(); // pending bytes are hashed as they are written out
    return this.#digester.peek();
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
      ? await this.#digester.finish()
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
    const blobDir = parentDirectory(target);
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
        // nothing worth resuming, unless the ingest is to be seen even empty (an upload opened)
        if (this.#offset === 0 && !this.#options.keepEmpty) return await this.discard();
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
    this.#digester = new Digester(this.#algorithm, this.#total);
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
   * A writer that made its directory leaves `updatedat` out until {@link #quietUntil}, which is
   * all of the life of most small blobs: until then the data file's mtime says the same.
   */
  #touch(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#lastTouch < TOUCH_INTERVAL_MS) return;
    this.#lastTouch = now;
    this.#updatedAt = new Date(now);
    this.#flushPending();
    if (!this.#updatedFile) {
      if (this.#options.created && now < this.#quietUntil) return;
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
