/** Reading a stream in large chunks into reused buffers. */
import { type DirectSource, directSourceOf } from "./direct_stream.ts";

/** Read buffers, reused from blob to blob: 1 MiB each, at most one per running download. */
export const BUFFER_SIZE = 1 << 20;

/**
 * Reads a stream in large chunks. A byte stream (a fetch body, the registry client's streams) is
 * read BYOB into a buffer that is reused, so a download allocates nothing per chunk and copies
 * nothing; a stream with a direct source (see direct_stream.ts) is read from that source, past
 * the stream machinery; other streams are read as they come.
 */
export class ChunkReader {
  readonly #pool: Uint8Array<ArrayBuffer>[];
  /** Set for a stream with a direct source: the stream is locked by {@link #default} meanwhile. */
  readonly #direct?: DirectSource;
  readonly #byob?: ReadableStreamBYOBReader;
  readonly #default?: ReadableStreamDefaultReader<Uint8Array>;
  #buffer?: Uint8Array<ArrayBuffer>;
  /** What a default read brought beyond the room a {@link ChunkReader.readInto} had. */
  #leftover?: Uint8Array;

  /** Reads `stream`; the buffer of {@link ChunkReader.read} comes from `pool` when it has one. */
  constructor(stream: ReadableStream<Uint8Array>, pool: Uint8Array<ArrayBuffer>[] = []) {
    this.#pool = pool;
    this.#direct = directSourceOf(stream);
    if (this.#direct) {
      this.#default = stream.getReader(); // only to lock it: nobody else reads it now
      return;
    }
    try {
      this.#byob = stream.getReader({ mode: "byob" });
    } catch {
      this.#default = stream.getReader(); // not a byte stream
    }
  }

  /** Whether reads go to a direct source: then {@link readInto} never takes the buffer away. */
  get direct(): boolean {
    return this.#direct !== undefined;
  }

  /** The next chunk (valid until the next call), or undefined at the end. */
  async read(): Promise<Uint8Array | undefined> {
    if (this.#direct) {
      this.#buffer ??= this.#pool.pop() ?? new Uint8Array(BUFFER_SIZE);
      const count = await this.#direct.readInto(this.#buffer);
      return count === 0 ? undefined : this.#buffer.subarray(0, count);
    }
    if (this.#default) {
      const { done, value } = await this.#default.read();
      return done ? undefined : value;
    }
    this.#buffer ??= this.#pool.pop() ?? new Uint8Array(BUFFER_SIZE);
    const { done, value } = await this.#byob!.read(this.#buffer);
    if (!value) return undefined; // cancelled
    this.#buffer = new Uint8Array(value.buffer); // the read transferred it
    return done ? undefined : value;
  }

  /**
   * Reads into `buffer[from, to)`. Returns the buffer to use from now on (a BYOB read transfers
   * it) and the number of bytes read, 0 at the end of the stream.
   */
  async readInto(
    buffer: Uint8Array<ArrayBuffer>,
    from: number,
    to: number,
  ): Promise<{ buffer: Uint8Array<ArrayBuffer>; count: number }> {
    if (this.#direct) {
      return { buffer, count: await this.#direct.readInto(buffer.subarray(from, to)) };
    }
    if (this.#byob) {
      const { done, value } = await this.#byob.read(new Uint8Array(buffer.buffer, from, to - from));
      if (!value) return { buffer: new Uint8Array(buffer.byteLength), count: 0 }; // cancelled
      return {
        buffer: new Uint8Array(value.buffer as ArrayBuffer),
        count: done ? 0 : value.length,
      };
    }
    let chunk = this.#leftover;
    this.#leftover = undefined;
    if (!chunk) {
      const { done, value } = await this.#default!.read();
      if (done) return { buffer, count: 0 };
      chunk = value;
    }
    const room = to - from;
    if (chunk.byteLength > room) this.#leftover = chunk.subarray(room);
    const part = chunk.subarray(0, room);
    buffer.set(part, from);
    return { buffer, count: part.byteLength };
  }

  /** Cancels the stream (errors are of no interest: the reader is giving up). */
  async cancel(reason?: unknown): Promise<void> {
    if (this.#direct) return await this.#direct.cancel(reason).catch(() => {});
    await (this.#byob ?? this.#default)!.cancel(reason).catch(() => {});
  }

  /** Releases the stream and gives the buffer back (unless a failed read took it along). */
  release(): void {
    (this.#byob ?? this.#default)!.releaseLock();
    if (this.#buffer?.byteLength === BUFFER_SIZE) this.#pool.push(this.#buffer);
    this.#buffer = undefined;
  }
}
