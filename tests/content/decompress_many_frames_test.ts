/**
 * zstd layers of very many frames (zstd:chunked writes one a file; an adversary writes 100,000
 * empty ones) decode in time linear in their size with a small constant, and frames that
 * inflate far stay streamed.
 */
import assert from "node:assert/strict";
import { zstdCompressSync } from "node:zlib";
import { decompress } from "../../content/layers/decompress.ts";
import { CorruptContentError } from "../../content/errors.ts";
import { assertRejects } from "../_helpers/rejects.ts";

function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

/** `bytes` as a stream of 1 MiB chunks, as a stored blob is read. */
function stream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += 1 << 20) chunks.push(bytes.subarray(i, i + (1 << 20)));
  return ReadableStream.from(chunks);
}

async function unzstd(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(
    await new Response(decompress(stream(bytes), { compression: "zstd" })).arrayBuffer(),
  );
}

// magic, single-segment descriptor, content size 0, one empty last raw block: 9 bytes
const EMPTY_FRAME = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00]);

Deno.test("decompress() takes 100,000 zstd frames in linear time with a small constant", async () => {
  const files = Array.from(
    { length: 20_000 },
    (_, i) => new TextEncoder().encode(`file ${i}\n`.repeat(i % 50)),
  );
  const chunked = join(files.map((f) => new Uint8Array(zstdCompressSync(f))));
  const empties = join(Array(100_000).fill(EMPTY_FRAME));
  const started = performance.now();
  const out = await unzstd(join([empties, chunked, empties]));
  const seconds = (performance.now() - started) / 1000;
  assert.deepEqual(out, join(files));
  // a decompressor set up for every frame took 186 s here; one call a frame, about 4 s (the
  // bound leaves room for a loaded machine)
  assert.ok(seconds < 60, `${seconds.toFixed(1)} s for 220,000 frames`);
});

Deno.test("decompress() streams a small zstd frame that inflates far, and refuses a corrupt one", async () => {
  const bomb = new Uint8Array(zstdCompressSync(new Uint8Array(96 << 20)));
  assert.ok(bomb.length < 128 << 10);
  const out = await unzstd(join([EMPTY_FRAME, bomb, EMPTY_FRAME]));
  assert.equal(out.length, 96 << 20);
  assert.ok(out.every((b) => b === 0));
  const small = new Uint8Array(zstdCompressSync(new TextEncoder().encode("hello ".repeat(999))));
  small[small.length - 2] ^= 0xff; // the content checksum
  await assertRejects(
    () => unzstd(join([EMPTY_FRAME, small])),
    CorruptContentError,
    "cannot decompress zstd data",
  );
});
