/** Reading a stream in large chunks into reused buffers. */

/** Read buffers, reused from blob to blob: 1 MiB each, at most one per running download. */
export const BUFFER_SIZE = 1 << 20;

/**
 * Reads a stream chunk by chunk. A byte stream (the registry client's) is read BYOB into a
 * buffer taken from `pool` and reused for every chunk, so a download allocates nothing per
 * chunk; other streams are read as they come.
 */
export class ChunkReader {
  readonly #pool: Uint8Array<ArrayBuffer>[];
  readonly #byob?: ReadableStreamBYOBReader;
  readonly #default?: ReadableStreamDefaultReader<Uint8Array>;
  #buffer?: Uint8Array<ArrayBuffer>;

  constructor(stream: ReadableStream<Uint8Array>, pool: Uint8Array<ArrayBuffer>[]) {
    this.#pool = pool;
    try {
      this.#byob = stream.getReader({ mode: "byob" });
      this.#buffer = pool.pop() ?? new Uint8Array(BUFFER_SIZE);
    } catch {
      this.#default = stream.getReader(); // not a byte stream
    }
  }

  /** The next chunk (valid until the next call), or undefined at the end. */
  async read(): Promise<Uint8Array | undefined> {
    if (this.#default) {
      const { done, value } = await this.#default.read();
      return done ? undefined : value;
    }
    const { done, value } = await this.#byob!.read(this.#buffer!);
    if (!value) return undefined; // cancelled
    this.#buffer = new Uint8Array(value.buffer); // the read transferred it
    return done ? undefined : value;
  }

  async cancel(reason: unknown): Promise<void> {
    await (this.#byob ?? this.#default)!.cancel(reason).catch(() => {});
  }

  /** Releases the stream and gives the buffer back (unless a failed read took it along). */
  release(): void {
    (this.#byob ?? this.#default)!.releaseLock();
    if (this.#buffer?.byteLength === BUFFER_SIZE) this.#pool.push(this.#buffer);
    this.#buffer = undefined;
  }
}
