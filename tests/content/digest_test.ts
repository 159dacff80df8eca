/**
 * Digests: the TypeScript SHA-256 that small content uses, against the native hasher, on every
 * length around the block and padding boundaries, fed in pieces of every size; and a `Digester`
 * that crosses from collected bytes to the native hasher mid-stream.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Digester, SMALL_CONTENT } from "../../content/digest.ts";
import { Sha256 } from "../../content/internal/sha256.ts";
import { seededBytes } from "../_helpers/bytes.ts";
import { DEFAULT_MAX_CONCURRENT_DOWNLOADS } from "../../remotes/copy.ts";
import { DEFAULT_CONCURRENCY } from "../../cli/commands.ts";

const nativeHex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

Deno.test("sha256: FIPS 180-4 examples", () => {
  const text = (s: string) => hex(new Sha256().update(new TextEncoder().encode(s)).digest());
  assert.equal(text("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.equal(text(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(
    text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

Deno.test("sha256: every length to 300 bytes, in pieces of 1 to 70 bytes, matches the native hash", () => {
  const data = seededBytes(300, 7);
  for (let length = 0; length <= 300; length++) {
    const content = data.subarray(0, length);
    for (const piece of [1, 7, 63, 64, 65, 70]) {
      const hasher = new Sha256();
      for (let at = 0; at < length; at += piece) hasher.update(content.subarray(at, at + piece));
      assert.equal(
        hex(hasher.digest()),
        nativeHex(content),
        `length ${length}, pieces of ${piece}`,
      );
    }
  }
});

// before any test loads the native hasher: small content is collected in pooled buffers
Deno.test("Digester: many small contents at once, then again, each hashed from its own copy", async () => {
  const buffer = new Uint8Array(64 * 1024); // one buffer the callers reuse for every piece
  for (const round of [1, 2]) {
    const contents = Array.from(
      { length: 20 },
      (_, i) => seededBytes(1 + Math.floor((SMALL_CONTENT - 1) * i / 19), round * 100 + i),
    );
    const digesters = contents.map(() => new Digester());
    for (let at = 0; at < SMALL_CONTENT; at += buffer.length) {
      contents.forEach((content, i) => {
        const piece = content.subarray(at, at + buffer.length);
        if (piece.length === 0) return;
        buffer.set(piece);
        digesters[i].update(buffer.subarray(0, piece.length));
      });
    }
    const digests = await Promise.all(digesters.map((d) => d.finish()));
    assert.deepEqual(digests, contents.map((c) => `sha256:${nativeHex(c)}`), `round ${round}`);
  }
});

Deno.test("Digester: small content, content crossing to the native hasher, and a reused buffer", async () => {
  for (const size of [0, 1000, SMALL_CONTENT, SMALL_CONTENT + 1, 3 * SMALL_CONTENT + 5]) {
    const content = seededBytes(size, size);
    const [digester, waiting] = [new Digester(), new Digester()];
    const buffer = new Uint8Array(100_000); // the caller reuses it, as stdin reading does
    for (let at = 0; at < size; at += buffer.length) {
      const piece = content.subarray(at, at + buffer.length);
      buffer.set(piece);
      digester.update(buffer.subarray(0, piece.length));
      waiting.update(buffer.subarray(0, piece.length));
      if (at === 0) assert.equal(digester.peek(), `sha256:${nativeHex(piece)}`);
    }
    assert.equal(digester.digest(), `sha256:${nativeHex(content)}`, `size ${size}`);
    assert.equal(await waiting.finish(), `sha256:${nativeHex(content)}`, `size ${size}`);
  }
});

Deno.test("dist --help names remotes/copy.ts's default concurrency", () => {
  assert.equal(DEFAULT_CONCURRENCY, DEFAULT_MAX_CONCURRENT_DOWNLOADS);
});
