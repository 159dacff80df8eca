import assert from "node:assert/strict";
import { applyLayer, type ApplyLayerOptions } from "../../content/layers/apply.ts";
import { unpackImage } from "../../content/bundle/unpack.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import { readTar } from "../../content/layers/tar_reader.ts";
import { type TarWriteEntry, writeTar } from "../../content/layers/tar_writer.ts";
import {
  AlreadyExistsError,
  CorruptContentError,
  DigestMismatchError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  UnsafeEntryError,
} from "../../content/errors.ts";
import { digestOf } from "../../content/digest.ts";
import { seededBytes } from "../_helpers/bytes.ts";
import { requireTool, withTempDir } from "../_helpers/temp.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { diffTrees, snapshotTree } from "../_helpers/tree.ts";
import { layerOf, writeImageLayout } from "../_helpers/layout.ts";
import { Store } from "../../content/store/store.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (s: string) => encoder.encode(s);

/** Applies a layer made by our writer; returns the warnings. */
async function apply(
  rootfs: string,
  entries: TarWriteEntry[],
  options: ApplyLayerOptions = {},
): Promise<string[]> {
  const warnings: string[] = [];
  await applyLayer(rootfs, writeTar(entries), {
    onWarning: (message) => warnings.push(message),
    ...options,
  });
  return warnings;
}

/** Runs GNU tar; returns stdout. */
async function tar(args: string[]): Promise<Uint8Array<ArrayBuffer>> {
  await requireTool("tar");
  const result = await new Deno.Command("tar", { args, stdout: "piped", stderr: "piped" }).output();
  if (!result.success) throw new Error(`tar ${args.join(" ")}: ${decoder.decode(result.stderr)}`);
  return result.stdout as Uint8Array<ArrayBuffer>;
}

async function run(command: string, args: string[], options: Deno.CommandOptions = {}) {
  await requireTool(command);
  const result = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...options,
  })
    .output();
  if (!result.success) {
    throw new Error(`${command} ${args.join(" ")}: ${decoder.decode(result.stderr)}`);
  }
  return decoder.decode(result.stdout);
}

/** A tar stream of the whole directory `dir`, made by GNU tar in PAX format with xattrs. */
async function tarOf(dir: string, extra: string[] = []): Promise<ReadableStream<Uint8Array>> {
  const bytes = await tar([
    "--format=pax",
    "--xattrs",
    "--xattrs-include=*",
    "--sort=name",
    ...extra,
    "-C",
    dir,
    "-cf",
    "-",
    ".",
  ]);
  return new Blob([bytes]).stream();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Sets up `tmp/rootfs` and `tmp/outside` (with a `victim` file the hostile layers go after) and
 * checks after `fn` that nothing under `outside` changed.
 */
async function withVictim(
  fn: (rootfs: string, outside: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (tmp) => {
    const rootfs = `${tmp}/rootfs`;
    const outside = `${tmp}/outside`;
    await Deno.mkdir(rootfs);
    await Deno.mkdir(outside);
    await Deno.writeTextFile(`${outside}/victim`, "victim");
    await Deno.chmod(`${outside}/victim`, 0o600);
    await Deno.chmod(outside, 0o700);
    const before = await snapshotTree(outside);
    const beforeInfo = await Deno.lstat(outside);
    await fn(rootfs, outside);
    assert.deepEqual(diffTrees(before, await snapshotTree(outside)), []);
    const afterInfo = await Deno.lstat(outside);
    assert.equal(afterInfo.mode, beforeInfo.mode);
    assert.equal(afterInfo.mtime?.getTime(), beforeInfo.mtime?.getTime());
    assert.equal((await Deno.lstat(`${outside}/victim`)).nlink, 1);
    for await (const entry of Deno.readDir(tmp)) {
      assert.ok(
        ["rootfs", "outside"].includes(entry.name),
        `unexpected ${entry.name} next to rootfs`,
      );
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Entry types and metadata

Deno.test("applyLayer() restores every entry type with modes, owners and mtimes from GNU tar", async () => {
  await withTempDir(async (tmp) => {
    const src = `${tmp}/src`;
    await Deno.mkdir(`${src}/dir/sub`, { recursive: true });
    await Deno.writeTextFile(`${src}/dir/file`, "file");
    await Deno.writeTextFile(`${src}/setuid`, "suid");
    await Deno.chmod(`${src}/setuid`, 0o4755);
    await Deno.writeTextFile(`${src}/setgid`, "sgid");
    await Deno.chmod(`${src}/setgid`, 0o2711);
    await Deno.writeTextFile(`${src}/readonly`, "ro");
    await Deno.chmod(`${src}/readonly`, 0o444);
    await Deno.mkdir(`${src}/sticky`);
    await Deno.chmod(`${src}/sticky`, 0o1777);
    await Deno.chmod(`${src}/dir/sub`, 0o2750);
    await Deno.symlink("dir/file", `${src}/symlink`);
    await Deno.symlink("/nowhere/at/all", `${src}/dangling`);
    await Deno.link(`${src}/dir/file`, `${src}/hardlink`);
    await run("mkfifo", ["-m", "0640", `${src}/fifo`]);
    await run("mknod", ["-m", "0620", `${src}/null`, "c", "1", "3"]);
    await Deno.writeFile(`${src}/big`, new Uint8Array(5 << 20).fill(7));
    await Deno.chown(`${src}/dir/file`, 1234, 5678);
    await Deno.chown(`${src}/sticky`, 42, 43);
    await run("chown", ["-h", "7:8", `${src}/symlink`]);
    await run("touch", ["-h", "-d", "@1400000000", `${src}/symlink`]);
    for (
      const path of ["dir/file", "dir/sub", "dir", "sticky", "setuid", "big", "fifo", "null", "."]
    ) {
      await Deno.utime(`${src}/${path}`, 1500000000, 1500000000 + path.length);
    }
    const rootfs = `${tmp}/rootfs`;
    const result = await applyLayer(rootfs, await tarOf(src));
    assert.equal(result.bytes, 4 + 4 + 4 + 2 + (5 << 20));
    assert.deepEqual(diffTrees(await snapshotTree(src), await snapshotTree(rootfs)), []);
    // The rootfs directory itself took the "./" entry's mode and mtime.
    assert.equal((await Deno.stat(rootfs)).mtime?.getTime(), 1500000001000);
  });
});

Deno.test("applyLayer() restores PAX long names and extended attributes", async () => {
  await withTempDir(async (tmp) => {
    const src = `${tmp}/src`;
    const long = `${"a".repeat(90)}/${"b".repeat(90)}/${"c".repeat(120)}`;
    await Deno.mkdir(`${src}/${long.slice(0, long.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${src}/${long}`, "long");
    await Deno.writeTextFile(`${src}/attrs`, "x");
    const rootfs = `${tmp}/rootfs`;
    await applyLayer(
      rootfs,
      writeTar([
        { header: { name: long }, body: text("long") },
        {
          header: {
            name: "attrs",
            xattrs: { "user.one": "1", "user.bin": new Uint8Array([0, 255]) },
          },
          body: text("x"),
        },
      ]),
    );
    assert.equal(await Deno.readTextFile(`${rootfs}/${long}`), "long");
    // GNU tar reads the attributes back from the unpacked file.
    const again = await tar([
      "--format=pax",
      "--xattrs",
      "--xattrs-include=*",
      "-C",
      rootfs,
      "-cf",
      "-",
      "attrs",
    ]);
    for await (const entry of readTar(new Blob([again]).stream())) {
      assert.equal(decoder.decode(entry.header.xattrs["user.one"]), "1");
      assert.deepEqual([...entry.header.xattrs["user.bin"]], [0, 255]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Whiteouts and replacements

Deno.test("applyLayer() whiteouts remove files, trees and symlinks of lower layers only", async () => {
  await withTempDir(async (rootfs) => {
    await apply(rootfs, [
      { header: { name: "a/file" }, body: text("f") },
      { header: { name: "a/dir/deep/x" }, body: text("x") },
      { header: { name: "a/link", type: "symlink", linkname: "/etc/passwd" } },
      { header: { name: "a/keep" }, body: text("k") },
    ]);
    await apply(rootfs, [
      { header: { name: "a/.wh.file" } },
      { header: { name: "a/.wh.dir" } },
      { header: { name: "a/.wh.link" } },
      { header: { name: "a/.wh.missing" } },
      { header: { name: "gone/.wh.x" } },
      { header: { name: "new" }, body: text("n") },
      { header: { name: ".wh.new" } }, // same layer: does not hide "new"
      { header: { name: ".wh.later" } }, // hides nothing, then "later" is created
      { header: { name: "later" }, body: text("l") },
    ]);
    const tree = await snapshotTree(rootfs);
    assert.deepEqual([...tree.keys()], ["a", "a/keep", "later", "new"]);
    assert.ok(await exists("/etc/passwd"));
  });
});

Deno.test("applyLayer() opaque directories hide lower contents and keep this layer's entries", async () => {
  await withTempDir(async (rootfs) => {
    await apply(rootfs, [
      { header: { name: "o/old" }, body: text("old") },
      { header: { name: "o/sub/old2" }, body: text("old2") },
      { header: { name: "o/sub/lowerdir/", type: "directory" } },
      { header: { name: "o/early" }, body: text("lower early") },
      { header: { name: "other/x" }, body: text("x") },
    ]);
    await apply(rootfs, [
      { header: { name: "o/", type: "directory", mode: 0o711 } },
      { header: { name: "o/early" }, body: text("early") }, // before the marker: kept
      { header: { name: "o/sub/new" }, body: text("new") }, // no entry for o/sub itself
      { header: { name: "o/.wh..wh..opq" } },
      { header: { name: "o/late" }, body: text("late") },
    ]);
    const tree = await snapshotTree(rootfs);
    assert.deepEqual([...tree.keys()], [
      "o",
      "o/early",
      "o/late",
      "o/sub",
      "o/sub/new",
      "other",
      "other/x",
    ]);
    assert.equal(await Deno.readTextFile(`${rootfs}/o/early`), "early");
    assert.equal(tree.get("o")!.mode, 0o711);
  });
});

Deno.test("applyLayer() replaces directories with files and the reverse, and merges directories", async () => {
  await withTempDir(async (rootfs) => {
    await apply(rootfs, [
      { header: { name: "d1/child" }, body: text("c") },
      { header: { name: "f1" }, body: text("f1") },
      { header: { name: "s1", type: "symlink", linkname: "d2" } },
      { header: { name: "d2/x" }, body: text("x") },
      { header: { name: "f2" }, body: text("f2") },
      { header: { name: "f3" }, body: text("f3") },
      { header: { name: "target" }, body: text("t") },
    ]);
    await apply(rootfs, [
      { header: { name: "d1" }, body: text("now a file") },
      { header: { name: "f1/", type: "directory" } },
      { header: { name: "f1/inside" }, body: text("i") },
      { header: { name: "s1/", type: "directory" } },
      { header: { name: "d2/", type: "directory", mode: 0o700 } },
      { header: { name: "d2/y" }, body: text("y") },
      { header: { name: "f2", type: "symlink", linkname: "target" } },
      { header: { name: "f3", type: "link", linkname: "target" } },
    ]);
    const tree = await snapshotTree(rootfs);
    assert.equal(tree.get("d1")!.type, "file");
    assert.equal(await Deno.readTextFile(`${rootfs}/d1`), "now a file");
    assert.equal(tree.get("f1")!.type, "dir");
    assert.equal(await Deno.readTextFile(`${rootfs}/f1/inside`), "i");
    assert.equal(tree.get("s1")!.type, "dir");
    assert.deepEqual([tree.get("d2")!.mode, tree.has("d2/x"), tree.has("d2/y")], [
      0o700,
      true,
      true,
    ]);
    assert.equal(tree.get("f2")!.target, "target");
    assert.equal(tree.get("f3")!.linkGroup, tree.get("target")!.linkGroup);
  });
});

Deno.test("applyLayer() hardlinks share inodes across layers and symlinks keep their target", async () => {
  await withTempDir(async (rootfs) => {
    await apply(rootfs, [
      { header: { name: "lower" }, body: text("lower") },
      { header: { name: "sym", type: "symlink", linkname: "../../../../etc/shadow" } },
    ]);
    await apply(rootfs, [
      { header: { name: "dir/hl", type: "link", linkname: "lower" } },
      { header: { name: "dir/hl-abs", type: "link", linkname: "/lower" } },
      { header: { name: "hl-sym", type: "link", linkname: "sym" } },
      { header: { name: "self", type: "link", linkname: "lower" } },
      { header: { name: "self", type: "link", linkname: "self" } }, // a no-op, not a loss
    ]);
    const tree = await snapshotTree(rootfs);
    const group = tree.get("lower")!.linkGroup;
    assert.equal(tree.get("dir/hl")!.linkGroup, group);
    assert.equal(tree.get("dir/hl-abs")!.linkGroup, group);
    assert.equal(tree.get("self")!.linkGroup, group);
    assert.equal((await Deno.lstat(`${rootfs}/lower`)).nlink, 4);
    // A hardlink to a symlink is another name of the symlink, not of its target.
    assert.equal(tree.get("hl-sym")!.type, "symlink");
    assert.equal(tree.get("sym")!.target, "../../../../etc/shadow");
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile layers

Deno.test("applyLayer() refuses names with .. and touches nothing outside", async () => {
  await withVictim(async (rootfs) => {
    for (const name of ["../escape", "a/../../escape", "a/b/../../../outside/victim", ".."]) {
      const error = await assertRejects(
        () => apply(rootfs, [{ header: { name }, body: text("pwned") }]),
        UnsafeEntryError,
        JSON.stringify(name),
      );
      assert.match(error.message, /\.\./);
    }
    await assertRejects(
      () => apply(rootfs, [{ header: { name: "../outside/", type: "directory", mode: 0o777 } }]),
      UnsafeEntryError,
      "../outside/",
    );
  });
});

Deno.test("applyLayer() unpacks absolute names inside the rootfs", async () => {
  await withVictim(async (rootfs, outside) => {
    const warnings = await apply(rootfs, [
      { header: { name: `${outside}/victim` }, body: text("pwned") },
      { header: { name: "/abs-dir/", type: "directory" } },
      { header: { name: "/abs-dir/link", type: "link", linkname: `${outside}/victim` } },
    ]);
    assert.equal(await Deno.readTextFile(`${rootfs}${outside}/victim`), "pwned");
    assert.equal((await Deno.lstat(`${rootfs}/abs-dir/link`)).nlink, 2);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /absolute/);
  });
});

Deno.test("applyLayer() refuses entries under a symlink laid down by the same layer", async () => {
  await withVictim(async (rootfs, outside) => {
    const cases: [string, TarWriteEntry[]][] = [
      ["evil/victim", [{ header: { name: "evil", type: "symlink", linkname: outside } }]],
      ["rel/outside/victim", [{ header: { name: "rel", type: "symlink", linkname: "../.." } }]],
      // a directory first, then replaced by a symlink, then written through
      ["d/victim", [
        { header: { name: "d/", type: "directory" } },
        { header: { name: "d", type: "symlink", linkname: outside } },
      ]],
      // the symlink pointing inside the rootfs is refused as well
      ["in/x", [
        { header: { name: "real/", type: "directory" } },
        { header: { name: "in", type: "symlink", linkname: "real" } },
      ]],
    ];
    for (const [name, before] of cases) {
      await assertRejects(
        () => apply(rootfs, [...before, { header: { name, mode: 0o777 }, body: text("pwned") }]),
        UnsafeEntryError,
        `${JSON.stringify(name)}: its parent`,
      );
    }
    await assertRejects(
      () => apply(rootfs, [{ header: { name: "evil/sub/", type: "directory", mode: 0o777 } }]),
      UnsafeEntryError,
      "symlink",
    );
  });
});

Deno.test("applyLayer() refuses entries under a symlink from an earlier layer", async () => {
  await withVictim(async (rootfs, outside) => {
    await apply(rootfs, [
      { header: { name: "evil", type: "symlink", linkname: outside } },
      { header: { name: "usr/", type: "directory" } },
      { header: { name: "usr/lib", type: "symlink", linkname: "../../outside" } },
    ]);
    for (const name of ["evil/victim", "usr/lib/victim", "evil/new-file"]) {
      await assertRejects(
        () => apply(rootfs, [{ header: { name }, body: text("pwned") }]),
        UnsafeEntryError,
        JSON.stringify(name),
      );
    }
    await assertRejects(
      () => apply(rootfs, [{ header: { name: "usr/lib/x", type: "symlink", linkname: "/" } }]),
      UnsafeEntryError,
      "usr/lib",
    );
  });
});

Deno.test("applyLayer() refuses hardlinks to targets outside the rootfs", async () => {
  await withVictim(async (rootfs, outside) => {
    await apply(rootfs, [{ header: { name: "evil", type: "symlink", linkname: outside } }]);
    const cases = [
      ["../outside/victim", UnsafeEntryError],
      ["evil/victim", UnsafeEntryError],
      [`${outside}/victim`, Error], // taken inside the rootfs, where it does not exist
    ] as const;
    for (const [linkname, type] of cases) {
      await assertRejects(
        () => apply(rootfs, [{ header: { name: "hl", type: "link", linkname } }]),
        type,
        '"hl"',
      );
    }
    assert.equal(await exists(`${rootfs}/hl`), false);
  });
});

Deno.test("applyLayer() refuses whiteouts that point outside the rootfs", async () => {
  await withVictim(async (rootfs, outside) => {
    await apply(rootfs, [{ header: { name: "evil", type: "symlink", linkname: outside } }]);
    for (const name of ["evil/.wh.victim", "../outside/.wh.victim", ".wh..", "evil/.wh..wh..opq"]) {
      await assertRejects(
        () => apply(rootfs, [{ header: { name } }]),
        UnsafeEntryError,
        JSON.stringify(name),
      );
    }
    assert.equal((await Deno.lstat(`${rootfs}/evil`)).isSymlink, true);
  });
});

Deno.test("applyLayer() replaces a symlink at an entry's own path instead of following it", async () => {
  await withVictim(async (rootfs, outside) => {
    await apply(rootfs, [
      { header: { name: "file-link", type: "symlink", linkname: `${outside}/victim` } },
      { header: { name: "dir-link", type: "symlink", linkname: outside } },
      { header: { name: "node-link", type: "symlink", linkname: `${outside}/victim` } },
    ]);
    await apply(rootfs, [
      { header: { name: "file-link", mode: 0o777, uid: 99 }, body: text("mine") },
      { header: { name: "dir-link/", type: "directory", mode: 0o777, mtime: 5 } },
      { header: { name: "node-link", type: "fifo", mode: 0o777 } },
    ]);
    const tree = await snapshotTree(rootfs);
    assert.equal(tree.get("file-link")!.type, "file");
    assert.equal(tree.get("dir-link")!.type, "dir");
    assert.equal(tree.get("dir-link")!.mode, 0o777);
    assert.equal(tree.get("node-link")!.type, "fifo");
  });
});

// ---------------------------------------------------------------------------------------------
// Without root

/** Runs a Deno script as user nobody (uid 65534) and returns its stdout. */
async function runAsNobody(dir: string, script: string): Promise<string> {
  await requireTool("setpriv");
  // nobody cannot reach Deno under /root: give it a hardlink of the binary in `dir`.
  const deno = `${dir}/deno`;
  const binary = await Deno.realPath(Deno.execPath());
  await Deno.link(binary, deno).catch(() => Deno.copyFile(binary, deno)); // copy across devices
  await Deno.writeTextFile(`${dir}/script.ts`, script);
  await Deno.mkdir(`${dir}/home`);
  await Deno.chown(`${dir}/home`, 65534, 65534);
  await Deno.chmod(dir, 0o755);
  try {
    return await run("setpriv", [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "--inh-caps=-all",
      deno,
      "run",
      "-A",
      "--quiet",
      "--no-lock",
      `${dir}/script.ts`,
    ], {
      env: { HOME: `${dir}/home`, DENO_DIR: `${dir}/home/deno`, NO_COLOR: "1" },
      cwd: `${dir}/home`,
    });
  } finally {
    await Deno.remove(deno);
  }
}

Deno.test("applyLayer() without root unpacks read-only directories and skips device nodes", async () => {
  await withTempDir(async (tmp) => {
    const rootfs = `${tmp}/home/rootfs`;
    const unpack = new URL("../../content/layers/apply.ts", import.meta.url).href;
    const tarModule = new URL("../../content/layers/tar_writer.ts", import.meta.url).href;
    const output = await runAsNobody(
      tmp,
      `import { applyLayer } from ${JSON.stringify(unpack)};
import { writeTar } from ${JSON.stringify(tarModule)};
const t = (s: string) => new TextEncoder().encode(s);
const warnings: string[] = [];
const onWarning = (m: string) => warnings.push(m);
const rootfs = ${JSON.stringify(rootfs)};
await applyLayer(rootfs, writeTar([
  { header: { name: "ro/", type: "directory", mode: 0o555 } },
  { header: { name: "ro/sub/", type: "directory", mode: 0o500 } },
  { header: { name: "ro/sub/file", mode: 0o400 }, body: t("one") },
  { header: { name: "ro/old", mode: 0o444 }, body: t("old") },
  { header: { name: "none/", type: "directory", mode: 0o000 } },
  { header: { name: "none/inside" }, body: t("in") },
  { header: { name: "dev/null", type: "char-device", devmajor: 1, devminor: 3 } },
  { header: { name: "fifo", type: "fifo", mode: 0o600 } },
]), { onWarning });
// A second layer adds to, replaces in and whites out from the read-only directories.
await applyLayer(rootfs, writeTar([
  { header: { name: "ro/sub/two" }, body: t("two") },
  { header: { name: "ro/.wh.old" } },
  { header: { name: "none/inside", mode: 0o400 }, body: t("replaced") },
]), { onWarning });
console.log(JSON.stringify({ uid: Deno.uid(), warnings }));
`,
    );
    const result = JSON.parse(output);
    assert.equal(result.uid, 65534);
    assert.equal(result.warnings.length, 1);
    assert.match(result.warnings[0], /dev\/null.*not running as root/);
    const tree = await snapshotTree(rootfs);
    assert.deepEqual([...tree.keys()], [
      "dev",
      "fifo",
      "none",
      "none/inside",
      "ro",
      "ro/sub",
      "ro/sub/file",
      "ro/sub/two",
    ]);
    assert.equal(tree.get("ro")!.mode, 0o555);
    assert.equal(tree.get("ro/sub")!.mode, 0o500);
    assert.equal(tree.get("none")!.mode, 0o000);
    assert.equal(tree.get("ro/sub/file")!.mode, 0o400);
    assert.equal(tree.get("fifo")!.type, "fifo");
    assert.equal(await Deno.readTextFile(`${rootfs}/none/inside`), "replaced");
    assert.equal(tree.get("none/inside")!.uid, 65534);
  });
});

// ---------------------------------------------------------------------------------------------
// Whole images

Deno.test("unpackImage() applies gzip, zstd and plain layers in order and writes config.json", async () => {
  await withTempDir(async (tmp) => {
    const layout = `${tmp}/layout`;
    const layers = [
      layerOf(
        await collectTar([{
          header: { name: "etc/passwd" },
          body: text("root:x:0:0::/root:/bin/sh\n"),
        }, { header: { name: "a" }, body: text("1") }]),
        "gzip",
      ),
      layerOf(
        await collectTar([{ header: { name: "a" }, body: text("2") }, {
          header: { name: "b" },
          body: text("b"),
        }]),
        "zstd",
      ),
      layerOf(
        await collectTar([{ header: { name: ".wh.b" } }, {
          header: { name: "c", type: "symlink", linkname: "a" },
        }]),
        "none",
      ),
    ];
    const image = await writeImageLayout(layout, layers, { runtime: { Cmd: ["/bin/true"] } });
    const progress: string[] = [];
    const result = await unpackImage(await Store.open(layout), image.manifest, `${tmp}/bundle`, {
      onProgress: (event) => progress.push(`${event.layer}:${event.status}`),
    });
    assert.equal(result.layers, 3);
    assert.equal(result.rootfs, `${tmp}/bundle/rootfs`);
    assert.deepEqual(progress, [
      "0:unpacking",
      "0:unpacked",
      "1:unpacking",
      "1:unpacked",
      "2:unpacking",
      "2:unpacked",
    ]);
    assert.deepEqual([...(await snapshotTree(result.rootfs)).keys()], [
      "a",
      "c",
      "etc",
      "etc/passwd",
    ]);
    assert.equal(await Deno.readTextFile(`${result.rootfs}/a`), "2");
    const spec = JSON.parse(await Deno.readTextFile(`${tmp}/bundle/config.json`));
    assert.deepEqual(spec.process.args, ["/bin/true"]);
    assert.equal(spec.root.path, "rootfs");
  });
});

async function collectTar(entries: TarWriteEntry[]): Promise<Uint8Array> {
  return new Uint8Array(await new Response(writeTar(entries)).arrayBuffer());
}

Deno.test("unpackImage() rejects a layer whose content does not match its diff_id and cleans up", async () => {
  await withTempDir(async (tmp) => {
    const layer = layerOf(await collectTar([{ header: { name: "f" }, body: text("f") }]), "gzip");
    const wrong = "sha256:" + "0".repeat(64);
    const image = await writeImageLayout(`${tmp}/layout`, [layer], { diffIds: [wrong] });
    const store = await Store.open(`${tmp}/layout`);
    const error = await assertRejects(
      () => unpackImage(store, image.manifest, `${tmp}/bundle`),
      DigestMismatchError,
      "layer 1/1",
    );
    assert.ok(error.message.includes(wrong) && error.message.includes(layer.diffId));
    assert.ok(error.message.includes("uncompressed digest mismatch"), error.message);
    // The half-unpacked bundle this call created is removed again, config.json never written.
    assert.equal(await exists(`${tmp}/bundle`), false);
    // A bundle directory the caller made stays as it was: the empty rootfs gets no entry of
    // the layer that failed its check.
    await Deno.mkdir(`${tmp}/mine/rootfs`, { recursive: true });
    await assertRejects(
      () => unpackImage(store, image.manifest, `${tmp}/mine`),
      DigestMismatchError,
    );
    assert.deepEqual([...Deno.readDirSync(`${tmp}/mine`)].map((e) => e.name), ["rootfs"]);
    assert.deepEqual([...Deno.readDirSync(`${tmp}/mine/rootfs`)], []);
  });
});

Deno.test("unpackImage() refuses a non-empty rootfs, an existing config.json and an image index", async () => {
  await withTempDir(async (tmp) => {
    const layer = layerOf(await collectTar([{ header: { name: "f" }, body: text("f") }]), "none");
    const image = await writeImageLayout(`${tmp}/layout`, [layer]);
    await Deno.mkdir(`${tmp}/bundle/rootfs`, { recursive: true });
    await Deno.writeTextFile(`${tmp}/bundle/rootfs/mine`, "keep");
    const store = await Store.open(`${tmp}/layout`);
    await assertRejects(
      () => unpackImage(store, image.manifest, `${tmp}/bundle`),
      AlreadyExistsError,
      "not empty",
    );
    assert.equal(await Deno.readTextFile(`${tmp}/bundle/rootfs/mine`), "keep");
    await Deno.mkdir(`${tmp}/configured`);
    await Deno.writeTextFile(`${tmp}/configured/config.json`, "mine");
    await assertRejects(
      () => unpackImage(store, image.manifest, `${tmp}/configured`),
      AlreadyExistsError,
      "config.json exists",
    );
    assert.equal(await Deno.readTextFile(`${tmp}/configured/config.json`), "mine");
    assert.equal(await exists(`${tmp}/configured/rootfs`), false);
    await assertRejects(
      () => unpackImage(store, image.manifest, ""), // not "/": no bundle at the host's root
      InvalidArgumentError,
      'invalid bundle directory ""',
    );
    const index = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [],
    }));
    const indexDigest = digestOf(index);
    await writeBlob(store, `index-${indexDigest}`, [index], {
      digest: indexDigest,
      size: index.length,
    });
    await assertRejects(
      () => unpackImage(store, indexDigest, `${tmp}/other`),
      InvalidArgumentError,
      "image index",
    );
  });
});

Deno.test("unpackImage() refuses a bundle another unpack holds and clears a killed one's leftovers", async () => {
  await withTempDir(async (tmp) => {
    const layer = layerOf(await collectTar([{ header: { name: "f" }, body: text("f") }]), "none");
    const image = await writeImageLayout(`${tmp}/layout`, [layer]);
    const store = await Store.open(`${tmp}/layout`);
    await Deno.mkdir(`${tmp}/bundle/.rootfs.partial/half`, { recursive: true }); // a killed unpack
    const other = await Deno.open(`${tmp}/bundle`, { read: true });
    try {
      assert.ok(await other.tryLock(true));
      await assertRejects(
        () => unpackImage(store, image.manifest, `${tmp}/bundle`),
        LockedError,
        "another unpack into it is running",
      );
      assert.equal(await exists(`${tmp}/bundle/.rootfs.partial/half`), true, "not its leftovers");
    } finally {
      other.close();
    }
    await unpackImage(store, image.manifest, `${tmp}/bundle`);
    const names = [...Deno.readDirSync(`${tmp}/bundle`)].map((e) => e.name).sort();
    assert.deepEqual(names, ["config.json", "rootfs"]);
    assert.deepEqual([...Deno.readDirSync(`${tmp}/bundle/rootfs`)].map((e) => e.name), ["f"]);
  });
});

Deno.test("unpackImage() fills an empty rootfs in place, through a symlink too", async () => {
  await withTempDir(async (tmp) => {
    const layer = layerOf(await collectTar([{ header: { name: "f" }, body: text("f") }]), "none");
    const image = await writeImageLayout(`${tmp}/layout`, [layer]);
    const store = await Store.open(`${tmp}/layout`);
    // a prepared rootfs (a mount point, say) keeps its inode: it is filled, not replaced
    await Deno.mkdir(`${tmp}/elsewhere`);
    await Deno.mkdir(`${tmp}/bundle`);
    await Deno.symlink(`${tmp}/elsewhere`, `${tmp}/bundle/rootfs`);
    const inode = (await Deno.stat(`${tmp}/elsewhere`)).ino;
    await unpackImage(store, image.manifest, `${tmp}/bundle`);
    assert.equal(await Deno.readTextFile(`${tmp}/elsewhere/f`), "f");
    assert.equal((await Deno.stat(`${tmp}/bundle/rootfs`)).ino, inode);
    assert.equal((await Deno.lstat(`${tmp}/bundle/rootfs`)).isSymlink, true);
  });
});

Deno.test("unpackImage() names a layer that is missing from the store", async () => {
  await withTempDir(async (tmp) => {
    const layers = [
      layerOf(await collectTar([{ header: { name: "a" }, body: text("a") }]), "gzip"),
      layerOf(await collectTar([{ header: { name: "b" }, body: text("b") }]), "gzip"),
    ];
    const image = await writeImageLayout(`${tmp}/layout`, layers);
    const missing = digestOf(layers[1].bytes);
    await Deno.remove(`${tmp}/layout/blobs/sha256/${missing.slice(7)}`);
    const store = await Store.open(`${tmp}/layout`);
    await assertRejects(
      () => unpackImage(store, image.manifest, `${tmp}/bundle`),
      NotFoundError,
      `layer 2/2 ${missing}`,
    );
    assert.equal(await exists(`${tmp}/bundle/rootfs`), false);
  });
});

// ---------------------------------------------------------------------------------------------
// Parity with umoci

/** Builds the second layer of the parity image: whiteouts, links and replacements on top of /usr, /etc. */
async function parityUpperLayer(dir: string): Promise<void> {
  const mk = (path: string) => Deno.mkdir(`${dir}/${path}`, { recursive: true });
  await mk("etc/default");
  await Deno.writeTextFile(`${dir}/etc/.wh.hostname`, "");
  await Deno.writeTextFile(`${dir}/etc/.wh.apt`, ""); // a whole directory
  await Deno.writeTextFile(`${dir}/etc/default/.wh..wh..opq`, ""); // opaque
  await Deno.writeTextFile(`${dir}/etc/default/only-this`, "new default");
  await mk("usr/share/zoneinfo");
  await Deno.writeTextFile(`${dir}/usr/share/zoneinfo/.wh.Europe`, "");
  await Deno.writeTextFile(`${dir}/usr/share/zoneinfo/UTC`, "file over a lower symlink");
  await mk("usr/sbin/adduser"); // a directory where a file was
  await Deno.writeTextFile(`${dir}/usr/sbin/adduser/inside`, "dir over a lower file");
  await Deno.writeTextFile(`${dir}/usr/sbin/ldconfig`, "changed ldconfig");
  await Deno.link(`${dir}/usr/sbin/ldconfig`, `${dir}/usr/sbin/ldconfig.hardlink`);
  await Deno.link(`${dir}/usr/sbin/ldconfig`, `${dir}/etc/default/ldconfig.hardlink`);
  await mk("data/shared");
  await Deno.chmod(`${dir}/data/shared`, 0o2775);
  await Deno.writeTextFile(`${dir}/data/shared/owned`, "owned");
  await Deno.chown(`${dir}/data/shared/owned`, 1000, 1000);
  await Deno.chown(`${dir}/data/shared`, 1000, 100);
  await run("mkfifo", [`${dir}/data/fifo`]);
  await Deno.symlink("../etc/default/only-this", `${dir}/data/link`);
}

Deno.test("unpackImage() produces the same tree as umoci unpack for real-world contents", async () => {
  await requireTool("umoci");
  await withTempDir(async (tmp) => {
    // Layer 1: parts of this machine's /usr and /etc (binaries, libraries' symlinks, setuid
    // programs, a symlink farm in zoneinfo), as GNU tar archives them.
    const real = [
      "usr/sbin",
      "usr/share/zoneinfo",
      "etc",
      "usr/bin/passwd",
      "usr/bin/su",
      "usr/bin/chfn",
      "usr/bin/newgrp",
    ].filter((path) => {
      try {
        Deno.lstatSync(`/${path}`);
        return true;
      } catch {
        return false;
      }
    });
    const lower = await tar([
      "--format=pax",
      "--xattrs",
      "--sort=name",
      "--ignore-failed-read",
      "--warning=none",
      "-C",
      "/",
      "-cf",
      "-",
      // the parents themselves, so that their metadata comes from the archive too
      "--no-recursion",
      "usr",
      "usr/bin",
      "usr/share",
      "--recursion",
      ...real,
    ]);
    const upperDir = `${tmp}/upper`;
    await parityUpperLayer(upperDir);
    const upper = await tar(["--format=pax", "--sort=name", "-C", upperDir, "-cf", "-", "."]);
    const layout = `${tmp}/layout`;
    const image = await writeImageLayout(layout, [layerOf(lower, "gzip"), layerOf(upper, "none")], {
      runtime: { Cmd: ["/bin/sh"] },
      tag: "parity",
    });
    await run("umoci", ["unpack", "--image", `${layout}:parity`, `${tmp}/umoci`]);
    await unpackImage(await Store.open(layout), image.manifest, `${tmp}/dist`);
    const expected = await snapshotTree(`${tmp}/umoci/rootfs`);
    const actual = await snapshotTree(`${tmp}/dist/rootfs`);
    assert.ok(expected.size > 1000, `umoci unpacked only ${expected.size} paths`);
    assert.ok(expected.has("usr/sbin/adduser/inside") && !expected.has("etc/hostname"));
    assert.deepEqual(diffTrees(expected, actual), []);
  });
});

Deno.test("unpackImage() reads large gzip and plain layers whole: files across every buffer boundary, multi-member gzip, sniffed types", async () => {
  await withTempDir(async (tmp) => {
    // sizes around the 256 KiB output and 1 MiB input buffers, and many small files between them
    const sizes = [0, 1, 511, 512, 513, 262_143, 262_144, 262_145, 1_048_575, 1_048_577, 3_000_001];
    const files = new Map<string, Uint8Array>();
    sizes.forEach((size, i) => files.set(`big/${i}`, seededBytes(size, i + 1)));
    for (let i = 0; i < 300; i++) files.set(`small/${i}`, seededBytes(i * 37, 1000 + i));
    const tar = await collectTar(
      [...files].map(([name, body]) => ({ header: { name }, body })),
    );
    const gzip = layerOf(tar, "gzip");
    // the same tar as two gzip members, cut at an odd place, as `cat a.gz b.gz` makes
    const cut = 700_001;
    const members = layerOf(tar, "gzip");
    members.bytes = new Uint8Array([
      ...layerOf(tar.subarray(0, cut), "gzip").bytes,
      ...layerOf(tar.subarray(cut), "gzip").bytes,
    ]);
    // a media type that says nothing: the magic bytes decide
    const sniffed = { ...layerOf(tar, "gzip"), mediaType: "application/octet-stream" };
    const plain = layerOf(tar, "none");
    // zeros after the gzip data, which gzip and Node ignore
    const padded = layerOf(tar, "gzip");
    padded.bytes = new Uint8Array([...padded.bytes, ...new Uint8Array(2_000_000)]);
    for (const [name, layer] of Object.entries({ gzip, members, sniffed, plain, padded })) {
      const layout = `${tmp}/${name}`;
      const image = await writeImageLayout(layout, [layer]);
      const { rootfs } = await unpackImage(
        await Store.open(layout),
        image.manifest,
        `${tmp}/b-${name}`,
      );
      for (const [path, body] of files) {
        assert.deepEqual(await Deno.readFile(`${rootfs}/${path}`), body, `${name}: ${path}`);
      }
    }
  });
});

Deno.test("unpackImage() names a truncated gzip layer and gzip data with garbage after it", async () => {
  await withTempDir(async (tmp) => {
    const tar = await collectTar([{ header: { name: "a" }, body: seededBytes(400_000, 3) }]);
    const whole = layerOf(tar, "gzip");
    const cases: [string, Uint8Array<ArrayBuffer>, string][] = [
      ["truncated", whole.bytes.slice(0, whole.bytes.length - 100), "unexpected end of file"],
      ["garbage", new Uint8Array([...whole.bytes, 1, 2, 3]), "cannot decompress gzip data"],
      ["zeros, then garbage", new Uint8Array([...whole.bytes, 0, 0, 7]), "data after its end"],
    ];
    for (const [name, bytes, message] of cases) {
      const layout = `${tmp}/${name}`;
      const image = await writeImageLayout(layout, [{ ...whole, bytes }]);
      await assertRejects(
        async () => unpackImage(await Store.open(layout), image.manifest, `${tmp}/b-${name}`),
        CorruptContentError,
        message,
      );
      assert.equal(
        await Deno.lstat(`${tmp}/b-${name}/rootfs`).then(() => true, () => false),
        false,
      );
    }
  });
});

Deno.test("unpackImage() refuses a layer whose bytes are not what its media type says", async () => {
  await withTempDir(async (tmp) => {
    const tar = await collectTar([{ header: { name: "a" }, body: text("a") }]);
    const gzipBytes = layerOf(tar, "gzip");
    const layout = `${tmp}/layout`;
    const image = await writeImageLayout(layout, [
      { ...gzipBytes, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd" },
    ]);
    await assertRejects(
      async () => unpackImage(await Store.open(layout), image.manifest, `${tmp}/bundle`),
      CorruptContentError,
      "zstd",
    );
  });
});
