/**
 * Leases, after containerd's: a fetch, import or pull in progress holds one on the store, and
 * the content it names in it is in use until it ends, for `delete` as for garbage collection.
 *
 * A lease is a file `ROOT/leases/<id>` that its holder keeps locked: the digests it protects, one
 * a line. A lease whose file can be locked by someone else belongs to a process that is gone and
 * protects nothing. Protecting a digest and deleting one take `ROOT/leases.lock` for the moment,
 * so a digest is either protected before a delete looks, or deleted before its fetch asks
 * whether the store has it (and then fetched again).
 *
 * A lease normally also holds `ROOT/gc.lock` shared: garbage collection, which takes it
 * exclusively, does not run at all while such a lease is held. `dist serve` holds a lease that
 * does not, for as long as it runs: it protects what clients upload, each digest for a while
 * (a line `DIGEST UNTIL-MS`; a later line about a digest replaces an earlier one), until a
 * manifest that uses it is recorded; garbage collection skips those digests and removes the rest.
 *
 * @module
 */
import type { Digest } from "../digest.ts";

/** A hold on the store; see the module doc. */
export interface Lease {
  /** Marks `digest` as in use until the lease ends, or until the time `until` (ms) is past. */
  protect(digest: Digest, until?: number): void;
  /** Marks `digests` as in use until the lease ends, taking the lease lock once for all. */
  protectAll(digests: readonly Digest[]): void;
  /** Ends this lease's protection of `digest` (others' may remain). */
  forget(digest: Digest): void;
  /** Ends the lease. */
  release(): Promise<void>;
}

const encoder = new TextEncoder();

/** The file whose exclusive lock keeps garbage collection out while leases are held. */
export function gcLockPath(root: string): string {
  return `${root}/gc.lock`;
}

/**
 * Opens and locks the store's lease lock (protecting and deleting take turns under it); closing
 * the file releases it: `using lock = leaseLock(root)`. Undefined where there is no store.
 */
export function leaseLock(root: string): Deno.FsFile | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(`${root}/leases.lock`, { read: true, write: true, create: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined; // no store: nothing leased
    throw error;
  }
  file.lockSync(true);
  return file;
}

/** Options of {@link acquireLease}. */
export interface LeaseOptions {
  /**
   * Keep garbage collection out while the lease is held (default true). Without, collection
   * runs and skips only the digests the lease protects.
   */
  blocksGc?: boolean;
}

/**
 * Takes a lease on the store at `root`: garbage collection waits for its end (see
 * {@link LeaseOptions.blocksGc}), and `delete` refuses the digests it protects. Hold one from
 * before the first blob is looked at until the image is recorded.
 */
export async function acquireLease(root: string, options: LeaseOptions = {}): Promise<Lease> {
  await Deno.mkdir(`${root}/leases`, { recursive: true });
  let gc: Deno.FsFile | undefined;
  if (options.blocksGc ?? true) {
    gc = await Deno.open(gcLockPath(root), { read: true, write: true, create: true });
    await gc.lock(false);
  }
  const path = `${root}/leases/${crypto.randomUUID()}`;
  const file = Deno.openSync(path, { write: true, append: true, createNew: true });
  file.lockSync(true);
  let released = false;
  // what the file says, digest by digest, and how many lines it has: a long-lived lease (a
  // server's) is rewritten with only what still counts once most of its lines are stale
  const untils = new Map<string, number | undefined>();
  let lines = 0;
  let compactAt = 1000;
  const line = (digest: string, until?: number) =>
    until === undefined ? `${digest}\n` : `${digest} ${until}\n`;
  const write = (text: string) => {
    const bytes = encoder.encode(text);
    for (let at = 0; at < bytes.length;) at += file.writeSync(bytes.subarray(at));
  };
  const protectAll = (digests: readonly Digest[], until?: number) => {
    if (released || digests.length === 0) return;
    using _lock = leaseLock(root);
    for (const digest of digests) untils.set(digest, until);
    lines += digests.length;
    if (lines < compactAt) return write(digests.map((digest) => line(digest, until)).join(""));
    const now = Date.now();
    for (const [d, u] of untils) if (u !== undefined && u <= now) untils.delete(d);
    file.truncateSync(0); // appends start again at 0; readers hold the lease lock meanwhile
    write([...untils].map(([d, u]) => line(d, u)).join(""));
    lines = untils.size;
    compactAt = Math.max(1000, 2 * lines);
  };
  return {
    protect: (digest, until) => protectAll([digest], until),
    protectAll,
    forget: (digest) => protectAll([digest], 0),
    async release() {
      if (released) return;
      released = true;
      try {
        Deno.removeSync(path);
        file.close();
      } finally {
        await gc?.unlock();
        gc?.close();
      }
    },
  };
}

/**
 * The digests the live leases of the store at `root` protect. Call it holding the lease lock
 * ({@link leaseLock}); leases of processes that are gone are removed on the way.
 */
export function leasedDigests(root: string): Set<string> {
  const digests = new Set<string>();
  let names: string[];
  try {
    names = [...Deno.readDirSync(`${root}/leases`)].map((entry) => entry.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return digests;
    throw error;
  }
  for (const name of names) {
    const path = `${root}/leases/${name}`;
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch {
      continue; // released meanwhile
    }
    try {
      if (file.tryLockSync(true)) {
        Deno.removeSync(path); // its holder is gone
        continue;
      }
      const text = new TextDecoder().decode(Deno.readFileSync(path));
      const untils = new Map<string, number>(); // the last line about a digest counts
      for (const line of text.split("\n")) {
        const [digest, until] = line.split(" ");
        if (digest) untils.set(digest, until === undefined ? Infinity : Number(until));
      }
      const now = Date.now();
      for (const [digest, until] of untils) if (until > now) digests.add(digest);
    } finally {
      file.close();
    }
  }
  return digests;
}
