/** zstd and gzip streams of several frames or members decode whole, however the input is cut. */
import assert from "node:assert/strict";
import { decompress } from "../../content/layers/decompress.ts";
import { CorruptContentError } from "../../content/errors.ts";
import { seededBytes } from "../_helpers/bytes.ts";
import { assertRejects } from "../_helpers/rejects.ts";

async function tool(program: string, args: string[], input: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command(program, { args, stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const { stdout, success } = await child.output();
  assert.ok(success, `${program} failed`);
  return stdout;
}

/** `bytes` as a stream of chunks of `size` bytes. */
function cut(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
  return ReadableStream.from(chunks);
}

function join(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

async function decoded(stream: ReadableStream<Uint8Array>, compression: "gzip" | "zstd") {
  return new Uint8Array(await new Response(decompress(stream, { compression })).arrayBuffer());
}

// text-like data (compressible), large enough that pzstd cuts it into several frames
const plain = new TextEncoder().encode(
  Array.from({ length: 60_000 }, (_, i) => `line ${i} ${i * 7919 % 1000}\n`).join(""),
);

Deno.test("decompress() reads every frame of pzstd output and skips skippable frames", async () => {
  const multi = await tool(
    "pzstd",
    ["-q", "-p", "2", "-c", "-3"],
    join(plain, seededBytes(3 << 20)),
  );
  const expected = join(plain, seededBytes(3 << 20));
  const skippable = join(new Uint8Array([0x5e, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]), new Uint8Array(5));
  const single = await tool("zstd", ["-q", "-c", "--no-check"], plain);
  const mixed = join(skippable, multi, skippable, single);
  for (const size of [7, 4096, 1 << 20]) {
    const out = await decoded(cut(mixed, size), "zstd");
    assert.equal(out.length, expected.length + plain.length, `chunks of ${size}`);
    assert.deepEqual(out.subarray(expected.length), plain);
  }
  // one byte at a time: every header cut at every place
  const smallMixed = join(skippable, single, single);
  assert.deepEqual(await decoded(cut(smallMixed, 1), "zstd"), join(plain, plain));
});

Deno.test("decompress() reads every member of a multi-member gzip", async () => {
  const a = await tool("gzip", ["-c"], plain);
  const b = await tool("gzip", ["-c"], plain.subarray(0, 1000));
  assert.deepEqual(
    await decoded(cut(join(a, b), 333), "gzip"),
    join(plain, plain.subarray(0, 1000)),
  );
});

Deno.test("decompress() refuses zstd data cut inside a frame and bytes that are no frame", async () => {
  const single = await tool("zstd", ["-q", "-c"], plain);
  await assertRejects(
    () => decoded(cut(single.subarray(0, single.length - 10), 100), "zstd"),
    CorruptContentError,
  );
  await assertRejects(
    () => decoded(cut(join(single, new Uint8Array([1, 2, 3, 4, 5])), 100), "zstd"),
    CorruptContentError,
    "not a zstd frame",
  );
});
