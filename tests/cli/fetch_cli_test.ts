import assert from "node:assert/strict";
import { distCommandLine, runDist, spawnDist } from "../_helpers/cli.ts";
import { type Registry, withRegistry } from "../_helpers/registry.ts";
import {
  buildLayer,
  compressLayer,
  type MultiPlatformImage,
  pushImage,
  pushMultiPlatform,
} from "../_helpers/images.ts";
import { randomBytes } from "../_helpers/bytes.ts";
import { requireTool } from "../_helpers/temp.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { Store } from "../../content/store/store.ts";
import type { ProgressEvent } from "../../content/images/copy.ts";

/** Pushes `multi/app:v1` (see {@link pushMultiPlatform}); `ref` names it. */
async function pushMulti(registry: Registry): Promise<MultiPlatformImage & { ref: string }> {
  const image = await pushMultiPlatform(registry.url, "multi/app");
  return { ...image, ref: `${registry.host}/multi/app:v1` };
}

/** A fresh registry and the root of a fresh store. */
function withStore(fn: (registry: Registry, root: string) => Promise<void>): Promise<void> {
  return withRegistry((registry, dir) => fn(registry, `${dir}/store`));
}

function blobExists(root: string, digest: string): boolean {
  try {
    Deno.statSync(`${root}/blobs/sha256/${digest.slice(7)}`);
    return true;
  } catch {
    return false;
  }
}

function parseEvents(stdout: string): ProgressEvent[] {
  return stdout.trim().split("\n").map((line) => JSON.parse(line));
}

Deno.test("dist fetch --json prints one event a line and records the image", async () => {
  await withStore(async (registry, root) => {
    const image = await pushMulti(registry);
    const result = await runDist([
      "fetch",
      "--root",
      root,
      "--json",
      "--platform",
      "linux/amd64",
      image.ref,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const events = parseEvents(result.stdout);
    assert.equal(events[0].status, "resolved");
    assert.equal(events.at(-1)!.status, "recorded");
    assert.equal(events.at(-1)!.name, image.ref);
    const done = new Set(events.filter((e) => e.status === "done").map((e) => e.digest));
    for (const d of [image.amd64.manifest, image.amd64.config, ...image.amd64.layers]) {
      assert.ok(done.has(d.digest), `done event for ${d.digest}`);
      assert.ok(blobExists(root, d.digest));
    }
    assert.ok(!blobExists(root, image.arm64.manifest.digest));
    assert.ok(!blobExists(root, image.attestation.digest));
    const index = JSON.parse(await Deno.readTextFile(`${root}/index.json`));
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0].annotations["org.opencontainers.image.ref.name"], image.ref);
    assert.equal(index.manifests[0].annotations["io.containerd.image.name"], image.ref);
  });
});

Deno.test("dist fetch -q prints only the descriptor; plain output has a line a blob", async () => {
  await withStore(async (registry, root) => {
    const image = await pushMulti(registry);
    const plain = await runDist(["fetch", "--root", root, "--platform", "linux/arm64", image.ref]);
    assert.equal(plain.code, 0, plain.stderr);
    const lines = plain.stderr.trim().split("\n");
    // index, arm64 manifest, config, 2 layers: one line each as it finishes, nothing live
    assert.equal(lines.length, 5, plain.stderr);
    assert.ok(lines.every((l) => / (done|exists) /.test(l)), plain.stderr);
    assert.ok(!plain.stderr.includes("\x1b["), "no terminal escapes when not a terminal");
    assert.match(plain.stdout, /^fetched 127\.0\.0\.1:\d+\/multi\/app:v1 sha256:[0-9a-f]{64} /);
    assert.ok(blobExists(root, image.arm64.layers[1].digest));

    const quiet = await runDist(["fetch", "--root", root, "-q", "--all-platforms", image.ref]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, "");
    const descriptor = JSON.parse(quiet.stdout);
    assert.equal(descriptor.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.equal(quiet.stdout.trim().split("\n").length, 1);
    assert.ok(blobExists(root, image.attestation.digest), "--all-platforms fetches attestations");
    assert.ok(blobExists(root, image.amd64.layers[1].digest));
  });
});

Deno.test("dist fetch reports bad flags (2) and unknown images (3)", async () => {
  await withStore(async (registry, root) => {
    const image = await pushMulti(registry);
    const both = await runDist([
      "fetch",
      "--root",
      root,
      "--all-platforms",
      "--platform",
      "linux/amd64",
      image.ref,
    ]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--all-platforms conflicts with --platform/);
    const badPlatform = await runDist(["fetch", "--root", root, "--platform", "linux/", image.ref]);
    assert.equal(badPlatform.code, 2);
    const badMax = await runDist([
      "fetch",
      "--root",
      root,
      "--max-concurrent-downloads",
      "0",
      image.ref,
    ]);
    assert.equal(badMax.code, 2);
    const missing = await runDist(["fetch", "--root", root, `${registry.host}/multi/app:nope`]);
    assert.equal(missing.code, 3, missing.stderr);
    const noPlatform = await runDist([
      "fetch",
      "--root",
      root,
      "--platform",
      "linux/s390x",
      image.ref,
    ]);
    assert.equal(noPlatform.code, 3);
    const message = `dist: cannot fetch ${image.ref}: no manifest for platform linux/s390x ` +
      `(the index has linux/amd64, linux/arm64)\n`;
    assert.ok(noPlatform.stderr.endsWith(message), noPlatform.stderr);
  });
});

Deno.test("dist fetch downloads --max-concurrent-downloads blobs at once, big ones counting as two", async () => {
  await withStore(async (registry, root) => {
    const layers = (count: number, size: number) =>
      Array.from({ length: count }, () => compressLayer(randomBytes(size), "none"));
    await pushImage(registry.url, "many/small", { layers: layers(6, 64 * 1024), tag: "v1" });
    await pushImage(registry.url, "many/big", { layers: layers(3, 17 * 1024 * 1024), tag: "v1" });
    // slow enough that the downloads the limit lets run do overlap: ≈ 0.25 s a blob
    const slow = await startFaultProxy(registry.url, { bytesPerSecond: 256 * 1024 });
    const fast = await startFaultProxy(registry.url, { bytesPerSecond: 64 * 1024 * 1024 });
    try {
      const small = await runDist([
        "fetch",
        "--root",
        root,
        "--max-concurrent-downloads",
        "3",
        `${slow.host}/many/small:v1`,
      ]);
      assert.equal(small.code, 0, small.stderr);
      assert.equal(slow.peakBlobDownloads, 3, "7 blobs, 3 at a time");
      const big = await runDist([
        "fetch",
        "--root",
        root,
        "--max-concurrent-downloads",
        "4",
        `${fast.host}/many/big:v1`,
      ]);
      assert.equal(big.code, 0, big.stderr);
      assert.equal(fast.peakBlobDownloads, 2, "blobs over 16 MiB take two of the 4 slots");
    } finally {
      await slow.stop();
      await fast.stop();
    }
  });
});

Deno.test("skopeo and umoci read images dist fetch stored", async () => {
  await requireTool("skopeo");
  await requireTool("umoci");
  await withStore(async (registry, root) => {
    const image = await pushMulti(registry);
    const fetched = await runDist([
      "fetch",
      "--root",
      root,
      "-q",
      "--platform",
      "linux/amd64",
      image.ref,
    ]);
    assert.equal(fetched.code, 0, fetched.stderr);
    const inspect = await new Deno.Command("skopeo", {
      args: ["inspect", `oci:${root}:${image.ref}`],
    }).output();
    assert.equal(inspect.code, 0, new TextDecoder().decode(inspect.stderr));
    const info = JSON.parse(new TextDecoder().decode(inspect.stdout));
    assert.deepEqual(info.Layers, image.amd64.layers.map((l) => l.digest));
    const copyDir = `${root}-copy`;
    const copy = await new Deno.Command("skopeo", {
      args: ["copy", "-q", `oci:${root}:${image.ref}`, `dir:${copyDir}`],
    }).output();
    assert.equal(copy.code, 0, new TextDecoder().decode(copy.stderr));
    const manifest = JSON.parse(await Deno.readTextFile(`${copyDir}/manifest.json`));
    assert.equal(manifest.layers.length, 2);
    const ls = await new Deno.Command("umoci", { args: ["ls", "--layout", root] }).output();
    assert.equal(new TextDecoder().decode(ls.stdout).trim(), image.ref);
  });
});

Deno.test("three concurrent dist fetch processes download each blob once", async () => {
  await withStore(async (registry, root) => {
    const layers = [
      compressLayer(randomBytes(6 * 1024 * 1024), "none"),
      compressLayer(randomBytes(5 * 1024 * 1024), "none"),
      await buildLayer({ "etc/x": "x\n" }, "gzip"),
    ];
    const image = await pushImage(registry.url, "busy/app", { layers, tag: "v1" });
    const ref = `${registry.host}/busy/app:v1`;
    const results = await Promise.all(
      [0, 1, 2].map(() => runDist(["fetch", "--root", root, "-q", ref])),
    );
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    for (const layer of image.layers) {
      const gets = registry.log().split("\n").filter((line) =>
        line.includes(`"GET /v2/busy/app/blobs/${layer.digest} `) && / 200 \d+ /.test(line)
      );
      assert.equal(gets.length, 1, `one download of ${layer.digest}:\n${gets.join("\n")}`);
      assert.ok(blobExists(root, layer.digest));
    }
    const index = JSON.parse(await Deno.readTextFile(`${root}/index.json`));
    assert.equal(index.manifests.length, 1);
    assert.deepEqual([...Deno.readDirSync(`${root}/ingest`)], []);
  });
});

/** Reads JSON events from a running `dist fetch --json` until one satisfies `predicate`. */
async function waitForEvent(
  child: Deno.ChildProcess,
  predicate: (event: ProgressEvent) => boolean,
): Promise<ReadableStreamDefaultReader<string>> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error("dist fetch ended before the awaited event");
    buffer += value;
    for (let nl; (nl = buffer.indexOf("\n")) >= 0;) {
      const event = JSON.parse(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      if (predicate(event)) return reader;
    }
  }
}

/** A 24 MiB single-layer image behind a proxy that serves blobs at 8 MiB/s. */
async function withSlowImage(
  fn: (
    ref: string,
    layer: string,
    root: string,
    requests: () => { path: string; range?: string }[],
  ) => Promise<void>,
): Promise<void> {
  await withStore(async (registry, root) => {
    const layer = compressLayer(randomBytes(24 * 1024 * 1024), "none");
    const image = await pushImage(registry.url, "slow/app", { layers: [layer], tag: "v1" });
    const proxy = await startFaultProxy(registry.url, { bytesPerSecond: 8 * 1024 * 1024 });
    const requests = () =>
      proxy.requests.map((r) => ({ path: r.path, range: r.headers.get("range") ?? undefined }));
    try {
      await fn(`${proxy.host}/slow/app:v1`, image.layers[0].digest, root, requests);
    } finally {
      await proxy.stop();
    }
  });
}

async function ingestOffset(root: string, ref: string): Promise<number> {
  const store = await Store.open(root);
  const statuses = await store.listStatuses({ prefix: ref });
  assert.equal(statuses.length, 1, `one ingest ${ref}`);
  return statuses[0].offset;
}

Deno.test("dist fetch resumes a blob after the process was killed", async () => {
  await withSlowImage(async (ref, layer, root, requests) => {
    const child = spawnDist(["fetch", "--root", root, "--json", ref]);
    await child.stdin.close();
    const reader = await waitForEvent(
      child,
      (e) => e.digest === layer && e.status === "downloading" && (e.offset ?? 0) >= 2 << 20,
    );
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    await child.stderr.cancel();
    assert.equal(blobExists(root, layer), false);
    const partial = await ingestOffset(root, `layer-${layer}`);
    assert.ok(partial >= 2 << 20 && partial < 24 << 20, `partial ingest of ${partial} bytes`);

    const rerun = await runDist(["fetch", "--root", root, "--json", ref]);
    assert.equal(rerun.code, 0, rerun.stderr);
    const resumed = parseEvents(rerun.stdout).find((e) =>
      e.digest === layer && e.status === "downloading"
    );
    assert.ok(resumed?.resumedFrom !== undefined && resumed.resumedFrom >= partial);
    assert.equal(blobExists(root, layer), true);
    const ranges = requests().filter((r) => r.path.endsWith(layer)).map((r) => r.range);
    assert.deepEqual(ranges, [undefined, `bytes=${resumed.resumedFrom}-`]);
  });
});

for (
  const [signal, code, offset] of [
    ["SIGINT", 130, 1],
    // what `timeout` and a cancelled CI job send, here a second into the download
    ["SIGTERM", 143, 4 << 20],
  ] as const
) {
  Deno.test(`${signal} stops dist fetch with ${code} and keeps the ingest to resume`, async () => {
    await withSlowImage(async (ref, layer, root) => {
      const child = spawnDist(["fetch", "--root", root, "--json", ref]);
      await child.stdin.close();
      const reader = await waitForEvent(
        child,
        (e) => e.digest === layer && e.status === "downloading" && (e.offset ?? 0) >= offset,
      );
      child.kill(signal);
      const [status, stderr] = await Promise.all([
        child.status,
        new Response(child.stderr).text(),
        reader.cancel(),
      ]);
      assert.equal(status.code, code, stderr);
      assert.match(stderr, /interrupted: partial downloads stay in the store/);
      assert.equal(blobExists(root, layer), false);
      assert.ok((await ingestOffset(root, `layer-${layer}`)) > 0);
      assert.deepEqual(JSON.parse(await Deno.readTextFile(`${root}/index.json`)).manifests, []);
      const rerun = await runDist(["fetch", "--root", root, "-q", ref]);
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.equal(blobExists(root, layer), true);
    });
  });
}

Deno.test("dist fetch on a terminal redraws live progress lines", async () => {
  await requireTool("script");
  await withSlowImage(async (ref, layer, root) => {
    // script(1) gives dist a pseudo-terminal; its output is what the terminal showed
    const command = `${distCommandLine()} fetch --root '${root}' '${ref}'`;
    const result = await new Deno.Command("script", {
      args: ["-qefc", command, "/dev/null"],
      env: { NO_COLOR: "1" },
    }).output();
    const shown = new TextDecoder().decode(result.stdout);
    assert.equal(result.code, 0, shown);
    assert.match(
      shown,
      new RegExp(`layer +${layer.slice(0, 19)}  downloading [\\d.]+ MiB / 24\\.0 MiB`),
    );
    const redraw = new RegExp(String.raw`${"\x1b"}\[\d+F${"\x1b"}\[J`);
    assert.match(shown, redraw, "lines are redrawn in place");
    assert.match(shown, new RegExp(`layer +${layer.slice(0, 19)}  done 24\\.0 MiB`));
  });
});

Deno.test("dist images lists records and dist images rm removes them", async () => {
  await withStore(async (registry, root) => {
    const image = await pushMulti(registry);
    const other = await pushImage(registry.url, "solo/app", {
      layers: [await buildLayer({ "a": "a" }, "gzip")],
      tag: "v2",
    });
    const otherRef = `${registry.host}/solo/app:v2`;
    for (const args of [["--all-platforms", image.ref], [otherRef]]) {
      const fetched = await runDist(["fetch", "--root", root, "-q", ...args]);
      assert.equal(fetched.code, 0, fetched.stderr);
    }
    const table = await runDist(["images", "--root", root]);
    assert.equal(table.code, 0, table.stderr);
    const rows = table.stdout.trim().split("\n").map((l) => l.split(/\s{2,}/));
    assert.deepEqual(rows[0], ["NAME", "DIGEST", "SIZE", "PLATFORMS"]);
    assert.deepEqual(rows[1][0], image.ref);
    assert.deepEqual(rows[1][3], "linux/amd64,linux/arm64");
    assert.deepEqual(rows[2][0], otherRef);
    assert.deepEqual(rows[2][1], other.manifest.digest.slice(0, 19));
    assert.deepEqual(rows[2][3], "linux/amd64");
    const json = await runDist(["images", "--root", root, "--json"]);
    const records = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(records[1].target.digest, other.manifest.digest);
    const size = other.manifest.size + other.config.size + other.layers[0].size;
    assert.equal(records[1].size, size);
    const quiet = await runDist(["images", "--root", root, "-q"]);
    assert.equal(quiet.stdout, `${image.ref}\n${otherRef}\n`);

    const rm = await runDist(["images", "--root", root, "rm", image.ref]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await runDist(["images", "--root", root, "-q"])).stdout, `${otherRef}\n`);
    const again = await runDist(["images", "--root", root, "rm", image.ref]);
    assert.equal(again.code, 3);
    assert.match(again.stderr, /image .* not found/);
  });
});

Deno.test("dist prune removes unreferenced blobs only, and --dry-run nothing", async () => {
  await withStore(async (registry, root) => {
    const image = await pushMulti(registry);
    const kept = await pushImage(registry.url, "keep/app", {
      layers: [await buildLayer({ "etc/os-release": "ID=test\n" }, "gzip")], // shared with image
      tag: "v1",
    });
    const keptRef = `${registry.host}/keep/app:v1`;
    for (const ref of [image.ref, keptRef]) {
      assert.equal((await runDist(["fetch", "--root", root, "-q", ref])).code, 0);
    }
    const before = [...Deno.readDirSync(`${root}/blobs/sha256`)].length;
    assert.equal((await runDist(["prune", "--root", root])).stdout, "");
    assert.equal([...Deno.readDirSync(`${root}/blobs/sha256`)].length, before);

    assert.equal((await runDist(["images", "--root", root, "rm", image.ref])).code, 0);
    const dry = await runDist(["prune", "--root", root, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    const wouldGo = dry.stdout.trim().split("\n");
    // index, amd64 manifest, config and its own layer go; the shared base layer stays
    assert.equal(wouldGo.length, 4, dry.stdout);
    assert.ok(wouldGo.every((l) => l.startsWith("would remove blob sha256:")));
    assert.equal([...Deno.readDirSync(`${root}/blobs/sha256`)].length, before);

    const pruned = await runDist(["prune", "--root", root]);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.deepEqual(
      pruned.stdout.trim().split("\n"),
      wouldGo.map((l) => l.replace("would remove", "removed")),
    );
    assert.equal([...Deno.readDirSync(`${root}/blobs/sha256`)].length, before - 4);
    for (const d of [kept.manifest, kept.config, ...kept.layers]) {
      assert.ok(blobExists(root, d.digest), `kept ${d.digest}`);
    }
    assert.ok(blobExists(root, image.amd64.layers[0].digest), "shared layer kept");
    assert.ok(!blobExists(root, image.amd64.layers[1].digest));
  });
});
