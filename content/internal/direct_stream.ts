/**
 * Byte streams whose source can also be read directly. Each layer of Web Streams a chunk passes
 * (a BYOB request, its promise, its respond) costs a short-lived process more than the bytes do:
 * 48 blobs of 512 KiB from a loopback registry took 30 ms of the main thread read straight from
 * the socket, 44–63 ms through one byte stream. A {@link ChunkReader} reads such a stream's
 * source itself; every other reader gets an ordinary byte stream.
 */

/** A source that fills a caller's buffer. */
export interface DirectSource {
  /** Reads into `view`; resolves to the number of bytes read, 0 at the end. */
  readInto(view: Uint8Array<ArrayBuffer>): Promise<number>;
  /** Stops the source; reads in flight fail or end. */
  cancel(reason?: unknown): Promise<void>;
}

const sources = new WeakMap<ReadableStream, DirectSource>();

/**
 * A byte stream over `source`; {@link directSourceOf} returns the source for it. Default readers
 * get chunks of up to `chunkSize` bytes.
 */
export function directStream(
  source: DirectSource,
  chunkSize = 64 << 10,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  const stream = new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: chunkSize,
    async pull(controller) {
      // read through the stream once, it is read through the stream to the end: direct reads
      // now could take bytes from under a read in flight, or after bytes already queued
      sources.delete(stream);
      const request = controller.byobRequest!;
      const count = await source.readInto(request.view as Uint8Array<ArrayBuffer>);
      if (count > 0) return request.respond(count);
      controller.close();
      request.respond(0); // a pending read is answered at the end
    },
    cancel: (reason) => source.cancel(reason),
  });
  sources.set(stream, source);
  return stream;
}

/** The source of a stream made by {@link directStream}, if it is one. */
export function directSourceOf(stream: ReadableStream): DirectSource | undefined {
  return sources.get(stream);
}
