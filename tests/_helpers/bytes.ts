/** Test data: random and seeded bytes, streams that hand them out in pieces, and back. */

/** Random bytes that do not compress (crypto.getRandomValues fills at most 64 KiB a call). */
export function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

/**
 * Pseudo-random bytes (xorshift32), the same for the same size and seed: child processes and
 * repeated calls can rebuild them, and different seeds give different blobs.
 */
export function seededBytes(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** A stream that hands out `bytes` in pieces: first the sizes in `first`, then `size` each. */
export function chunked(
  bytes: Uint8Array,
  size: number,
  first: number[] = [],
): ReadableStream<Uint8Array> {
  let offset = 0;
  const sizes = [...first];
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      const n = sizes.shift() ?? size;
      controller.enqueue(bytes.slice(offset, offset + n));
      offset += n;
    },
  });
}

/** Reads a whole stream into memory. */
export async function bytesOf(
  stream: ReadableStream<Uint8Array>,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
