/**
 * Benchmark: fetching from a local docker-registry, side by side with the peers, every command
 * ending in `sync` (a tool that flushes nothing pays its writeback too: "to durable"), medians of
 * 5 alternating pairs (which goes first alternates):
 *
 * - 8 layers × 128 MiB, incompressible: `dist fetch` at most 0.5× `skopeo copy docker://… oci:…`,
 *   peak RSS at most 150 MiB. Also shown, without a target: `curl | tee FILE | openssl dgst` of
 *   the same blobs, 8 at once, which receives, writes and hashes as dist does.
 * - 48 layers × 512 KiB: `dist fetch` at most 0.6× skopeo.
 * - The seed's pipeline (README) for those 48 layers: `fetch-object | jq | xargs -P10 sh -c
 *   'fetch-object | ingest'` at most 3× `dist fetch` of the same image. Shown beside it, the
 *   floor of that shape: the same 96 processes doing nothing but start Deno.
 *
 * dist runs as users run it from their PATH: the single-file bundle under `deno run` (README, "One
 * file, one binary"); `--source` runs `deno run cli.ts` instead. Exits 1 when a target is missed.
 *
 *     deno run -A bench/fetch.ts [--runs N] [--source] [--only big|small|seed]
 */
// deno-lint-ignore-file no-console
import { startRegistry } from "../tests/_helpers/registry.ts";
import { pushBlob, pushManifest } from "../tests/_helpers/push.ts";
import { randomBytes } from "../tests/_helpers/images.ts";
import { removeTree, requireTool } from "../tests/_helpers/temp.ts";
import type { Descriptor } from "../content/descriptor.ts";
import { benchConfig, buildBundle, flag, median } from "./_common.ts";

const PROJECT = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;
const RUNS = flag("runs", 5);
const SOURCE = Deno.args.includes("--source");
const ONLY = Deno.args.includes("--only") ? Deno.args[Deno.args.indexOf("--only") + 1] : undefined;

interface Measured {
  seconds: number;
  rssMiB: number;
}

/** Runs a shell command line ending in `sync` under GNU time: wall seconds and peak RSS. */
async function measure(line: string, env: Record<string, string>): Promise<Measured> {
  const start = performance.now();
  const result = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", "sh", "-c", `set -e; ${line}; sync`],
    env,
    stdout: "null",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  const stderr = new TextDecoder().decode(result.stderr).trim();
  if (!result.success) throw new Error(`${line} failed:\n${stderr}`);
  return { seconds, rssMiB: Number(stderr.split("\n").at(-1)) / 1024 };
}

/** Pushes an image of `count` random layers of `size` bytes; returns its layers. */
async function pushImage(url: string, repository: string, count: number, size: number) {
  const layers: Descriptor[] = [];
  const type = "application/vnd.oci.image.layer.v1.tar";
  for (let i = 0; i < count; i++) {
    layers.push(await pushBlob(url, repository, randomBytes(size), type));
  }
  const config = await pushBlob(
    url,
    repository,
    benchConfig(layers),
    "application/vnd.oci.image.config.v1+json",
  );
  const mediaType = "application/vnd.oci.image.manifest.v1+json";
  await pushManifest(
    url,
    repository,
    "latest",
    { schemaVersion: 2, mediaType, config, layers },
    mediaType,
  );
  return layers;
}

/**
 * Runs `a` and `b` RUNS times each (after one unmeasured warm-up pair), alternating which goes
 * first; `reset` runs before every command to empty its destination.
 */
async function sideBySide(
  a: string,
  b: string,
  env: Record<string, string>,
  reset: () => Promise<void>,
): Promise<[Measured[], Measured[]]> {
  const as: Measured[] = [];
  const bs: Measured[] = [];
  for (let run = -1; run < RUNS; run++) {
    const pair: [string, Measured[]][] = run % 2 === 0 ? [[a, as], [b, bs]] : [[b, bs], [a, as]];
    for (const [line, into] of pair) {
      await reset();
      const m = await measure(line, env);
      if (run >= 0) into.push(m);
    }
  }
  return [as, bs];
}

await requireTool("skopeo");
await requireTool("jq");
await requireTool("curl");
await requireTool("openssl");
const registry = await startRegistry();
const work = await Deno.makeTempDir({ prefix: "dist-bench-fetch-" });
let failed = false;
const rows: string[][] = [];
/** Adds a row comparing medians; a missed target fails the benchmark. */
function row(name: string, a: Measured[], b: Measured[], target?: number, maxRss?: number): void {
  const [ma, mb] = [median(a.map((m) => m.seconds)), median(b.map((m) => m.seconds))];
  const rss = Math.max(...a.map((m) => m.rssMiB));
  const ratio = ma / mb;
  const ok = (target === undefined || ratio <= target) && (maxRss === undefined || rss <= maxRss);
  if (!ok) failed = true;
  rows.push([
    name,
    `${ma.toFixed(3)} s`,
    `${mb.toFixed(3)} s`,
    `${ratio.toFixed(2)}×` + (target ? ` (≤ ${target})` : ""),
    `${rss.toFixed(0)} MiB` + (maxRss ? ` (≤ ${maxRss})` : ""),
    target === undefined ? "" : ok ? "ok" : "MISSED",
  ]);
}
try {
  // `dist` on the PATH, as the README's recipe installs it: the pipeline's sh -c needs one
  const bin = `${work}/bin`;
  await Deno.mkdir(bin);
  const script = SOURCE ? `${PROJECT}cli.ts` : await buildBundle(work);
  await Deno.writeTextFile(
    `${bin}/dist`,
    `#!/bin/sh\nexec "${Deno.execPath()}" run --quiet -A "${script}" "$@"\n`,
    { mode: 0o755 },
  );
  const root = `${work}/store`;
  const peer = `${work}/peer`;
  const env = { PATH: `${bin}:${Deno.env.get("PATH")}`, DIST_ROOT: root };
  const reset = async () => {
    await removeTree(root);
    await removeTree(peer);
  };
  const skopeo = (repo: string) =>
    `skopeo copy -q --src-tls-verify=false docker://${registry.host}/${repo}:latest oci:${peer}:latest`;
  const fetch = (repo: string) => `dist fetch -q ${registry.host}/${repo}:latest`;

  if (!ONLY || ONLY === "big") {
    const layers = await pushImage(registry.url, "bench/big", 8, 128 * MiB);
    const [d, s] = await sideBySide(fetch("bench/big"), skopeo("bench/big"), env, reset);
    row("8 × 128 MiB: dist fetch vs skopeo copy", d, s, 0.5, 150);
    const blobs = layers.map((l) => `${registry.url}/v2/bench/big/blobs/${l.digest}`);
    const curl = `mkdir -p ${peer}; for u in ${blobs.join(" ")}; do ` +
      `(curl -sf "$u" | tee ${peer}/$(basename $u) | openssl dgst -sha256 >/dev/null) & done; wait`;
    const [d2, c] = await sideBySide(fetch("bench/big"), curl, env, reset);
    row("8 × 128 MiB: dist fetch vs curl | tee | openssl dgst", d2, c);
  }
  if (!ONLY || ONLY === "small" || ONLY === "seed") {
    await pushImage(registry.url, "bench/small", 48, 512 * 1024);
  }
  if (!ONLY || ONLY === "small") {
    const [d, s] = await sideBySide(fetch("bench/small"), skopeo("bench/small"), env, reset);
    row("48 × 512 KiB: dist fetch vs skopeo copy", d, s, 0.6);
  }
  if (!ONLY || ONLY === "seed") {
    const repo = `${registry.host}/bench/small`;
    const pipeline =
      `dist fetch-object ${repo} latest | jq -r '.layers[] | "\\(.digest) \\(.size)"' | ` +
      `xargs -P10 -n2 sh -c 'dist fetch-object ${repo}@$0 | dist ingest --expected-digest $0 --expected-size $1 layer-$0'`;
    const [p, d] = await sideBySide(pipeline, fetch("bench/small"), env, reset);
    row("48 × 512 KiB: seed pipeline vs dist fetch", p, d, 3);
    // the floor of that shape: two processes a layer that only start Deno and exit
    const empty = `${work}/empty.ts`;
    await Deno.writeTextFile(empty, "");
    const deno = `${Deno.execPath()} run ${empty}`;
    const floor = `seq 48 | xargs -P10 -n1 sh -c '${deno} | ${deno}'`;
    const [f, d2] = await sideBySide(floor, fetch("bench/small"), env, reset);
    row("48 × two empty deno runs, as piped vs dist fetch", f, d2);
  }
  const header = ["work", "first", "second", "ratio", "first's peak RSS", ""];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [header, ...rows]) console.log(r.map((v, i) => v.padEnd(widths[i])).join("  "));
  console.log(
    `(medians of ${RUNS} alternating pairs, each command ending in sync; dist ran as ` +
      `${SOURCE ? "deno run cli.ts" : "the bundle"})`,
  );
} finally {
  await registry.stop();
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
