/**
 * A stored layer as the tar it unpacks to, checked on the way: the blob against its descriptor,
 * the tar against the config's diff_id, and every byte against the image's unpacked-size limit.
 *
 * Gzip and uncompressed layers (nearly all layers) go through one pump: the blob is read into a
 * reused buffer, inflated synchronously into another reused buffer by node:zlib's native handle,
 * and hashed in place. Node's zlib streams allocate every output chunk anew; for a 225 MB layer
 * that garbage took the process from 45 to 120 MB and the inflating from 0.33 to 0.6 s. Reusing
 * a buffer is safe for the one consumer here, `applyLayer`: the tar reader asks for the next chunk
 * only once everything of the last one is written (synchronously) or copied.
 * zstd layers, and a Deno whose node:zlib lacks the handle, take the stream pipeline.
 *
 * @module
 */
import type { Descriptor } from "../descriptor.ts";
import type { Digest } from "../digest.ts";
import { CorruptContentError } from "../errors.ts";
import { concatBytes } from "../internal/bytes.ts";
import { ChunkReader } from "../internal/chunk_reader.ts";
import { compressionOf, decompress, detectCompression } from "../layers/decompress.ts";
import type { Provider } from "../store/capabilities.ts";
import { Verifier } from "../verify.ts";

/** How a layer is to be read. */
export interface LayerReadOptions {
  /** Names the layer in errors: `layer 2/5 sha256:…`. */
  label: string;
  /** The digest the uncompressed tar must have. */
  diffId: Digest;
  /** Told the size of every uncompressed piece before it goes on; throws to stop. */
  count?: (bytes: number) => void;
  /** Stops the reading. */
  signal?: AbortSignal;
}

/** The uncompressed tar of `layer`, verified as it is read (see the module doc). */
export async function readLayer(
  store: Provider,
  layer: Descriptor,
  options: LayerReadOptions,
): Promise<ReadableStream<Uint8Array>> {
  const stored = await store.read(layer.digest);
  const blob = new Verifier({ ...layer, label: `stored ${options.label}` });
  const plain = new Verifier({
    digest: options.diffId,
    mismatch: (actual) =>
      `cannot unpack ${options.label}: uncompressed digest mismatch: the config's diff_id is ` +
      `${options.diffId}, the layer unpacks to ${actual}`,
  });
  const input = new ChunkReader(stored);
  // the media type decides, else the magic bytes (4 of them); copies, as each read reuses the buffer
  let first: Uint8Array | undefined = (await input.read())?.slice();
  const declared = compressionOf(layer.mediaType);
  while (!declared && first && first.length < 4) {
    const more = await input.read();
    if (!more) break;
    first = concatBytes([first, more]);
  }
  const compression = declared ?? detectCompression(first ?? new Uint8Array());
  const zlib = compression === "gzip" ? await gzipHandle() : undefined;
  if (compression === "zstd" || (compression === "gzip" && !zlib)) {
    return streamed(replay(first, input), compression, blob, plain, options);
  }
  const out = new Uint8Array(OUTPUT_SIZE);
  let chunk = first; // input not yet inflated: chunk[at, chunk.length)
  let at = 0;
  let ended = false;
  let trailing = false;
  if (chunk) blob.update(chunk);
  const hand = (controller: ReadableStreamDefaultController<Uint8Array>, piece: Uint8Array) => {
    plain.update(piece);
    options.count?.(piece.byteLength);
    controller.enqueue(piece);
  };
  let open = true;
  const close = async (reason?: unknown) => {
    if (!open) return;
    open = false;
    zlib?.close();
    if (reason !== undefined) await input.cancel(reason);
    input.release();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          options.signal?.throwIfAborted();
          if ((!chunk || at === chunk.length) && !ended) {
            chunk = await input.read();
            at = 0;
            if (chunk) blob.update(chunk);
            else {
              ended = true;
              await blob.finish(); // a wrong blob is named before what it inflates to
            }
          }
          if (!zlib) { // uncompressed: the blob's own chunks go on
            if (ended) break;
            const piece = chunk!.subarray(at);
            at = chunk!.length;
            return hand(controller, piece);
          }
          if (trailing) { // after the gzip data only zeros may follow, as gzip and Node allow
            if (ended) break;
            if (chunk!.subarray(at).some((byte) => byte !== 0)) {
              throw new CorruptContentError("cannot decompress gzip data: data after its end");
            }
            at = chunk!.length;
            continue;
          }
          const produced = zlib.inflate(ended ? undefined : chunk!.subarray(at), out);
          at += produced.read;
          if (produced.written > 0) return hand(controller, out.subarray(0, produced.written));
          if (ended) break; // finished: nothing more came out
          // input left that the inflater no longer takes: the gzip data has ended
          if (produced.read === 0 && at < chunk!.length) trailing = true;
        }
        await plain.finish();
        await close();
        controller.close();
      } catch (error) {
        await close(error);
        throw error;
      }
    },
    cancel: (reason) => close(reason ?? new DOMException("cancelled", "AbortError")),
  }, { highWaterMark: 0 });
}

/** The stream pipeline, for what the pump does not read. */
function streamed(
  stored: ReadableStream<Uint8Array>,
  compression: "gzip" | "zstd",
  blob: Verifier,
  plain: Verifier,
  options: LayerReadOptions,
): ReadableStream<Uint8Array> {
  const checking = (verifier: Verifier, count?: (bytes: number) => void) =>
    new TransformStream<Uint8Array, Uint8Array>({
      transform(piece, controller) {
        verifier.update(piece);
        count?.(piece.byteLength);
        controller.enqueue(piece);
      },
      flush: () => verifier.finish(),
    });
  return decompress(stored.pipeThrough(checking(blob), { signal: options.signal }), { compression })
    .pipeThrough(checking(plain, options.count));
}

/** `first`, then what is left of `input`, as a stream of fresh chunks. */
function replay(first: Uint8Array | undefined, input: ChunkReader): ReadableStream<Uint8Array> {
  let pending = first;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const piece = pending ?? (await input.read())?.slice();
      pending = undefined;
      if (piece) controller.enqueue(piece);
      else {
        input.release();
        controller.close();
      }
    },
    cancel: (reason) => input.cancel(reason),
  }, { highWaterMark: 0 });
}

const OUTPUT_SIZE = 1 << 18;

/** A gzip decompressor that writes into the caller's buffer. */
interface GzipHandle {
  /** Inflates from `input` (undefined: the input ended) into `out`: bytes read and written. */
  inflate(input: Uint8Array | undefined, out: Uint8Array): { read: number; written: number };
  close(): void;
}

/**
 * node:zlib's native handle under a `Gunzip`: Node's zlib binding, which Deno implements too:
 * `writeSync(flush, in, inOffset, inLength, out, outOffset, outLength)` leaves the room left in
 * `out` and the input left in `_writeState`, and reports errors to `onerror`. It reads member
 * after member, as `gunzip` does. Undefined when this runtime's node:zlib has no such handle.
 */
async function gzipHandle(): Promise<GzipHandle | undefined> {
  const zlib = await import("node:zlib");
  // deno-lint-ignore no-explicit-any
  const gunzip = zlib.createGunzip() as any;
  const handle = gunzip._handle;
  const state = gunzip._writeState;
  if (typeof handle?.writeSync !== "function" || !(state instanceof Uint32Array)) return undefined;
  let failure: string | undefined;
  handle.onerror = (message: string) => void (failure ??= message);
  const empty = new Uint8Array(0);
  return {
    inflate(input, out) {
      const data = input ?? empty;
      const flush = input ? zlib.constants.Z_NO_FLUSH : zlib.constants.Z_FINISH;
      handle.writeSync(flush, data, 0, data.length, out, 0, out.length);
      if (failure !== undefined) {
        throw new CorruptContentError(`cannot decompress gzip data: ${failure}`);
      }
      return { read: data.length - state[1], written: out.length - state[0] };
    },
    close() {
      handle.close();
    },
  };
}
