/**
 * Layer decompression by media type: gzip, zstd or none, sniffing the magic bytes when the media
 * type does not say.
 *
 * Uses `node:zlib` (`createGunzip` with 256 KiB output chunks inflates faster than
 * `DecompressionStream`, and `DecompressionStream` has no zstd) behind a Web Streams interface.
 *
 * @example
 * ```ts
 * import { decompress } from "./decompress.ts";
 * const gz = new Blob([new Uint8Array([])]).stream(); // an empty, uncompressed stream
 * const plain = decompress(gz, { mediaType: "application/vnd.oci.image.layer.v1.tar" });
 * await plain.cancel();
 * ```
 *
 * @module
 */
import type { Transform } from "node:stream";
import { CorruptContentError } from "../errors.ts";
import { concatBytes } from "../internal/bytes.ts";
import { type FramePiece, zstdFrames } from "./_zstd_frames.ts";

/** A layer's compression. */
export type Compression = "gzip" | "zstd" | "none";

/** Options for {@link decompress}. */
export interface DecompressOptions {
  /** The layer's media type; decides the compression when it names one. */
  mediaType?: string;
  /** The compression, overriding the media type. */
  compression?: Compression;
}

const OUTPUT_CHUNK = 1 << 18;

/**
 * The compression a media type names, or undefined when it does not say (e.g.
 * `application/octet-stream`). Covers OCI (`+gzip`, `+zstd`, `.tar`) and Docker
 * (`.tar.gzip`, `.tar.zstd`) layer types, non-distributable and foreign ones included.
 */
export function compressionOf(mediaType: string): Compression | undefined {
  const type = mediaType.split(";")[0].trim().toLowerCase();
  if (type.endsWith("+gzip") || type.endsWith(".gzip") || type.endsWith(".gz")) return "gzip";
  if (type.endsWith("+zstd") || type.endsWith(".zstd") || type.endsWith(".zst")) return "zstd";
  if (type.endsWith(".tar") || type.endsWith("+tar") || type === "application/x-tar") return "none";
  return undefined;
}

/** The compression given away by a stream's first bytes (gzip and zstd magic), else `"none"`. */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (
    head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f &&
    head[3] === 0xfd
  ) {
    return "zstd";
  }
  return "none";
}

/**
 * Decompresses `source` according to `options` (compression, else media type, else the magic
 * bytes). An uncompressed source is returned as is. Corrupt data makes the stream error with
 * {@link CorruptContentError}.
 */
export function decompress(
  source: ReadableStream<Uint8Array>,
  options: DecompressOptions = {},
): ReadableStream<Uint8Array> {
  const known = options.compression ??
    (options.mediaType === undefined ? undefined : compressionOf(options.mediaType));
  if (known === "none") return source;
  if (known) return inflate(source, known);
  return sniffed(source);
}

/** Reads the first bytes to decide, then continues with the right decompressor. */
function sniffed(source: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let output: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    async start() {
      const head: Uint8Array[] = [];
      let length = 0;
      let ended = false;
      while (length < 4 && !ended) {
        const { value, done } = await reader.read();
        if (done) ended = true;
        else {
          head.push(value);
          length += value.length;
        }
      }
      const first = head.length === 1 ? head[0] : concatBytes(head);
      // The bytes read so far, then the rest of the source.
      const replay = new ReadableStream<Uint8Array>({
        start(controller) {
          if (first.length > 0) controller.enqueue(first);
          if (ended) controller.close();
        },
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
        cancel: (reason) => reader.cancel(reason),
      }, { highWaterMark: 0 });
      const compression = detectCompression(first);
      output = (compression === "none" ? replay : inflate(replay, compression)).getReader();
    },
    async pull(controller) {
      const { value, done } = await output!.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => output ? output.cancel(reason) : reader.cancel(reason),
  }, { highWaterMark: 0 });
}

/**
 * Runs `source` through a node:zlib decompressor. Input is written with backpressure from the
 * decompressor; output chunks become views (no copies) queued in a small Web stream.
 */
function inflate(
  source: ReadableStream<Uint8Array>,
  compression: "gzip" | "zstd",
): ReadableStream<Uint8Array> {
  // gzip's decompressor reads member after member; zstd's stops after its first frame
  if (compression === "gzip") return inflateOne(source, "gzip");
  const pieces = zstdFrames(source)[Symbol.asyncIterator]();
  return ReadableStream.from((async function* () {
    const { zstdDecompressSync } = await import("node:zlib");
    // one decompressor a frame, in turn: skippable frames are gone, pzstd's many frames all count
    for (let piece = await pieces.next(); !piece.done; piece = await pieces.next()) {
      if (piece.value.end && piece.value.bytes.length <= SMALL_FRAME) {
        // a small frame that came whole (zstd:chunked writes one a file) is decoded in one call:
        // a streaming decompressor costs ~150 µs to set up, a layer may hold 100,000 frames
        const plain = decodeSmallFrame(zstdDecompressSync, piece.value.bytes);
        if (plain) {
          if (plain.length) yield plain;
          continue;
        }
      }
      let first: FramePiece | undefined = piece.value;
      const frame = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const next = first ?? (await pieces.next()).value;
          first = undefined;
          if (next === undefined) return controller.close();
          if (next.bytes.length) controller.enqueue(next.bytes);
          if (next.end) controller.close();
        },
      }, { highWaterMark: 0 });
      yield* inflateOne(frame, "zstd");
    }
  })());
}

/** Largest compressed frame decoded in one call, and the most it may decode to there. */
const SMALL_FRAME = 128 << 10;
const SMALL_FRAME_OUTPUT = 4 << 20;

/**
 * Decodes one whole zstd frame in one call; undefined when it decodes to more than
 * {@link SMALL_FRAME_OUTPUT} (it is then streamed, so a bomb never sits in memory whole).
 */
function decodeSmallFrame(
  decode: (bytes: Uint8Array, options: { maxOutputLength: number }) => Uint8Array,
  frame: Uint8Array,
): Uint8Array | undefined {
  try {
    const out = decode(frame, { maxOutputLength: SMALL_FRAME_OUTPUT });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") return undefined;
    throw new CorruptContentError(
      `cannot decompress zstd data: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

function inflateOne(
  source: ReadableStream<Uint8Array>,
  compression: "gzip" | "zstd",
): ReadableStream<Uint8Array> {
  let zlib: Transform | undefined;
  const reader = source.getReader();
  let failed = false;
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, error: unknown) => {
    if (failed) return;
    failed = true;
    zlib?.destroy();
    reader.cancel(error).catch(() => {});
    controller.error(error);
  };
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      // loaded here, not at the top: importing node:zlib would add ≈ 3 ms to every command
      const { createGunzip, createZstdDecompress } = await import("node:zlib");
      const options = { chunkSize: OUTPUT_CHUNK };
      const inflater = compression === "gzip"
        ? createGunzip(options)
        : createZstdDecompress(options);
      zlib = inflater;
      if (failed) return void inflater.destroy(); // cancelled while loading
      inflater.on("data", (chunk: Uint8Array) => {
        // a stream cancelled (Ctrl-C) while the decompressor still flushes takes no more chunks
        if (failed) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) inflater.pause();
      });
      inflater.on("end", () => {
        if (!failed) controller.close();
      });
      inflater.on("error", (error: Error) =>
        fail(
          controller,
          new CorruptContentError(`cannot decompress ${compression} data: ${error.message}`, {
            cause: error,
          }),
        ));
      inflater.pause();
      // Feed the decompressor as fast as it takes input; the loop ends with the source.
      (async () => {
        while (true) {
          const { value, done } = await reader.read();
          if (failed) return;
          if (done) {
            inflater.end();
            return;
          }
          if (!inflater.write(value)) {
            await new Promise<void>((resolve) => {
              const settle = () => {
                inflater.off("drain", settle);
                inflater.off("close", settle);
                resolve();
              };
              inflater.on("drain", settle);
              inflater.on("close", settle);
            });
          }
        }
      })().catch((error) => fail(controller, error));
    },
    pull() {
      zlib!.resume(); // pull comes after start
    },
    cancel(reason) {
      failed = true;
      zlib?.destroy();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 2 });
}
