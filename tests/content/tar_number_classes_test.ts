/**
 * Whole classes of lying tar headers: every numeric field past its range, entries without data
 * that declare a size, global records that would change framing or ownership, and metadata
 * patterns that were quadratic (records per entry under a large global record, many global
 * headers).
 */
import { paxRecords } from "../_helpers/pax.ts";
import assert from "node:assert/strict";
import { readTar, type TarHeader } from "../../content/layers/tar_reader.ts";
import { CorruptContentError } from "../../content/errors.ts";
import { assertRejects } from "../_helpers/rejects.ts";

const encoder = new TextEncoder();

interface Fields {
  name: string;
  typeflag?: string;
  mode?: Uint8Array;
  uid?: Uint8Array;
  gid?: Uint8Array;
  size?: Uint8Array;
  devmajor?: Uint8Array;
  devminor?: Uint8Array;
}

/** A checksummed ustar header block. */
function header(fields: Fields): Uint8Array {
  const block = new Uint8Array(512);
  block.set(encoder.encode(fields.name), 0);
  block.set(fields.mode ?? octal(0o644, 8), 100);
  block.set(fields.uid ?? octal(0, 8), 108);
  block.set(fields.gid ?? octal(0, 8), 116);
  block.set(fields.size ?? octal(0, 12), 124);
  block.set(octal(0, 12), 136);
  block[156] = (fields.typeflag ?? "0").charCodeAt(0);
  block.set(encoder.encode("ustar\x0000"), 257);
  block.set(fields.devmajor ?? octal(0, 8), 329);
  block.set(fields.devminor ?? octal(0, 8), 337);
  block.fill(0x20, 148, 156);
  const sum = block.reduce((n, b) => n + b, 0);
  block.set(encoder.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return block;
}

function octal(n: number, length: number): Uint8Array {
  return encoder.encode(n.toString(8).padStart(length - 1, "0") + "\0");
}

/** A GNU base-256 field: big-endian two's complement, marked by the top bit. */
function base256(n: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let v = n < 0n ? (1n << BigInt(8 * length)) + n : n;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (n >= 0n) out[0] |= 0x80;
  return out;
}

/** A PAX header (`x` or `g`) and its padded records. */
function pax(typeflag: "x" | "g", records: [string, string][]): Uint8Array[] {
  const { body, size } = paxRecords(records);
  return [header({ name: "pax", size: octal(size, 12), typeflag }), body];
}

function padded(text: string): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(text.length / 512) * 512);
  bytes.set(encoder.encode(text));
  return bytes;
}

/** Every entry's header and body text. */
async function read(
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<{ header: TarHeader; text: string }[]> {
  const out = [];
  for await (const entry of readTar(ReadableStream.from(chunks))) {
    out.push({ header: entry.header, text: await new Response(entry.body).text() });
  }
  return out;
}

const END = new Uint8Array(1024);

Deno.test("readTar() refuses ids, modes and device numbers past 32 bits, naming entry and field", async () => {
  // 2^32 would wrap to uid 0 (root), 2^32 - 1 is chown's "leave as is"
  const cases: [string, Fields][] = [
    ["uid", { name: "wrap-uid", uid: base256(2n ** 32n, 8) }],
    ["uid", { name: "wrap-uid", uid: base256(2n ** 32n + 5n, 8) }],
    ["uid", { name: "wrap-uid", uid: base256(2n ** 32n - 1n, 8) }],
    ["gid", { name: "wrap-gid", gid: base256(2n ** 40n, 8) }],
    ["uid", { name: "neg-uid", uid: base256(-1n, 8) }],
    ["mode", { name: "big-mode", mode: base256(2n ** 40n + 0o4755n, 8) }],
    ["devmajor", { name: "dev", typeflag: "4", devmajor: base256(2n ** 40n + 8n, 8) }],
    ["devminor", { name: "dev", typeflag: "3", devminor: base256(2n ** 33n, 8) }],
    ["devminor", { name: "dev", typeflag: "3", devminor: base256(-3n, 8) }],
  ];
  for (const [field, fields] of cases) {
    await assertRejects(
      () => read([header(fields), END]),
      CorruptContentError,
      `(entry "${fields.name}"): `,
    );
    await assertRejects(() => read([header(fields), END]), CorruptContentError, ` ${field} `);
  }
  for (const [key, value] of [["uid", "4294967296"], ["gid", "4294967295"], ["uid", "1e3"]]) {
    await assertRejects(
      () => read([...pax("x", [[key, value]]), header({ name: "f" }), END]),
      CorruptContentError,
      `PAX ${key}`,
    );
  }
  // the largest that fit are fine
  const [big] = await read([
    header({ name: "ok", uid: base256(2n ** 32n - 2n, 8), gid: octal(0o7777777, 8) }),
    END,
  ]);
  assert.deepEqual([big.header.uid, big.header.gid], [2 ** 32 - 2, 0o7777777]);
});

Deno.test("readTar() reads no data after entries that have none, whatever size they declare", async () => {
  // a directory, symlink, hardlink, FIFO and device declaring 512 bytes: the next header follows
  // at once (as Go's archive/tar, and so containerd, read it), nothing is hidden or skipped
  for (const typeflag of ["5", "2", "1", "6", "3", "4"]) {
    const entries = await read([
      header({ name: "odd", typeflag, size: octal(512, 12) }),
      header({ name: "next", size: octal(3, 12) }),
      padded("abc"),
      END,
    ]);
    assert.deepEqual(entries.map((e) => e.header.name), ["odd", "next"], `type ${typeflag}`);
    assert.deepEqual([entries[0].header.size, entries[1].text], [0, "abc"]);
  }
  // a PAX size on a directory changes nothing either
  const entries = await read([
    ...pax("x", [["size", "1024"]]),
    header({ name: "d/", typeflag: "5" }),
    header({ name: "f", size: octal(2, 12) }),
    padded("hi"),
    END,
  ]);
  assert.deepEqual(entries.map((e) => [e.header.name, e.text]), [["d/", ""], ["f", "hi"]]);
});

Deno.test("readTar() applies no global size, name, owner id or xattr: the runtime ignores them", async () => {
  const entries = await read([
    ...pax("g", [
      ["size", "0"],
      ["path", "etc/passwd"],
      ["linkpath", "/"],
      ["uid", "1000"],
      ["gid", "1000"],
      ["SCHILY.xattr.security.capability", "cap-on-every-file"],
      ["mtime", "42"],
      ["uname", "everyone"],
      ["comment", "kept"],
    ]),
    header({ name: "bin/su", size: octal(5, 12), mode: octal(0o4755, 8) }),
    padded("hello"),
    header({ name: "bin/sh", typeflag: "2" }),
    END,
  ]);
  assert.deepEqual(entries.map((e) => e.header.name), ["bin/su", "bin/sh"]);
  const [su, sh] = entries.map((e) => e.header);
  assert.equal(entries[0].text, "hello");
  assert.deepEqual([su.uid, su.gid, su.mtime, su.uname, su.pax.comment], [
    0,
    0,
    42,
    "everyone",
    "kept",
  ]);
  assert.deepEqual(Object.keys(su.xattrs), []);
  assert.equal(su.pax.uid, undefined);
  assert.equal(sh.linkname, "");
});

Deno.test("readTar() stays linear: records of its own per entry, many global headers, one large global value", async () => {
  // one global record of ~900 KB in 20,000 keys, then 10,000 entries with a local record each:
  // copying the global records for each entry took ~30 s
  const big = pax(
    "g",
    Array.from({ length: 20_000 }, (_, i) => [`dist.k${i}`, "v".repeat(30)] as [string, string]),
  );
  const bigValue = pax("g", [["comment", "c".repeat(900_000)]]);
  const cases: [string, () => AsyncGenerator<Uint8Array>, number][] = [
    ["local records under a large global record", async function* () {
      yield* big;
      for (let i = 0; i < 10_000; i++) {
        yield* pax("x", [["mtime", String(i)]]);
        yield header({ name: `f${i}` });
      }
      yield END;
    }, 10_000],
    ["10,000 small global headers after a large one", async function* () {
      yield* big;
      for (let i = 0; i < 10_000; i++) yield* pax("g", [["mtime", String(i)]]);
      yield header({ name: "f" });
      yield END;
    }, 1],
    ["3,000 small global headers after a large value", async function* () {
      yield* bigValue;
      for (let i = 0; i < 3_000; i++) yield* pax("g", [["mtime", String(i)]]);
      yield header({ name: "f" });
      yield END;
    }, 1],
  ];
  for (const [what, archive, count] of cases) {
    const started = performance.now();
    let seen = 0;
    for await (const _ of readTar(ReadableStream.from(archive()))) seen++;
    const seconds = (performance.now() - started) / 1000;
    assert.equal(seen, count, what);
    // linear takes well under a second here; the old code took 8 s to 30 s
    assert.ok(seconds < 4, `${what}: ${seconds.toFixed(1)} s`);
  }
});
