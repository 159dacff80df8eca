/**
 * Benchmark: `dist export` of the 1 GiB bench image (8 layers × 128 MiB of incompressible data)
 * to a file, against `tar -cf` of the same blob files, in the same run. Target: dist at most
 * 1.3× tar's wall time.
 *
 * The image is written straight into the bench's own temporary store (no registry involved), so
 * both tools read the same files from the page cache and write to the same filesystem. Runs
 * alternate between the tools; the medians are compared. Prints a table; exits 1 when the
 * target is missed.
 *
 *     deno run -A bench/export.ts [--runs N]
 */
// deno-lint-ignore-file no-console
import { Store } from "../content/store/store.ts";
import { Images } from "../content/images/records.ts";
import { digestOf } from "../content/digest.ts";
import type { Descriptor } from "../content/descriptor.ts";
import { writeBlob } from "../content/store/write_blob.ts";
import { randomBytes } from "../tests/_helpers/bytes.ts";
import { removeTree } from "../tests/_helpers/temp.ts";
import { benchConfig, flag, median } from "./_common.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;
const LAYERS = 8;
const LAYER_SIZE = 128 * MiB;
const MAX_RATIO = 1.3;
const NAME = "bench.local/export:latest";

const RUNS = flag("runs", 5);

async function put(store: Store, bytes: Uint8Array, mediaType: string): Promise<Descriptor> {
  const digest = digestOf(bytes);
  await writeBlob(store, `bench-${digest}`, [bytes], { digest, size: bytes.length });
  return { mediaType, digest, size: bytes.length };
}

/** Writes the bench image into the store; returns the paths of its blobs (tar's arguments). */
async function buildImage(store: Store): Promise<string[]> {
  const layers: Descriptor[] = [];
  for (let i = 0; i < LAYERS; i++) {
    layers.push(
      await put(store, randomBytes(LAYER_SIZE), "application/vnd.oci.image.layer.v1.tar"),
    );
  }
  const config = await put(store, benchConfig(layers), "application/vnd.oci.image.config.v1+json");
  const mediaType = "application/vnd.oci.image.manifest.v1+json";
  const manifest = await put(
    store,
    new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, mediaType, config, layers })),
    mediaType,
  );
  await new Images(store.root).put(NAME, manifest);
  return [manifest, config, ...layers].map((d) => `sha256/${d.digest.slice(7)}`);
}

async function time(command: string[], cwd?: string): Promise<number> {
  const start = performance.now();
  const result = await new Deno.Command(command[0], {
    args: command.slice(1),
    cwd,
    stdout: "null",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  if (!result.success) {
    throw new Error(`${command.join(" ")} failed:\n${new TextDecoder().decode(result.stderr)}`);
  }
  return seconds;
}

const work = await Deno.makeTempDir({ prefix: "dist-bench-export-" });
let failed = false;
try {
  const store = await Store.open(`${work}/store`);
  const blobs = await buildImage(store);
  const out = `${work}/out`;
  await Deno.mkdir(out);
  const dist = [Deno.execPath(), "run", "-A", CLI, "export", "--root", store.root];
  const commands: Record<string, string[]> = {
    "dist export": [...dist, "-o", `${out}/dist.tar`, NAME],
    "dist export --format oci": [...dist, "--format", "oci", "-o", `${out}/oci.tar`, NAME],
    "tar -cf": ["tar", "-cf", `${out}/tar.tar`, ...blobs],
  };
  const times: Record<string, number[]> = {};
  // one warm-up round: the page cache and Deno's module cache start out the same for all
  for (let run = -1; run < RUNS; run++) {
    const order = Object.keys(commands);
    if (run % 2 === 1) order.reverse(); // neither tool always goes first
    for (const name of order) {
      const seconds = await time(commands[name], `${store.root}/blobs`);
      if (run >= 0) (times[name] ??= []).push(seconds);
      for (const entry of Deno.readDirSync(out)) await Deno.remove(`${out}/${entry.name}`);
    }
  }
  const tar = median(times["tar -cf"]);
  const rows = Object.keys(commands).map((name) => {
    const m = median(times[name]);
    const ratio = m / tar;
    const checked = name === "dist export";
    if (checked && ratio > MAX_RATIO) failed = true;
    return [
      name,
      `${m.toFixed(2)} s`,
      `${(LAYERS * LAYER_SIZE / MiB / m).toFixed(0)} MiB/s`,
      name === "tar -cf" ? "1.00" : ratio.toFixed(2) + (checked ? ` (≤ ${MAX_RATIO})` : ""),
      checked ? (ratio <= MAX_RATIO ? "ok" : "MISSED") : "",
    ];
  });
  const header = ["1 GiB image (8 × 128 MiB) to a file", "median", "throughput", "vs tar", ""];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) {
    console.log(row.map((v, i) => v.padEnd(widths[i])).join("  "));
  }
  console.log(`(median of ${RUNS} runs each, after one warm-up round)`);
} finally {
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
