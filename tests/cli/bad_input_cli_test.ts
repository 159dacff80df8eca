/**
 * Bad input as users type it: malformed digests and names, a file where a directory belongs, a
 * file that is not an archive. Each gets one line naming the bad value and the documented exit
 * code, and the store is left as it was.
 */
import assert from "node:assert/strict";
import { distCommandLine, runDist } from "../_helpers/cli.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { withRegistry } from "../_helpers/registry.ts";
import { layerOf, writeImageLayout } from "../_helpers/layout.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { bytesOf } from "../_helpers/bytes.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";

const HOSTILE = "sha256:../../etc/passwd";

/** A store at `DIR/store` holding one image, recorded as `latest`. */
async function withStore(fn: (root: string, dir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    const tar = await bytesOf(writeTar([{
      header: { name: "etc/hello" },
      body: new TextEncoder().encode("hi\n"),
    }]));
    await writeImageLayout(root, [layerOf(tar, "gzip")]);
    await fn(root, dir);
  });
}

/**
 * Names and sizes of the files under `root`: what "the store is unchanged" compares. Lock files
 * are left out: taking a lock creates its (empty) file, which changes nothing the store holds.
 */
async function listing(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, prefix: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path, `${prefix}${entry.name}/`);
      else if (!entry.name.endsWith(".lock")) {
        found.push(`${prefix}${entry.name} ${(await Deno.stat(path)).size}`);
      }
    }
  };
  await walk(root, "");
  return found.sort();
}

/** Asserts one stderr line that contains `text`. */
function assertOneLine(stderr: string, text: string): void {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.ok(lines[0].startsWith("dist: "), stderr);
  assert.ok(lines[0].includes(text), `${JSON.stringify(text)} not in ${stderr}`);
}

Deno.test("dist unpack, export and path refuse a malformed digest with exit 2", async () => {
  await withStore(async (root, dir) => {
    const before = await listing(root);
    for (
      const args of [
        ["unpack", "--root", root, HOSTILE, `${dir}/bundle`],
        ["export", "--root", root, "-o", `${dir}/out.tar`, HOSTILE],
        ["path", "--root", root, HOSTILE],
      ]
    ) {
      const result = await runDist(args);
      assert.equal(result.code, 2, `${args[0]}: ${result.stderr}`);
      assertOneLine(result.stderr, `invalid digest "${HOSTILE}"`);
    }
    assert.deepEqual(await listing(root), before);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["store"]);
  });
});

Deno.test("dist images rm: a name no image can have exits 2, an unknown one 3, neither writes", async () => {
  await withStore(async (root) => {
    const index = `${root}/index.json`;
    const { ino, mtime } = await Deno.stat(index);
    const invalid = await runDist(["images", "rm", "--root", root, "a b"]);
    assert.equal(invalid.code, 2, invalid.stderr);
    assertOneLine(invalid.stderr, 'invalid image name "a b"');
    const unknown = await runDist(["images", "rm", "--root", root, "r/none:v1"]);
    assert.equal(unknown.code, 3, unknown.stderr);
    assertOneLine(unknown.stderr, "image r/none:v1 not found");
    const after = await Deno.stat(index);
    assert.deepEqual([after.ino, after.mtime], [ino, mtime], "index.json was rewritten");
    const listed = await runDist(["images", "-q", "--root", root]);
    assert.equal(listed.stdout, "latest\n");
  });
});

Deno.test("dist unpack into a file or a non-empty rootfs names the directory", async () => {
  await withStore(async (root, dir) => {
    await Deno.writeTextFile(`${dir}/file`, "mine");
    const file = await runDist(["unpack", "--root", root, "latest", `${dir}/file`]);
    assert.equal(file.code, 2, file.stderr);
    assertOneLine(file.stderr, `cannot unpack into ${dir}/file: ${dir}/file is not a directory`);
    assert.equal(await Deno.readTextFile(`${dir}/file`), "mine");

    await Deno.mkdir(`${dir}/full/rootfs`, { recursive: true });
    await Deno.writeTextFile(`${dir}/full/rootfs/mine`, "mine");
    const full = await runDist(["unpack", "--root", root, "latest", `${dir}/full`]);
    assert.equal(full.code, 1, full.stderr);
    assertOneLine(full.stderr, `${dir}/full/rootfs is not empty`);
    assert.deepEqual([...Deno.readDirSync(`${dir}/full/rootfs`)].map((e) => e.name), ["mine"]);
  });
});

Deno.test("a missing argument says how many the command wants", async () => {
  for (
    const [args, want] of [
      [["import"], "want 1, got 0"],
      [["unpack", "latest"], "want 2, got 1"],
      [["abort"], "want at least 1, got 0"],
    ] as const
  ) {
    const result = await runDist([...args]);
    assert.equal(result.code, 2, result.stderr);
    assertOneLine(result.stderr, `missing argument: ${want}`);
    assert.ok(result.stderr.endsWith(` (see dist ${args[0]} --help)\n`), result.stderr);
  }
});

Deno.test("dist fetch-object names a malformed digest object without asking a registry", async () => {
  // 127.0.0.1:9 would refuse a connection: exit 2 proves nothing was sent
  const result = await runDist(["fetch-object", "127.0.0.1:9/app", "sha256:zz"]);
  assert.equal(result.code, 2, result.stderr);
  assertOneLine(result.stderr, 'invalid digest "sha256:zz"');
});

Deno.test("dist import of a file that is no tar, or of a directory, says so and stores nothing", async () => {
  await withStore(async (root, dir) => {
    const before = await listing(root);
    await Deno.writeTextFile(`${dir}/notes.txt`, "these are notes, not an archive\n".repeat(40));
    const text = await runDist(["import", "--root", root, `${dir}/notes.txt`]);
    assert.equal(text.code, 1, text.stderr);
    assertOneLine(text.stderr, "invalid archive: not a tar file");
    const directory = await runDist(["import", "--root", root, dir]);
    assert.equal(directory.code, 2, directory.stderr);
    assertOneLine(directory.stderr, `cannot read ${dir}: it is a directory`);
    const absent = await runDist(["import", "--root", root, `${dir}/absent.tar`]);
    assert.equal(absent.code, 3, absent.stderr); // not found, as a missing image is
    assertOneLine(absent.stderr, `cannot read ${dir}/absent.tar: no such file or directory`);
    assert.deepEqual(await listing(root), before);
  });
});

Deno.test("dist export -o names an output path it cannot write, and writes nothing", async () => {
  await withStore(async (root, dir) => {
    const missing = await runDist(["export", "--root", root, "-o", `${dir}/no/out.tar`, "latest"]);
    assert.equal(missing.code, 1, missing.stderr);
    assertOneLine(missing.stderr, `cannot write ${dir}/no/out.tar: no such file or directory`);
    const onto = await runDist(["export", "--root", root, "-o", dir, "latest"]);
    assert.equal(onto.code, 2, onto.stderr);
    assertOneLine(onto.stderr, `cannot write ${dir}: it is a directory`);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["store"]);
  });
});

Deno.test("dist import reads an OCI layout archived with tar -C DIR . (a ./ root entry)", async () => {
  await withStore(async (root, dir) => {
    const tar = await new Deno.Command("tar", {
      args: ["-C", root, "-cf", `${dir}/layout.tar`, "."],
      stderr: "piped",
    }).output();
    assert.ok(tar.success, new TextDecoder().decode(tar.stderr));
    const result = await runDist(["import", "--root", `${dir}/other`, "-q", `${dir}/layout.tar`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "latest\n");
  });
});

Deno.test("a registry's error message cannot break the line or reach the terminal raw", async () => {
  await withRegistry(async (registry) => {
    const proxy = await startFaultProxy(registry.url);
    try {
      const message = "no such thing\nFAKE: second line\x1b]0;title\x07\x1b[2J";
      // HEAD refused: the client asks with GET, whose error body the registry fills in
      proxy.addRule({ method: "HEAD", path: "/manifests/", status: 405 });
      proxy.addRule({
        method: "GET",
        path: "/manifests/",
        status: 404,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message }] }),
      });
      const result = await runDist(["resolve", `${proxy.host}/app:v1`]);
      assert.equal(result.code, 3, result.stderr);
      assertOneLine(result.stderr, "MANIFEST_UNKNOWN: no such thing\\x0aFAKE: second line\\x1b]0;");
      assert.ok(!result.stderr.includes("\x1b"), result.stderr);
    } finally {
      await proxy.stop();
    }
  });
});

Deno.test("a --root that is a file, or lies below one, is refused in one line naming it", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "not a store\n");
    for (const root of [`${dir}/file`, `${dir}/file/below`]) {
      const result = await runDist(["list", "--root", root]);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, `dist: cannot open the store at ${root}: a file is in the way\n`);
    }
    assert.equal(await Deno.readTextFile(`${dir}/file`), "not a store\n");
  });
});

Deno.test("dist images rm goes on past a missing name, removes the rest and exits 3", async () => {
  await withStore(async (root) => {
    const result = await runDist(["images", "rm", "--root", root, "r/none:v1", "latest"]);
    assert.equal(result.code, 3, result.stderr);
    assertOneLine(result.stderr, "image r/none:v1 not found");
    assert.equal(result.stdout, "removed latest\n");
    const listed = await runDist(["images", "-q", "--root", root]);
    assert.equal(listed.stdout, "");
  });
});

Deno.test("-q with --json is a usage error naming both, for every command that has both", async () => {
  await withStore(async (root, dir) => {
    const before = await listing(root);
    for (
      const args of [
        ["list"],
        ["images"],
        ["import", `${dir}/none.tar`],
        ["unpack", "latest", `${dir}/bundle`],
        // 127.0.0.1:9 refuses connections: exit 2 proves the flags were refused first
        ["fetch", "127.0.0.1:9/app:v1"],
        ["pull", "127.0.0.1:9/app:v1", `${dir}/bundle`],
      ]
    ) {
      const result = await runDist([...args, "-q", "--json", "--root", root]);
      assert.equal(result.code, 2, `${args[0]}: ${result.stderr}`);
      assert.equal(result.stdout, "", args[0]);
      assertOneLine(result.stderr, "-q/--quiet and --json cannot be used together");
    }
    assert.deepEqual(await listing(root), before);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["store"]);
  });
});

Deno.test("usage errors take one line with the help hint; bare dist prints help to stderr", async () => {
  const flag = await runDist(["list", "--x"]);
  assert.equal(flag.code, 2);
  assert.equal(flag.stderr, "dist: unknown flag --x (see dist list --help)\n");
  const command = await runDist(["nosuch"]);
  assert.equal(command.code, 2);
  assert.equal(command.stderr, 'dist: unknown command "nosuch" (see dist --help)\n');

  const bare = await runDist([]);
  assert.equal(bare.code, 2);
  assert.equal(bare.stdout, "");
  assert.match(bare.stderr, /^Usage: dist COMMAND/m);

  const help = await runDist(["help", "list"]);
  assert.equal(help.code, 0, help.stderr);
  assert.equal(help.stdout, (await runDist(["list", "--help"])).stdout);
  assert.match(help.stdout, /^Usage: dist list /m);
  // the fallback after $XDG_DATA_HOME, as content/store/root.ts has it
  assert.match(
    help.stdout,
    /--root DIR .*else \$XDG_DATA_HOME\/dist, else ~\/\.local\/share\/dist\)/,
  );
});

Deno.test("dist says it was stdout it could not write to", async () => {
  await withStore(async (root) => {
    const result = await new Deno.Command("sh", {
      args: ["-c", `${distCommandLine()} list --root '${root}' > /dev/full`],
      stderr: "piped",
    }).output();
    assert.equal(result.code, 1);
    assert.equal(
      new TextDecoder().decode(result.stderr),
      "dist: cannot write to stdout: no space left on device\n",
    );
  });
});
