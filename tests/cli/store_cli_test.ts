/**
 * The store commands as a user runs them: `dist ingest`, `active`, `list`, `path`, `delete`,
 * `abort` and `prune`, spawned as processes with stdin, stdout, stderr and exit codes checked.
 */
import assert from "node:assert/strict";
import { Store } from "../../content/store/store.ts";
import { digestOf } from "../../content/digest.ts";
import { type Descriptor, MediaType } from "../../content/descriptor.ts";
import { Images } from "../../content/images/records.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import { distCommandLine, runDist, spawnDist } from "../_helpers/cli.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { seededBytes } from "../_helpers/bytes.ts";

function ingestArgs(root: string, bytes: Uint8Array, ref: string): string[] {
  return [
    "ingest",
    "--root",
    root,
    "--expected-digest",
    digestOf(bytes),
    "--expected-size",
    String(bytes.length),
    ref,
  ];
}

async function listDigests(root: string): Promise<string[]> {
  const result = await runDist(["list", "-q", "--root", root]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.split("\n").filter((line) => line !== "");
}

/** Commits `bytes` to the store at `root` and returns its descriptor. */
async function putBlob(root: string, mediaType: string, bytes: Uint8Array): Promise<Descriptor> {
  const digest = digestOf(bytes);
  await writeBlob(await Store.open(root), `blob-${digest}`, [bytes], {
    digest,
    size: bytes.length,
  });
  return { mediaType, digest, size: bytes.length };
}

/** A one-layer image (manifest, config, layer) written into the store and recorded as `name`. */
async function recordImage(root: string, name: string) {
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const config = await putBlob(
    root,
    MediaType.ociConfig,
    json({ os: "linux", architecture: "amd64", name }),
  );
  const layer = await putBlob(root, MediaType.ociLayerGzip, seededBytes(100, name.length));
  const manifest = await putBlob(
    root,
    MediaType.ociManifest,
    json({ schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] }),
  );
  await new Images(root).put(name, manifest);
  return { manifest, config, layer };
}

/** Polls `check` until it returns true (or fails after a few seconds). */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts `dist ingest` and feeds it `head`, keeping stdin open; resolves once data arrived. */
async function startIngest(root: string, bytes: Uint8Array, ref: string, head: number) {
  const child = spawnDist(ingestArgs(root, bytes, ref));
  const stdin = child.stdin.getWriter();
  await stdin.write(bytes.subarray(0, head));
  const store = await Store.open(root);
  await until("the ingest to show data", async () => {
    const status = await store.status(ref).catch(() => undefined);
    return status !== undefined && status.offset > 0;
  });
  return { child, stdin, store };
}

Deno.test("dist ingest stores stdin; list, path and active show the result", async () => {
  await withTempDir(async (root) => {
    const bytes = seededBytes(3 << 20);
    const digest = digestOf(bytes);
    const result = await runDist(ingestArgs(root, bytes, "layer-one"), { stdin: bytes });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "");
    assert.deepEqual(await listDigests(root), [digest]);
    assert.deepEqual(await Deno.readFile(`${root}/blobs/sha256/${digest.slice(7)}`), bytes);

    const table = await runDist(["ls", "--root", root]);
    assert.equal(table.code, 0);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^DIGEST\s+SIZE\s+AGE$/);
    assert.match(lines[1], new RegExp(`^${digest}\\s+3\\.0 MiB\\s+\\d+s ago$`));

    const json = await runDist(["list", "--json", "--root", root]);
    const info = JSON.parse(json.stdout);
    assert.equal(info.digest, digest);
    assert.equal(info.size, bytes.length);
    assert.ok(!Number.isNaN(Date.parse(info.createdAt)));

    const path = await runDist(["path", "--root", root, digest]);
    assert.equal(path.stdout, `${digest} ${root}/blobs/sha256/${digest.slice(7)}\n`);
    const quiet = await runDist(["path", "-q", "--root", root, digest]);
    assert.equal(quiet.stdout, `${root}/blobs/sha256/${digest.slice(7)}\n`);

    const active = await runDist(["active", "--root", root]);
    assert.equal(active.stdout.trim().split("\n").length, 1); // the header only
  });
});

Deno.test("dist ingest of content already in the store exits 0 at once", async () => {
  await withTempDir(async (root) => {
    const bytes = seededBytes(1000, 2);
    assert.equal((await runDist(ingestArgs(root, bytes, "a"), { stdin: bytes })).code, 0);
    // stdin is not even read: a different stream makes no difference
    const again = await runDist(ingestArgs(root, bytes, "b"), { stdin: "something else" });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stderr, "");
    assert.deepEqual(await listDigests(root), [digestOf(bytes)]);
  });
});

Deno.test("dist ingest reports mismatches with both values, exits 1 and keeps nothing", async () => {
  await withTempDir(async (root) => {
    const bytes = seededBytes(200_000, 3);
    const wrong = seededBytes(200_000, 4);
    const digestMismatch = await runDist(ingestArgs(root, wrong, "ref"), { stdin: bytes });
    assert.equal(digestMismatch.code, 1);
    assert.equal(
      digestMismatch.stderr,
      `dist: cannot commit ref: expected digest ${digestOf(wrong)}, got ${digestOf(bytes)}\n`,
    );
    const short = await runDist(ingestArgs(root, bytes, "ref"), {
      stdin: bytes.subarray(0, 150_000),
    });
    assert.equal(short.code, 1);
    assert.equal(short.stderr, "dist: cannot commit ref: expected size 200000, got 150000\n");
    const long = new Uint8Array(300_000);
    long.set(bytes);
    const tooLong = await runDist(ingestArgs(root, bytes, "ref"), { stdin: long });
    assert.equal(tooLong.code, 1);
    assert.equal(tooLong.stderr, "dist: cannot commit ref: expected size 200000, got 300000\n");
    assert.deepEqual(await listDigests(root), []);
    assert.deepEqual(await (await Store.open(root)).listStatuses(), []);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${root}/ingest`)), []);
  });
});

Deno.test("dist ingest refuses a hostile digest with exit 2 and touches nothing", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    for (const digest of ["sha256:../../etc/passwd", `sha256:${"A".repeat(64)}`, "nonsense"]) {
      const result = await runDist(
        ["ingest", "--root", root, "--expected-digest", digest, "--expected-size", "4", "r"],
        { stdin: "data" },
      );
      assert.equal(result.code, 2);
      assert.equal(
        result.stderr,
        `dist: invalid digest ${
          JSON.stringify(digest)
        }: want sha256:<64 hex> or sha512:<128 hex>\n`,
      );
    }
    for (const command of ["path", "delete", "rm"]) {
      const result = await runDist([command, "--root", root, "sha256:../../../victim"]);
      assert.equal(result.code, 2);
    }
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []); // not even the root
  });
});

Deno.test("concurrent dist ingest of one ref: one writes, the others wait, one blob results", async () => {
  await withTempDir(async (root) => {
    const bytes = seededBytes(2 << 20, 5);
    const digest = digestOf(bytes);
    // the first holds the ingest with half the data while the others start
    const { child, stdin, store } = await startIngest(root, bytes, "layer-x", 1 << 20);
    const others = Array.from(
      { length: 4 },
      () => runDist(ingestArgs(root, bytes, "layer-x"), { stdin: bytes }),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await store.has(digest), false);
    await stdin.write(bytes.subarray(1 << 20));
    await stdin.close();
    const first = await child.output();
    assert.equal(first.code, 0, new TextDecoder().decode(first.stderr));
    for (const result of await Promise.all(others)) assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await listDigests(root), [digest]);
    assert.deepEqual(await store.readBytes(digest), bytes);
    assert.deepEqual(await store.listStatuses(), []);

    // and all at once, as `xargs -P` starts them
    const again = seededBytes(1 << 20, 6);
    const results = await Promise.all(
      Array.from(
        { length: 5 },
        () => runDist(ingestArgs(root, again, "layer-y"), { stdin: again }),
      ),
    );
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((await listDigests(root)).sort(), [digest, digestOf(again)].sort());
    assert.deepEqual(await store.readBytes(digestOf(again)), again);
  });
});

Deno.test("dist active shows a running ingest; a killed one resumes with the same stdin", async () => {
  await withTempDir(async (root) => {
    const bytes = seededBytes(3 << 20, 7);
    const { child, stdin, store } = await startIngest(root, bytes, "layer-k", 2 << 20);
    try {
      const json = await runDist(["active", "--json", "--root", root]);
      assert.equal(json.code, 0);
      const status = JSON.parse(json.stdout);
      assert.equal(status.ref, "layer-k");
      assert.ok(status.offset > 0 && status.offset <= 2 << 20);
      assert.equal(status.total, bytes.length);
      assert.equal(status.expected, digestOf(bytes));
      const table = await runDist(["active", "--root", root]);
      const [header, row] = table.stdout.trimEnd().split("\n");
      assert.match(header, /^REF\s+OFFSET\/TOTAL\s+STARTED\s+UPDATED$/);
      assert.match(row, /^layer-k\s+\S+ \S+\/3\.0 MiB\s+\d+s ago\s+\d+s ago$/);
    } finally {
      child.kill("SIGKILL");
      await child.status;
      await stdin.abort().catch(() => {});
    }
    const left = await store.status("layer-k");
    assert.ok(left.offset > 0);
    const resumed = await runDist(ingestArgs(root, bytes, "layer-k"), { stdin: bytes });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(await store.readBytes(digestOf(bytes)), bytes);
    assert.deepEqual(await store.listStatuses(), []);
  });
});

Deno.test("dist list -q | xargs dist delete empties the store", async () => {
  await withTempDir(async (root) => {
    for (let i = 0; i < 5; i++) {
      const bytes = seededBytes(1000 + i, 10 + i);
      assert.equal((await runDist(ingestArgs(root, bytes, `r${i}`), { stdin: bytes })).code, 0);
    }
    assert.equal((await listDigests(root)).length, 5);
    const dist = distCommandLine();
    const pipeline = await new Deno.Command("sh", {
      args: ["-c", `${dist} list -q --root '${root}' | xargs ${dist} delete --root '${root}'`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(pipeline.code, 0, new TextDecoder().decode(pipeline.stderr));
    assert.equal(new TextDecoder().decode(pipeline.stdout).trim().split("\n").length, 5);
    assert.deepEqual(await listDigests(root), []);
  });
});

Deno.test("dist path and dist delete go on past absent blobs and exit 3", async () => {
  await withTempDir(async (root) => {
    const bytes = seededBytes(10, 20);
    const digest = digestOf(bytes);
    const absent = digestOf(seededBytes(10, 21));
    await runDist(ingestArgs(root, bytes, "r"), { stdin: bytes });
    const path = await runDist(["path", "-q", "--root", root, absent, digest]);
    assert.equal(path.code, 3);
    assert.equal(path.stdout, `${root}/blobs/sha256/${digest.slice(7)}\n`);
    assert.equal(path.stderr, `dist: content ${absent} not found\n`);
    const deleted = await runDist(["rm", "--root", root, absent, digest]);
    assert.equal(deleted.code, 3);
    assert.equal(deleted.stdout, `${digest}\n`);
    assert.equal(deleted.stderr, `dist: content ${absent} not found\n`);
    assert.deepEqual(await listDigests(root), []);
  });
});

Deno.test("dist delete refuses a blob an image record uses, unless --force", async () => {
  await withTempDir(async (root) => {
    const image = await recordImage(root, "r/app:v1");
    const stray = await putBlob(root, MediaType.ociLayer, seededBytes(10, 30));
    const absent = digestOf(seededBytes(10, 31));
    const { manifest, layer } = image;
    const refused = await runDist([
      "delete",
      "--root",
      root,
      manifest.digest,
      stray.digest,
      absent,
      layer.digest,
    ]);
    assert.equal(refused.code, 3, "the missing blob fails; blobs kept for images do not");
    assert.equal(refused.stdout, `${stray.digest}\n`, "the other digests are still processed");
    assert.equal(
      refused.stderr,
      `dist: content ${absent} not found\n` +
        `dist: warning: kept 2 blobs in use (2 by image r/app:v1); ` +
        `--force deletes blobs images use anyway\n`,
    );
    assert.deepEqual(
      (await listDigests(root)).sort(),
      [manifest.digest, image.config.digest, layer.digest].sort(),
    );
    const images = await runDist(["images", "--root", root]);
    assert.match(images.stdout, /r\/app:v1\s+\S+\s+[1-9]\d* B\s+linux/, "the image is intact");

    const forced = await runDist(["rm", "--force", "--root", root, manifest.digest]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(forced.stdout, `${manifest.digest}\n`);
    assert.deepEqual((await listDigests(root)).sort(), [image.config.digest, layer.digest].sort());
    const help = await runDist(["delete", "--help"]);
    assert.match(help.stdout, /--force/);
  });
});

Deno.test("dist prune refuses while a record's manifest is missing, and removes nothing", async () => {
  await withTempDir(async (root) => {
    const image = await recordImage(root, "r/app:v1");
    const kept = await recordImage(root, "r/other:v2");
    const stray = await putBlob(root, MediaType.ociLayer, seededBytes(10, 32));
    await (await Store.open(root)).delete(image.manifest.digest);
    const before = (await listDigests(root)).sort();
    for (const args of [["--dry-run"], []]) {
      const prune = await runDist(["prune", "--root", root, ...args]);
      assert.equal(prune.code, 1, prune.stderr);
      assert.equal(prune.stdout, "");
      assert.match(prune.stderr, /^dist: cannot collect garbage in .*: image r\/app:v1 \(sha256:/);
      assert.match(prune.stderr, /dist images rm/);
      assert.equal(prune.stderr.split("\n").length, 2, "one line");
      assert.deepEqual((await listDigests(root)).sort(), before);
    }
    // with the broken record gone, what only it reached is garbage
    assert.equal((await runDist(["images", "rm", "--root", root, "r/app:v1"])).code, 0);
    const prune = await runDist(["prune", "--root", root]);
    assert.equal(prune.code, 0, prune.stderr);
    assert.deepEqual(
      prune.stdout.trim().split("\n").sort(),
      [image.config, image.layer, stray].map((d) => `removed blob ${d.digest}`).sort(),
    );
    assert.deepEqual(
      (await listDigests(root)).sort(),
      [kept.manifest, kept.config, kept.layer].map((d) => d.digest).sort(),
    );
  });
});

Deno.test("dist abort removes ingests; an unknown ref exits 3", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    for (const ref of ["left-1", "left-2"]) {
      const writer = await store.writer(ref);
      await writer.write(seededBytes(100));
      await writer.close();
    }
    const result = await runDist(["abort", "--root", root, "left-1", "left-2"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "left-1\nleft-2\n");
    assert.deepEqual(await store.listStatuses(), []);
    const unknown = await runDist(["abort", "--root", root, "left-1"]);
    assert.equal(unknown.code, 3);
    assert.equal(unknown.stderr, "dist: ingest left-1 not found\n");
  });
});

Deno.test("dist prune --ingests removes ingests older than --older-than", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const writer = await store.writer("stale");
    await writer.write(seededBytes(100));
    await writer.close();
    const prune = (...args: string[]) => runDist(["prune", "--ingests", "--root", root, ...args]);

    const young = await prune("--older-than", "1h");
    assert.equal(young.code, 0, young.stderr);
    assert.equal(young.stdout, "");
    const dry = await prune("--older-than", "0s", "--dry-run");
    assert.equal(dry.stdout, "would remove ingest stale\n");
    assert.equal((await store.listStatuses()).length, 1);
    const removed = await prune("--older-than=0s");
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, "removed ingest stale\n");
    assert.deepEqual(await store.listStatuses(), []);

    const bad = await prune("--older-than", "3 days");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^dist: invalid duration "3 days" for --older-than: want e\.g\./);
  });
});

Deno.test("store commands: usage errors exit 2 and every command has --help", async () => {
  await withTempDir(async (root) => {
    const digest = digestOf(seededBytes(1));
    const usage: string[][] = [
      ["ingest", "--expected-size", "1", "r"],
      ["ingest", "--expected-digest", digest, "r"],
      ["ingest", "--expected-digest", digest, "--expected-size", "-1", "r"],
      ["ingest", "--expected-digest", digest, "--expected-size", "1"],
      ["ingest", "--expected-digest", digest, "--expected-size", "1", "a", "b"],
      ["list", "--bogus"],
      ["ls", "extra"],
      ["active", "-x"],
      ["path"],
      ["delete", "sha256:nothex"],
      ["abort"],
      ["prune", "--ingests", "extra"],
      ["prune", "--ingests", "--older-than"],
    ];
    for (const args of usage) {
      const result = await runDist([...args, "--root", root], { stdin: "x" });
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, /^dist: /);
    }
    for (const name of ["ingest", "active", "list", "path", "delete", "abort", "prune"]) {
      const help = await runDist([name, "--help"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`Usage: dist ${name} `));
    }
  });
});

Deno.test("dist ingest of stored content with another --expected-size exits 1 naming both", async () => {
  await withTempDir(async (root) => {
    const bytes = new TextEncoder().encode("hello");
    assert.equal((await runDist(ingestArgs(root, bytes, "r1"), { stdin: bytes })).code, 0);
    const args = ingestArgs(root, bytes, "r1");
    args[args.indexOf("--expected-size") + 1] = "99";
    const wrong = await runDist(args, { stdin: bytes });
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.equal(
      wrong.stderr,
      `dist: cannot commit r1: expected size 99, but ${digestOf(bytes)} is stored with size 5\n`,
    );
  });
});

Deno.test("commands that read or remove see a missing --root as empty and create nothing", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/x/y`;
    const digest = digestOf(seededBytes(10));
    for (const args of [["list", "-q"], ["active", "--json"], ["images", "-q"]]) {
      const result = await runDist([...args, "--root", root]);
      assert.equal(result.code, 0, `${args[0]}: ${result.stderr}`);
      assert.equal(result.stdout, "", args[0]);
    }
    for (
      const args of [
        ["path", digest],
        ["export", "-o", `${dir}/out.tar`, "app:v1"],
        ["delete", digest],
        ["abort", "none"],
        ["images", "rm", "app:v1"],
      ]
    ) {
      const result = await runDist([...args, "--root", root]);
      assert.equal(result.code, 3, `${args[0]}: ${result.stderr}`);
      assert.match(result.stderr, /^dist: .* not found\n$/);
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    // a command that writes creates the store as before
    const ingest = await runDist(
      ["ingest", "--root", root, "--expected-digest", digest, "--expected-size", "10", "r"],
      { stdin: seededBytes(10) },
    );
    assert.equal(ingest.code, 0, ingest.stderr);
    assert.ok((await Deno.stat(`${root}/oci-layout`)).isFile);
  });
});

Deno.test("an empty --root or DIST_ROOT is a usage error and leaves the directory alone", async () => {
  await withTempDir(async (dir) => {
    for (
      const [args, env, message] of [
        [["list", "--root="], {}, 'invalid --root ""'],
        [["list", "--root", ""], {}, 'invalid --root ""'],
        [
          [
            "ingest",
            "--expected-digest",
            digestOf(seededBytes(1)),
            "--expected-size",
            "1",
            "--root=",
            "r",
          ],
          {},
          'invalid --root ""',
        ],
        [["list"], { DIST_ROOT: "" }, 'invalid DIST_ROOT ""'],
      ] as const
    ) {
      const result = await runDist([...args], { cwd: dir, env, stdin: seededBytes(1) });
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.ok(result.stderr.startsWith(`dist: ${message}`), result.stderr);
      assert.equal(result.stderr.split("\n").length, 2, result.stderr);
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("a malformed index.json entry gives one line naming the file and the entry", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    assert.equal((await runDist(["images", "--root", root])).code, 0);
    await Deno.mkdir(root, { recursive: true });
    const digest = "sha256:" + "a".repeat(64);
    for (
      const [entry, why] of [
        [null, "entry 0: is not a descriptor"],
        [{ mediaType: "x", digest: "sha256:zz", size: 1 }, "entry 0: has an invalid digest"],
        [{ mediaType: "x", digest, size: -1 }, "entry 0: has an invalid size -1"],
        [
          { mediaType: "x", digest, size: 1, annotations: { a: 1 } },
          "entry 0: has annotations that are not strings",
        ],
      ] as const
    ) {
      await Deno.writeTextFile(
        `${root}/index.json`,
        JSON.stringify({ schemaVersion: 2, manifests: [entry] }),
      );
      for (const command of [["images"], ["prune", "--dry-run"], ["delete", digest]]) {
        const result = await runDist([...command, "--root", root]);
        assert.equal(result.code, 1, `${command[0]}: ${result.stderr}`);
        assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
        assert.ok(result.stderr.includes(`${root}/index.json ${why}`), result.stderr);
        assert.doesNotMatch(result.stderr, /TypeError/);
      }
    }
  });
});

Deno.test("dist list -q | xargs dist delete works under set -e: empty store, and images kept", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    const script = (cmd: string) =>
      new Deno.Command("bash", {
        args: ["-c", `set -euo pipefail; ${cmd.replaceAll("$DIST", distCommandLine())}`],
        env: { ROOT: root },
        stdout: "piped",
        stderr: "piped",
      }).output();
    const empty = await script('$DIST list --root "$ROOT" -q | xargs $DIST delete --root "$ROOT"');
    assert.equal(empty.code, 0, new TextDecoder().decode(empty.stderr));
    const image = await recordImage(root, "r/app:v1");
    const stray = await putBlob(root, MediaType.ociLayer, seededBytes(10, 40));
    const full = await script('$DIST list --root "$ROOT" -q | xargs $DIST delete --root "$ROOT"');
    const stderr = new TextDecoder().decode(full.stderr);
    assert.equal(full.code, 0, stderr);
    assert.equal(new TextDecoder().decode(full.stdout), `${stray.digest}\n`);
    assert.match(stderr, /kept 3 blobs in use/);
    assert.deepEqual(
      (await listDigests(root)).sort(),
      [image.manifest.digest, image.config.digest, image.layer.digest].sort(),
    );
    const prune = await runDist(["prune", "--root", root]);
    assert.equal(prune.code, 0, prune.stderr);
    assert.equal(prune.stderr, "dist: freed 0 B: 0 blobs, 0 ingests\n");
  });
});
