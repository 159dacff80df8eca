/**
 * Splits a zstd stream into its frames without decoding them: `node:zlib`'s decompressor stops
 * after the first frame, while pzstd and zstd:chunked write many, and skippable frames carry
 * metadata that decodes to nothing. Frame and block headers give every length (RFC 8878).
 */
import { CorruptContentError } from "../errors.ts";

/** A piece of input: bytes of the current frame, and whether that frame ends with them. */
export interface FramePiece {
  bytes: Uint8Array;
  end: boolean;
}

const ZSTD_MAGIC = 0xfd2fb528;

/** Where the splitter stands. */
type State =
  | { at: "magic" }
  | { at: "skippable-size" }
  | { at: "skip"; left: number }
  | { at: "descriptor" }
  | { at: "frame-header"; need: number }
  | { at: "block-header" }
  | { at: "block"; left: number; last: boolean }
  | { at: "checksum"; left: number };

/** Cuts a zstd stream into {@link FramePiece}s, skippable frames left out. */
export async function* zstdFrames(source: AsyncIterable<Uint8Array>): AsyncGenerator<FramePiece> {
  let state: State = { at: "magic" };
  let small = new Uint8Array(0); // a header being gathered across chunks
  let checksum = false;
  let offset = 0; // input bytes consumed, for errors
  const fail = (why: string) =>
    new CorruptContentError(`cannot decompress zstd data: ${why} at byte ${offset}`);
  for await (const chunk of source) {
    let pos = 0;
    // where the current frame's bytes in this chunk begin: at 0 when a frame goes on from before
    let frameStart = ["descriptor", "frame-header", "block-header", "block", "checksum"]
        .includes(state.at)
      ? 0
      : -1;
    const take = (n: number): Uint8Array | undefined => {
      // gathers n header bytes; undefined while the chunk runs out first
      const want = n - small.length;
      const got = chunk.subarray(pos, pos + want);
      pos += got.length;
      offset += got.length;
      const joined = new Uint8Array(small.length + got.length);
      joined.set(small);
      joined.set(got, small.length);
      if (joined.length < n) {
        small = joined;
        return undefined;
      }
      small = new Uint8Array(0);
      return joined;
    };
    while (pos < chunk.length) {
      switch (state.at) {
        case "magic": {
          const start = pos;
          const carried = small; // the magic's first bytes, when an earlier chunk ended in it
          const bytes = take(4);
          if (!bytes) break;
          const magic = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
          if ((magic & 0xfffffff0) === 0x184d2a50) state = { at: "skippable-size" };
          else if (magic === ZSTD_MAGIC) {
            if (carried.length) yield { bytes: carried, end: false };
            frameStart = start;
            state = { at: "descriptor" };
          } else throw fail("not a zstd frame");
          break;
        }
        case "skippable-size": {
          const bytes = take(4);
          if (!bytes) break;
          state = {
            at: "skip",
            left: new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true),
          };
          break;
        }
        case "skip": {
          const n = Math.min(state.left, chunk.length - pos);
          pos += n;
          offset += n;
          state = state.left - n === 0 ? { at: "magic" } : { at: "skip", left: state.left - n };
          break;
        }
        case "descriptor": {
          // the frame header descriptor tells how long the rest of the header is
          const bytes = take(1);
          if (!bytes) break;
          const fhd = bytes[0];
          const single = (fhd >> 5) & 1;
          const fcs = [single ? 1 : 0, 2, 4, 8][fhd >> 6];
          const did = [0, 1, 2, 4][fhd & 3];
          checksum = ((fhd >> 2) & 1) === 1;
          if ((fhd >> 3) & 1) throw fail("reserved bit set in a frame header");
          const rest = (single ? 0 : 1) + did + fcs;
          state = rest === 0 ? { at: "block-header" } : { at: "frame-header", need: rest };
          break;
        }
        case "frame-header": {
          if (take(state.need)) state = { at: "block-header" };
          break;
        }
        case "block-header": {
          const bytes = take(3);
          if (!bytes) break;
          const header = bytes[0] | (bytes[1] << 8) | (bytes[2] << 16);
          const type = (header >> 1) & 3;
          if (type === 3) throw fail("reserved block type");
          const size = type === 1 ? 1 : header >>> 3;
          state = { at: "block", left: size, last: (header & 1) === 1 };
          if (size === 0) state = next(state.last, checksum);
          break;
        }
        case "block": {
          const n = Math.min(state.left, chunk.length - pos);
          pos += n;
          offset += n;
          const left: number = state.left - n;
          state = left > 0 ? { at: "block", left, last: state.last } : next(state.last, checksum);
          break;
        }
        case "checksum": {
          const n = Math.min(state.left, chunk.length - pos);
          pos += n;
          offset += n;
          state = state.left - n > 0 ? { at: "checksum", left: state.left - n } : { at: "magic" };
          break;
        }
      }
      if (state.at === "magic" && frameStart >= 0) {
        // a frame ended here
        yield { bytes: chunk.subarray(frameStart, pos), end: true };
        frameStart = -1;
      }
    }
    if (frameStart >= 0 && pos > frameStart) {
      yield { bytes: chunk.subarray(frameStart, pos), end: false };
    }
  }
  if (state.at !== "magic" || small.length > 0) throw fail("the data ends inside a frame");
}

/** The state after a block: the next block, the checksum, or the next frame. */
function next(last: boolean, checksum: boolean): State {
  if (!last) return { at: "block-header" };
  return checksum ? { at: "checksum", left: 4 } : { at: "magic" };
}
