/**
 * The files of one ingest directory, `ROOT/ingest/<sha256 of ref>/`:
 *
 * - `ref`       the ref itself; written last (by rename) when an ingest is created, so a directory
 *               without it is one being created or left over from a crash
 * - `data`      the bytes written so far
 * - `total`     the expected size in decimal, when known
 * - `expected`  the expected digest, when known
 * - `startedat`, `updatedat`  ISO 8601 times
 * - `lock`      locked exclusively by the writer; holds the lock time and the holder's pid
 *
 * @module
 */
import { type Digest, digestHex, digestOf, isDigest } from "./digest.ts";

/** An ingest's metadata as read from its directory. */
export interface IngestRecord {
  ref: string;
  offset: number;
  total?: number;
  expected?: Digest;
  startedAt: Date;
  updatedAt: Date;
}

/** The name of an ingest's directory: the hex SHA-256 of its ref. */
export function ingestName(ref: string): string {
  return digestHex(digestOf(new TextEncoder().encode(ref)));
}

/** Matches ingest directory names (and nothing else under `ingest/`, such as trash). */
export const INGEST_NAME = /^[0-9a-f]{64}$/;

/** Prefix of directories under `ingest/` that are being removed. */
export const TRASH_PREFIX = ".trash-";

/** Reads a small file, or undefined when it is missing. */
async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Parses an ISO time written by {@link formatTime}; undefined when unreadable. */
export function parseTime(text: string | undefined): Date | undefined {
  if (!text) return undefined;
  const date = new Date(text.trim());
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Formats a time for `startedat`/`updatedat`: always 24 characters (years 0–9999). */
export function formatTime(date: Date): string {
  return date.toISOString();
}

/** Parses the `total` file. */
export function parseTotal(text: string | undefined): number | undefined {
  if (!text || !/^\d+$/.test(text.trim())) return undefined;
  const value = Number(text.trim());
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Parses the `expected` file. */
export function parseExpected(text: string | undefined): Digest | undefined {
  const value = text?.trim();
  return value && isDigest(value) ? value : undefined;
}

/** Reads an ingest directory; undefined when it is not (or no longer, or not yet) an ingest. */
export async function readIngest(dir: string): Promise<IngestRecord | undefined> {
  const [ref, total, expected, startedAt, updatedAt, data] = await Promise.all([
    readOptional(`${dir}/ref`),
    readOptional(`${dir}/total`),
    readOptional(`${dir}/expected`),
    readOptional(`${dir}/startedat`),
    readOptional(`${dir}/updatedat`),
    Deno.stat(`${dir}/data`).catch(() => undefined),
  ]);
  if (!ref) return undefined; // also when a commit or an abort just moved the directory away
  // the data file's mtime stands in when `updatedat` is being rewritten at this very moment
  const fallback = data?.mtime ?? new Date(0);
  const started = parseTime(startedAt) ?? data?.birthtime ?? fallback;
  return {
    ref,
    offset: data?.size ?? 0,
    total: parseTotal(total),
    expected: parseExpected(expected),
    startedAt: started,
    updatedAt: parseTime(updatedAt) ?? data?.mtime ?? started,
  };
}

/** Writes a small file so readers see the old or the new content, never a partial one. */
export async function writeSmallFileAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp`;
  await Deno.writeTextFile(temp, text);
  await Deno.rename(temp, path);
}

/** Removes a file; a missing one is fine. */
export async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Moves an ingest directory out of the way in one atomic rename, so its path is free at once
 * for a new ingest of the same ref (a waiter that locks the old lock file sees it was replaced).
 * Returns the trash path to remove after the lock is released.
 */
export async function moveToTrash(ingestRoot: string, dir: string): Promise<string> {
  const trash = `${ingestRoot}/${TRASH_PREFIX}${crypto.randomUUID()}`;
  await Deno.rename(dir, trash);
  return trash;
}

/** Removes a trash directory; failures are left for a later prune. */
export async function removeTrash(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
}
