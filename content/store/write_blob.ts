/**
 * Writing one blob of known digest and size into the store from a stream that starts at its
 * first byte, such as standard input: `dist ingest`.
 *
 * @example
 * ```ts
 * import { Store } from "./store.ts";
 * import { digestOf } from "../digest.ts";
 * import { writeBlob } from "./write_blob.ts";
 *
 * const root = await Deno.makeTempDir();
 * const store = await Store.open(root);
 * const bytes = new TextEncoder().encode("hello");
 * const digest = digestOf(bytes);
 * const info = await writeBlob(store, "example", [bytes], { digest, size: bytes.length });
 * console.assert(info.digest === digest);
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */
import { type Digest, parseDigest } from "../digest.ts";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InvalidArgumentError,
  SizeMismatchError,
} from "../errors.ts";
import type { Info, Ingester, Provider } from "./capabilities.ts";

/** Options of {@link writeBlob}. */
export interface WriteBlobOptions {
  /** The digest the content must have. */
  digest: Digest;
  /** The size in bytes the content must have. */
  size: number;
  /** Wait while another writer holds the ref (default true); false throws `LockedError`. */
  wait?: boolean;
  /** Stops waiting and writing. */
  signal?: AbortSignal;
}

/**
 * Writes the blob that `source` yields under the ingest `ref`, verifies its size and digest and
 * commits it. Returns the blob's info; content that is already in the store (also when another
 * writer of `ref` commits it while this one waits) is a success and `source` is not read, unless
 * its size differs from `size`: then it throws `SizeMismatchError` naming both sizes.
 *
 * `source` yields the whole blob from its first byte, and cannot seek: when the ingest resumes
 * a write that was interrupted at offset N, the first N bytes from `source` are read and dropped
 * (the ingest holds them already, and the commit verifies the digest over all of it). Each chunk
 * is consumed before the next is asked for, so a source may reuse one buffer.
 *
 * On a size or digest mismatch it throws `SizeMismatchError` or `DigestMismatchError` naming
 * both values, commits nothing and removes the ingest.
 */
export async function writeBlob(
  store: Provider & Ingester,
  ref: string,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: WriteBlobOptions,
): Promise<Info> {
  const digest = parseDigest(options.digest);
  const { size, signal } = options;
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new InvalidArgumentError(`invalid size ${size}: want a whole number of bytes`);
  }
  // Content already stored is a success only at the expected size: a wrong size is the
  // caller's mistake, which must not pass unnoticed just because the digest exists.
  const stored = async () => {
    const info = await store.info(digest);
    if (info.size !== size) {
      throw new SizeMismatchError(
        `cannot commit ${ref}: expected size ${size}, but ${digest} is stored with size ${info.size}`,
      );
    }
    return info;
  };
  if (await store.has(digest)) return await stored();
  let writer;
  try {
    writer = await store.writer(ref, {
      expected: digest,
      total: size,
      wait: options.wait ?? true,
      signal,
    });
  } catch (error) {
    if (error instanceof AlreadyExistsError) return await stored();
    throw error;
  }
  try {
    let skip = writer.offset;
    let received = 0;
    for await (const chunk of source) {
      signal?.throwIfAborted();
      received += chunk.byteLength;
      let part = chunk;
      if (skip > 0) {
        const n = Math.min(skip, part.byteLength);
        skip -= n;
        part = part.subarray(n);
      }
      // past the expected size, only count (for the message): never fill the disk with it
      const room = size - writer.offset;
      if (part.byteLength > room) part = part.subarray(0, room);
      if (part.byteLength > 0) await writer.write(part);
    }
    if (received !== size) {
      await writer.discard();
      throw new SizeMismatchError(`cannot commit ${ref}: expected size ${size}, got ${received}`);
    }
    try {
      return await writer.commit(size, digest);
    } catch (error) {
      if (error instanceof AlreadyExistsError) return await stored();
      if (error instanceof DigestMismatchError || error instanceof SizeMismatchError) {
        await writer.discard(); // the bytes were bad: resuming them cannot help
      }
      throw error;
    }
  } finally {
    await writer.close(); // after an error or an abort: keeps what was written for a resume
  }
}
