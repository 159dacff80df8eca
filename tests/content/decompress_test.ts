import assert from "node:assert/strict";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { compressionOf, decompress, detectCompression } from "../../content/layers/decompress.ts";
import { CorruptContentError } from "../../content/errors.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { bytesOf, chunked } from "../_helpers/bytes.ts";

/** Incompressible-enough test data of a few MiB, so output spans several chunks. */
function sample(): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(5 << 20);
  for (let i = 0; i < bytes.length; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, i + 32768)); // half random, half zeros
  }
  return bytes;
}

Deno.test("compressionOf() maps OCI and Docker layer media types", () => {
  assert.equal(compressionOf("application/vnd.oci.image.layer.v1.tar+gzip"), "gzip");
  assert.equal(compressionOf("application/vnd.oci.image.layer.v1.tar+zstd"), "zstd");
  assert.equal(compressionOf("application/vnd.oci.image.layer.v1.tar"), "none");
  assert.equal(compressionOf("application/vnd.docker.image.rootfs.diff.tar.gzip"), "gzip");
  assert.equal(compressionOf("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"), "gzip");
  assert.equal(
    compressionOf("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
    "zstd",
  );
  assert.equal(compressionOf("application/octet-stream"), undefined);
});

Deno.test("detectCompression() knows gzip and zstd by their magic bytes", () => {
  assert.equal(detectCompression(gzipSync(new Uint8Array(3))), "gzip");
  assert.equal(detectCompression(zstdCompressSync(new Uint8Array(3))), "zstd");
  assert.equal(detectCompression(new TextEncoder().encode("ustar")), "none");
  assert.equal(detectCompression(new Uint8Array(0)), "none");
});

Deno.test("decompress() inflates gzip and zstd by media type, and passes plain data through", async () => {
  const data = sample();
  const cases: [Uint8Array, string][] = [
    [gzipSync(data), "application/vnd.oci.image.layer.v1.tar+gzip"],
    [zstdCompressSync(data), "application/vnd.oci.image.layer.v1.tar+zstd"],
    [data, "application/vnd.oci.image.layer.v1.tar"],
  ];
  for (const [bytes, mediaType] of cases) {
    assert.deepEqual(await bytesOf(decompress(chunked(bytes, 65536), { mediaType })), data);
  }
});

Deno.test("decompress() sniffs the compression when the media type does not say", async () => {
  const data = sample();
  for (const bytes of [gzipSync(data), zstdCompressSync(data), data]) {
    // 1-byte first chunks make sniffing gather the magic across chunks.
    const head = chunked(bytes, 65536, [1, 1, 1]);
    const out = await bytesOf(decompress(head, { mediaType: "application/octet-stream" }));
    assert.deepEqual(out, data);
  }
  assert.equal((await bytesOf(decompress(chunked(new Uint8Array(0), 1)))).length, 0);
});

Deno.test("decompress() fails with CorruptContentError on corrupt data", async () => {
  const bytes = gzipSync(sample());
  bytes[bytes.length >> 1] ^= 0xff;
  bytes[(bytes.length >> 1) + 1] ^= 0xff;
  await assertRejects(
    () => bytesOf(decompress(chunked(bytes, 65536), { compression: "gzip" })),
    CorruptContentError,
    "cannot decompress gzip data",
  );
  // A truncated gzip stream fails too. (node:zlib's zstd decoder does not flag a truncated
  // frame; unpackImage's diff_id check catches that.)
  const truncated = gzipSync(sample()).subarray(0, 100_000);
  await assertRejects(
    () => bytesOf(decompress(chunked(truncated, 4096), { compression: "gzip" })),
    CorruptContentError,
    "unexpected end",
  );
});
