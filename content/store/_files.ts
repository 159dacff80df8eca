/** File helpers that the store and its ingest writers share. */
import { type Digest, type DigestAlgorithm, Digester } from "../digest.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { Info } from "./capabilities.ts";

/** Reads of stored files go through buffers this big (1 MiB reads are ~3x faster than 64 KiB). */
export const READ_CHUNK = 1 << 20;

/** Throws {@link InvalidArgumentError} unless `value` is a byte count. */
export function checkSize(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`invalid ${what} ${value}: want a whole number of bytes`);
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

export function infoOf(digest: Digest, stat: Deno.FileInfo): Info {
  const updatedAt = stat.mtime ?? new Date();
  // the commit renames and chmods the file, which sets its ctime: the time it was committed
  return {
    digest,
    size: stat.size,
    createdAt: stat.ctime ?? stat.birthtime ?? updatedAt,
    updatedAt,
  };
}

/** Hashes a file from its start (resume, or a commit with another algorithm). */
export async function hashFile(file: Deno.FsFile, algorithm: DigestAlgorithm): Promise<Digester> {
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

/** Creates a file with `text` unless it exists, atomically: nobody sees it empty or half-written. */
export function createFileOnce(path: string, text: string): void {
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
