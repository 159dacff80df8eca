import assert from "node:assert/strict";
import { readTar, type TarHeader } from "../../content/layers/tar_reader.ts";
import { type TarWriteEntry, writeTar } from "../../content/layers/tar_writer.ts";
import { CorruptContentError, InvalidArgumentError } from "../../content/errors.ts";
import { syscalls } from "../../content/layers/_syscalls.ts";
import { requireTool, withTempDir } from "../_helpers/temp.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { bytesOf, chunked, randomBytes } from "../_helpers/bytes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs GNU tar and returns its stdout. */
async function tar(args: string[], stdin?: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  await requireTool("tar");
  const child = new Deno.Command("tar", {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const result = await child.output();
  if (!result.success) throw new Error(`tar ${args.join(" ")}: ${decoder.decode(result.stderr)}`);
  return result.stdout as Uint8Array<ArrayBuffer>;
}

interface Read {
  header: TarHeader;
  text: string;
}

async function readAll(source: ReadableStream<Uint8Array>): Promise<Map<string, Read>> {
  const out = new Map<string, Read>();
  for await (const entry of readTar(source)) {
    const text = decoder.decode(await bytesOf(entry.body));
    out.set(entry.header.name.replace(/^\.\//, "").replace(/\/$/, ""), {
      header: entry.header,
      text,
    });
  }
  return out;
}

const LONG_DIR = "d".repeat(60) + "/" + "e".repeat(60) + "/" + "f".repeat(70);
const LONG_FILE = `${LONG_DIR}/${"n".repeat(120)}.txt`; // > 255 bytes: no ustar split fits
const LONG_TARGET = "../".repeat(10) + "t".repeat(150);

/** Fills `dir` with one of everything tar can hold. */
async function makeFixture(dir: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/plain.txt`, "plain\n");
  await Deno.chmod(`${dir}/plain.txt`, 0o640);
  await Deno.writeTextFile(`${dir}/setuid`, "#!/bin/sh\n");
  await Deno.chmod(`${dir}/setuid`, 0o4755);
  await Deno.mkdir(`${dir}/sticky`);
  await Deno.chmod(`${dir}/sticky`, 0o1777);
  await Deno.symlink("plain.txt", `${dir}/link`);
  await Deno.symlink(LONG_TARGET, `${dir}/longlink`);
  await Deno.link(`${dir}/plain.txt`, `${dir}/zhard`);
  await Deno.mkdir(`${dir}/${LONG_DIR}`, { recursive: true });
  await Deno.writeTextFile(`${dir}/${LONG_FILE}`, "long\n");
  await Deno.writeTextFile(`${dir}/grüße.txt`, "unicode\n");
  const mkfifo = await new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).output();
  assert(mkfifo.success);
  await Deno.chown(`${dir}/plain.txt`, 1234, 5678);
  await Deno.utime(`${dir}/plain.txt`, 1600000000, 1600000000);
  const sys = syscalls();
  assert(sys, "the tests run with --allow-ffi");
  assert.deepEqual(sys.lsetxattr(`${dir}/plain.txt`, "user.dist", encoder.encode("v\x00\xffx")), 0);
}

Deno.test("readTar() reads a PAX archive from GNU tar: every type, modes, owners, xattrs", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await makeFixture(`${dir}/src`);
    const archive = await tar([
      "--format=pax",
      "--xattrs",
      "--xattrs-include=*",
      "--sort=name",
      "-C",
      `${dir}/src`,
      "-cf",
      "-",
      ".",
    ]);
    const entries = await readAll(chunked(archive, 1 << 20));
    const plain = entries.get("plain.txt")!;
    assert.deepEqual(plain.text, "plain\n");
    assert.deepEqual(plain.header.type, "file");
    assert.deepEqual(plain.header.mode, 0o640);
    assert.deepEqual([plain.header.uid, plain.header.gid], [1234, 5678]);
    assert.deepEqual(Math.floor(plain.header.mtime), 1600000000);
    // Binary xattr values survive: the PAX value is taken as bytes, not text.
    assert.deepEqual([...plain.header.xattrs["user.dist"]], [0x76, 0, 0xc3, 0xbf, 0x78]);
    assert.deepEqual(entries.get("setuid")!.header.mode, 0o4755);
    assert.deepEqual(entries.get("sticky")!.header.type, "directory");
    assert.deepEqual(entries.get("sticky")!.header.mode, 0o1777);
    assert.deepEqual(entries.get("link")!.header.type, "symlink");
    assert.deepEqual(entries.get("link")!.header.linkname, "plain.txt");
    assert.deepEqual(entries.get("longlink")!.header.linkname, LONG_TARGET);
    const hard = entries.get("zhard")!;
    assert.deepEqual(hard.header.type, "link");
    assert.deepEqual(hard.header.linkname, "./plain.txt");
    assert.deepEqual(entries.get(LONG_FILE)!.text, "long\n");
    assert.deepEqual(entries.get("grüße.txt")!.text, "unicode\n");
    assert.deepEqual(entries.get("fifo")!.header.type, "fifo");
  });
});

Deno.test("readTar() reads GNU long names, long links and base-256 numbers", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await makeFixture(`${dir}/src`);
    await Deno.remove(`${dir}/src/fifo`);
    // ids beyond 7 octal digits and times before 1970 force GNU base-256 fields.
    const archive = await tar([
      "--format=gnu",
      "--sort=name",
      "--owner=big:3000000",
      "--group=big:4000000",
      "--mtime=@-1000",
      "-C",
      `${dir}/src`,
      "-cf",
      "-",
      ".",
    ]);
    assert(decoder.decode(archive).includes("././@LongLink"), "the archive uses GNU long names");
    const entries = await readAll(chunked(archive, 4096));
    assert.deepEqual(entries.get(LONG_FILE)!.text, "long\n");
    assert.deepEqual(entries.get("longlink")!.header.linkname, LONG_TARGET);
    const plain = entries.get("plain.txt")!.header;
    assert.deepEqual([plain.uid, plain.gid], [3000000, 4000000]);
    assert.deepEqual(plain.mtime, -1000);
  });
});

/** Turns a one-entry archive made by writeTar into a header of another type flag. */
async function retype(name: string, body: Uint8Array, typeflag: string): Promise<Uint8Array> {
  const archive = await bytesOf(writeTar([{ header: { name }, body }]));
  const entry = archive.slice(0, archive.length - 1024);
  entry[156] = typeflag.charCodeAt(0);
  entry.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += entry[i];
  entry.set(encoder.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return entry;
}

function paxRecords(records: Record<string, string>): Uint8Array {
  let text = "";
  for (const [key, value] of Object.entries(records)) {
    const rest = ` ${key}=${value}\n`;
    let length = rest.length + String(rest.length).length;
    length = rest.length + String(length).length;
    text += `${length}${rest}`;
  }
  return encoder.encode(text);
}

Deno.test("readTar() applies global PAX headers and lets local records override them", async () => {
  const global = await retype(
    "pax_global_header",
    paxRecords({ uname: "everyone", mtime: "123.5", comment: "from g" }),
    "g",
  );
  const local = await retype("PaxHeaders/b", paxRecords({ mtime: "7", path: "renamed-b" }), "x");
  const tail = await bytesOf(writeTar([
    { header: { name: "a", mtime: 1 }, body: encoder.encode("A") },
  ]));
  const b = await bytesOf(
    writeTar([{ header: { name: "b", mtime: 1 }, body: encoder.encode("B") }]),
  );
  const archive = new Uint8Array([
    ...global,
    ...tail.subarray(0, tail.length - 1024),
    ...local,
    ...b,
  ]);
  const entries = await readAll(chunked(archive, 100));
  assert.deepEqual([...entries.keys()], ["a", "renamed-b"]);
  assert.deepEqual(entries.get("a")!.header.mtime, 123.5);
  assert.deepEqual(entries.get("a")!.header.uname, "everyone");
  assert.deepEqual(entries.get("a")!.header.pax.comment, "from g");
  assert.deepEqual(entries.get("renamed-b")!.header.mtime, 7);
  assert.deepEqual(entries.get("renamed-b")!.header.uname, "everyone");
  assert.deepEqual(entries.get("renamed-b")!.text, "B");
});

Deno.test("readTar() gives the same entries for any chunking of its input", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await makeFixture(`${dir}/src`);
    await Deno.writeFile(`${dir}/src/big.bin`, randomBytes(65536 + 7));
    const archive = await tar(["--format=pax", "--sort=name", "-C", `${dir}/src`, "-cf", "-", "."]);
    const summary = async (size: number) => {
      const out: string[] = [];
      for (const [name, read] of await readAll(chunked(archive, size))) {
        out.push(`${name} ${read.header.type} ${read.header.size} ${read.text.length}`);
      }
      return out;
    };
    const whole = await summary(archive.length);
    assert(whole.length >= 12);
    for (const size of [1, 7, 511, 513, 4099]) assert.deepEqual(await summary(size), whole);
  });
});

Deno.test("readTar() skips unread bodies and refuses to read an entry after moving on", async () => {
  const archive = writeTar([
    { header: { name: "one" }, body: encoder.encode("1".repeat(3000)) },
    { header: { name: "two" }, body: encoder.encode("2") },
  ]);
  const bodies: ReadableStream<Uint8Array>[] = [];
  const names: string[] = [];
  for await (const entry of readTar(archive)) {
    names.push(entry.header.name);
    bodies.push(entry.body);
  }
  assert.deepEqual(names, ["one", "two"]);
  await assertRejects(() => bytesOf(bodies[0]), CorruptContentError, "moved on");
});

Deno.test("readTar() rejects a corrupt header and a truncated archive", async () => {
  const archive = await bytesOf(writeTar([{ header: { name: "f" }, body: new Uint8Array(2000) }]));
  const corrupt = archive.slice();
  corrupt[10] ^= 0xff;
  await assertRejects(() => readAll(chunked(corrupt, 512)), CorruptContentError, "checksum");
  await assertRejects(
    () => readAll(chunked(archive.slice(0, 1200), 512)),
    CorruptContentError,
    "unexpected end",
  );
});

Deno.test("readTar() reads the source to its end, past the end-of-archive marker", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a`, "a");
    // GNU tar pads archives to 10 KiB records.
    const archive = await tar(["-C", dir, "-cf", "-", "a"]);
    assert.deepEqual(archive.length, 10240);
    let pulled = 0;
    const counted = chunked(archive, 1000).pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          pulled += chunk.length;
          controller.enqueue(chunk);
        },
      }),
    );
    assert.deepEqual([...(await readAll(counted)).keys()], ["a"]);
    assert.deepEqual(pulled, archive.length);
  });
});

Deno.test("writeTar() output is extracted by GNU tar with names, links, owners, times, xattrs", async () => {
  await withTempDir(async (dir) => {
    const big = randomBytes(3 << 20);
    const entries: TarWriteEntry[] = [
      { header: { name: "dir", type: "directory", mode: 0o750, mtime: 1500000000 } },
      {
        header: {
          name: "dir/file",
          mode: 0o4711,
          uid: 3000000,
          gid: 42,
          mtime: 1500000000.25,
          xattrs: { "user.note": "hello", "user.bin": new Uint8Array([0, 1, 255]) },
        },
        body: encoder.encode("content"),
      },
      { header: { name: LONG_FILE, mtime: 1500000000 }, body: encoder.encode("long") },
      { header: { name: "grüße", mtime: 1500000000 }, body: encoder.encode("ü") },
      { header: { name: "sym", type: "symlink", linkname: LONG_TARGET } },
      { header: { name: "hard", type: "link", linkname: "dir/file" } },
      { header: { name: "fifo", type: "fifo", mode: 0o600 } },
      { header: { name: "big", size: big.length }, body: chunked(big, 100_000) },
    ];
    const archive = await bytesOf(writeTar(entries));
    await Deno.mkdir(`${dir}/out`);
    await tar(["--xattrs", "--xattrs-include=*", "-C", `${dir}/out`, "-xf", "-"], archive);
    const file = await Deno.lstat(`${dir}/out/dir/file`);
    assert.deepEqual((file.mode ?? 0) & 0o7777, 0o4711);
    assert.deepEqual([file.uid, file.gid], [3000000, 42]);
    assert.deepEqual(file.mtime?.getTime(), 1500000000250);
    assert.deepEqual(file.nlink, 2);
    assert.deepEqual(((await Deno.lstat(`${dir}/out/dir`)).mode ?? 0) & 0o777, 0o750);
    assert.deepEqual(await Deno.readTextFile(`${dir}/out/${LONG_FILE}`), "long");
    assert.deepEqual(await Deno.readTextFile(`${dir}/out/grüße`), "ü");
    assert.deepEqual(await Deno.readLink(`${dir}/out/sym`), LONG_TARGET);
    assert((await Deno.lstat(`${dir}/out/fifo`)).isFifo);
    assert.deepEqual(await Deno.readFile(`${dir}/out/big`), big);
    // Re-archived by GNU tar, the xattrs come back: GNU tar restored them from our records.
    const again = await tar([
      "--format=pax",
      "--xattrs",
      "--xattrs-include=*",
      "-C",
      `${dir}/out`,
      "-cf",
      "-",
      "dir/file",
    ]);
    const read = (await readAll(chunked(again, 1 << 20))).get("dir/file")!;
    assert.deepEqual(decoder.decode(read.header.xattrs["user.note"]), "hello");
    assert.deepEqual([...read.header.xattrs["user.bin"]], [0, 1, 255]);
  });
});

Deno.test("writeTar() and readTar() round-trip every entry type and PAX value", async () => {
  const entries: TarWriteEntry[] = [
    { header: { name: "d/", mode: 0o1777, uid: 5, gid: 6, mtime: new Date(1e12) } },
    { header: { name: "d/f", size: 3, mode: 0o2755 }, body: encoder.encode("abc") },
    { header: { name: "c", type: "char-device", devmajor: 1, devminor: 3 } },
    { header: { name: "b", type: "block-device", devmajor: 300, devminor: 4_000_000 } },
    { header: { name: "p", type: "fifo" } },
    { header: { name: "l", type: "link", linkname: "d/f" } },
    { header: { name: "s", type: "symlink", linkname: "/abs/target" } },
    { header: { name: "x".repeat(300), uname: "ü".repeat(40), pax: { comment: "c" } } },
  ];
  const read = await readAll(writeTar(entries));
  assert.deepEqual(read.get("d")!.header.mode, 0o1777);
  assert.deepEqual(read.get("d")!.header.mtime, 1e9);
  assert.deepEqual([read.get("d")!.header.uid, read.get("d")!.header.gid], [5, 6]);
  assert.deepEqual(read.get("d/f")!.text, "abc");
  assert.deepEqual(read.get("d/f")!.header.mode, 0o2755);
  assert.deepEqual(read.get("c")!.header.type, "char-device");
  assert.deepEqual([read.get("c")!.header.devmajor, read.get("c")!.header.devminor], [1, 3]);
  assert.deepEqual([read.get("b")!.header.devmajor, read.get("b")!.header.devminor], [
    300,
    4_000_000,
  ]);
  assert.deepEqual(read.get("p")!.header.type, "fifo");
  assert.deepEqual(read.get("l")!.header.linkname, "d/f");
  assert.deepEqual(read.get("s")!.header.linkname, "/abs/target");
  const long = read.get("x".repeat(300))!.header;
  assert.deepEqual(long.uname, "ü".repeat(40));
  assert.deepEqual(long.pax.comment, "c");
});

Deno.test("writeTar() rejects a body whose length differs from the header size", async () => {
  await assertRejects(
    () =>
      bytesOf(writeTar([{ header: { name: "f", size: 10 }, body: chunked(new Uint8Array(4), 2) }])),
    InvalidArgumentError,
    "body has 4 bytes",
  );
  await assertRejects(
    () =>
      bytesOf(writeTar([{ header: { name: "f", size: 1 }, body: chunked(new Uint8Array(4), 2) }])),
    InvalidArgumentError,
    "longer",
  );
});
