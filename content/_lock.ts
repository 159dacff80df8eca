/**
 * Exclusive file locks for ingests.
 *
 * `Deno.FsFile.tryLock(true)` is flock-style: two opens of one file exclude each other inside one
 * process as well as across processes. A lock file can be unlinked by its holder (a commit or an
 * abort moves the whole ingest directory away) while another opener is about to lock the old
 * file, so after locking we check that the file we hold is still the one at the path.
 *
 * @module
 */

/** What one attempt to lock a file gave. */
export type LockAttempt =
  /** Locked; the caller owns the file and closes it to release the lock. */
  | { file: Deno.FsFile }
  /** Another open file holds the lock. */
  | "held"
  /** The file (or its directory) vanished or was replaced: look again. */
  | "gone";

/** Opens `path` (creating it when its directory exists) and tries once to lock it exclusively. */
export async function tryLockFile(path: string): Promise<LockAttempt> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "gone";
    throw error;
  }
  try {
    if (!(await file.tryLock(true))) {
      file.close();
      return "held";
    }
    const [held, current] = await Promise.all([
      file.stat(),
      Deno.stat(path).catch((error) => {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      }),
    ]);
    if (!current || held.ino !== current.ino || held.dev !== current.dev) {
      file.close();
      return "gone";
    }
    return { file };
  } catch (error) {
    file.close();
    throw error;
  }
}

/** Records in a held lock file when, and by which process, the lock was taken. */
export function writeLockInfo(file: Deno.FsFile, since: Date): void {
  const text = new TextEncoder().encode(`${since.toISOString()} ${Deno.pid}\n`);
  file.truncateSync(0);
  file.seekSync(0, Deno.SeekMode.Start);
  let offset = 0;
  while (offset < text.length) offset += file.writeSync(text.subarray(offset));
}

/** Who holds a lock, as far as its lock file tells. */
export interface LockInfo {
  /** When the holder took the lock. */
  since?: Date;
  /** The holder's process id. */
  pid?: number;
}

/** Reads what {@link writeLockInfo} recorded; empty when the file is missing or not yet written. */
export async function readLockInfo(path: string): Promise<LockInfo> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const [time, pid] = text.trim().split(" ");
  const since = time ? new Date(time) : undefined;
  return {
    since: since && !Number.isNaN(since.getTime()) ? since : undefined,
    pid: pid && /^\d+$/.test(pid) ? Number(pid) : undefined,
  };
}

/** Waits `ms` milliseconds; rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
