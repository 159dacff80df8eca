/**
 * The files of one ingest directory, `ROOT/ingest/<sha256 of ref>/`:
 *
 * - `ref`       the ref itself; written last (by rename) when an ingest is created, so a directory
 *               without it is one being created (or, with `deferMetadata`, one that has
 *               received bytes for less than 100 ms) or left over from a crash
 * - `data`      the bytes written so far
 * - `total`     the expected size in decimal, when known
 * - `expected`  the expected digest, when known
 * - `startedat`, `updatedat`  ISO 8601 times; when absent, the data file's birth and modification
 *               times stand in (a new ingest writes them only when they would say more)
 * - `lock`      when, and by which process, the ingest was locked; the lock itself is an exclusive
 *               flock on the directory (see _lock.ts)
 *
 * @module
 */
import { type Digest, digestHex, digestOf, isDigest } from "../digest.ts";
import type { Status } from "./capabilities.ts";

/** An ingest's metadata as read from its directory: the store's public {@link Status}. */
export type IngestRecord = Status;

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

// The writes below are synchronous for the reason given in _lock.ts: small local calls.

/** Writes a small file so readers see the old or the new content, never a partial one. */
export function writeSmallFileAtomic(path: string, text: string): void {
  const temp = `${path}.tmp`;
  Deno.writeTextFileSync(temp, text);
  Deno.renameSync(temp, path);
}

/** Removes a file; a missing one is fine. */
export function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Moves an ingest directory out of the way in one atomic rename, so its path is free at once
 * for a new ingest of the same ref (a waiter that locks the old directory sees it was replaced).
 * Returns the trash path to remove after the lock is released.
 */
export function moveToTrash(ingestRoot: string, dir: string): string {
  const trash = `${ingestRoot}/${TRASH_PREFIX}${crypto.randomUUID()}`;
  Deno.renameSync(dir, trash);
  return trash;
}

/** Removes a trash directory; failures are left for a later prune. */
export function removeTrash(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch {
    // left for a later prune
  }
}
