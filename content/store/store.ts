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
import {
  type Digest,
  type DigestAlgorithm,
  digestAlgorithm,
  digestHex,
  isDigest,
  parseDigest,
} from "../digest.ts";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  SizeMismatchError,
} from "../errors.ts";
import {
  INGEST_NAME,
  ingestName,
  type IngestRecord,
  moveToTrash,
  readIngest,
  removeTrash,
  TRASH_PREFIX,
} from "./_ingest.ts";
import type {
  Info,
  Ingester,
  IngestManager,
  Manager,
  Provider,
  ReadBytesOptions,
  ReadOptions,
  Status,
  StatusFilter,
  Writer,
  WriterOptions,
} from "./capabilities.ts";
import { checkSize, createFileOnce, infoOf, isNotFound, READ_CHUNK } from "./_files.ts";
import { IngestWriter } from "./_ingest_writer.ts";
import { SharedFlush } from "./_shared_flush.ts";
import { readLockInfo, tryLockDir } from "./_lock.ts";
import { sleep } from "../internal/sleep.ts";
import { requirePermission } from "../internal/env.ts";
import { syncDirectory } from "../internal/file_stream.ts";
import { absolutePath } from "../internal/path.ts";

/** Options of {@link Store.open}. */
export interface OpenOptions {
  /**
   * Create the layout when it is missing (default true). False suits readers that must leave no
   * trace, such as `dist list`: a missing root then reads as an empty store (writing to it fails).
   */
  create?: boolean;
}

/** Options of {@link Store.prune}. */
export interface PruneOptions {
  /** Remove ingests not updated for this many milliseconds. */
  olderThan: number;
  /** Only report what would be removed. */
  dryRun?: boolean;
}

/** How many files are stat'ed or read at once when listing. */
const BATCH = 128;
const HEX_NAME: Record<DigestAlgorithm, RegExp> = {
  sha256: /^[0-9a-f]{64}$/,
  sha512: /^[0-9a-f]{128}$/,
};
const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';
const EMPTY_INDEX = '{"schemaVersion":2,"manifests":[]}';

/** Throws {@link InvalidArgumentError} unless `ref` can name an ingest. */
function checkRef(ref: string): void {
  if (typeof ref !== "string" || ref.length === 0) {
    throw new InvalidArgumentError(`invalid ingest ref ${JSON.stringify(ref)}: must not be empty`);
  }
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

/** The local content store. */
export class Store implements Provider, Ingester, Manager, IngestManager {
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
    const store = new Store(absolutePath(root));
    const create = options.create ?? true;
    // asked first: on a terminal Deno would prompt for a store --allow-read/--allow-write misses
    const where = JSON.stringify(store.root);
    requirePermission(
      { name: "read", path: store.root },
      `read access to ${where}`,
      "--allow-read",
    );
    if (create) {
      requirePermission(
        { name: "write", path: store.root },
        `write access to ${where}`,
        "--allow-write",
      );
    }
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

  /** Opens a blob as a stream of up to 1 MiB chunks, from `offset` for `length` bytes when given. */
  async read(digest: Digest, options: ReadOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const offset = options.offset ?? 0;
    checkSize("offset", offset);
    if (options.length !== undefined) checkSize("length", options.length);
    const file = await this.#openBlob(digest);
    let position = offset;
    let size: number;
    try {
      size = (await file.stat()).size;
      if (options.length !== undefined) size = Math.min(size, offset + options.length);
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
    // A byte stream: a BYOB reader (such as unpack's) has the file read into a buffer it reuses;
    // a default reader gets fresh chunks of up to READ_CHUNK bytes, no bigger than the blob.
    return new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: Math.min(READ_CHUNK, Math.max(1, size - position)),
      async pull(controller) {
        const request = controller.byobRequest!;
        const view = request.view as Uint8Array;
        try {
          // blobs never change: stop at their size instead of reading once more to see the end
          const want = Math.min(view.byteLength, size - position);
          const n = want > 0 ? await file.read(view.subarray(0, want)) : null;
          if (n === null) {
            finish();
            controller.close();
            request.respond(0);
            return;
          }
          position += n;
          request.respond(n);
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
   * {@link delete}, synchronously: for a caller holding a file lock that code of its own process
   * may also wait for (the lease lock), which must not give the event loop a turn meanwhile.
   */
  deleteSync(digest: Digest): void {
    try {
      Deno.removeSync(this.blobPath(digest));
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
