/**
 * Benchmark: `dist fetch` against `skopeo copy docker://… oci:…` of the same images from a local
 * registry, in the same run.
 *
 * - 8 layers × 128 MiB of incompressible data: dist at most 0.6× skopeo's wall time, peak RSS at
 *   most 150 MiB.
 * - 48 layers × 512 KiB: dist at most 0.7× skopeo.
 *
 * Each tool fetches into a fresh directory; runs alternate between the tools and the median is
 * compared. Prints a table; exits 1 when a target is missed.
 *
 * dist runs as the single-file bundle (`deno bundle`, built here as `deno task bundle` does): that
 * is the form dist ships in (README), as skopeo ships compiled, and what bench/startup.ts times.
 * `--source` runs `deno run cli.ts` instead, which adds ≈ 10 ms of module loading to every run.
 * `--only small|big` runs one of the two images.
 *
 *     deno run -A bench/fetch.ts [--runs N] [--concurrency N] [--source] [--only small|big]
 */
// deno-lint-ignore-file no-console
import { startRegistry } from "../tests/_helpers/registry.ts";
import { pushBlob, pushManifest } from "../tests/_helpers/push.ts";
import { randomBytes } from "../tests/_helpers/images.ts";
import { removeTree, requireTool } from "../tests/_helpers/temp.ts";
import type { Descriptor } from "../content/descriptor.ts";
import { buildBundle, flag, median } from "./_common.ts";

const PROJECT = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;

const RUNS = flag("runs", 3);
const CONCURRENCY = flag("concurrency", 0); // 0: dist's default
const SOURCE = Deno.args.includes("--source");
const ONLY = Deno.args.includes("--only") ? Deno.args[Deno.args.indexOf("--only") + 1] : undefined;

interface Case {
  name: string;
  repository: string;
  layers: number;
  layerSize: number;
  maxRatio: number;
  maxRssMiB?: number;
}

const CASES: Case[] = [
  {
    name: "8 × 128 MiB",
    repository: "bench/big",
    layers: 8,
    layerSize: 128 * MiB,
    maxRatio: 0.6,
    maxRssMiB: 150,
  },
  {
    name: "48 × 512 KiB",
    repository: "bench/small",
    layers: 48,
    layerSize: 512 * 1024,
    maxRatio: 0.7,
  },
];

async function pushCase(url: string, c: Case): Promise<void> {
  const layers: Descriptor[] = [];
  for (let i = 0; i < c.layers; i++) {
    layers.push(
      await pushBlob(
        url,
        c.repository,
        randomBytes(c.layerSize),
        "application/vnd.oci.image.layer.v1.tar",
      ),
    );
  }
  const config = await pushBlob(
    url,
    c.repository,
    new TextEncoder().encode(JSON.stringify({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
      config: {},
    })),
    "application/vnd.oci.image.config.v1+json",
  );
  const mediaType = "application/vnd.oci.image.manifest.v1+json";
  await pushManifest(
    url,
    c.repository,
    "latest",
    { schemaVersion: 2, mediaType, config, layers },
    mediaType,
  );
}

/**
 * Runs a command under GNU time; returns wall seconds and peak RSS in MiB. Starts with no dirty
 * pages (as bench/unpack.ts does): skopeo does not flush what it writes, and without the `sync`
 * dist's flushes would also write back the previous run's leftovers (≈ 45 ms of 250 here).
 */
async function measure(command: string[]): Promise<{ seconds: number; rssMiB: number }> {
  await new Deno.Command("sync").output();
  const start = performance.now();
  const result = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", ...command],
    stdout: "null",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  const stderr = new TextDecoder().decode(result.stderr).trim();
  if (!result.success) throw new Error(`${command.join(" ")} failed:\n${stderr}`);
  const rssKiB = Number(stderr.split("\n").at(-1));
  return { seconds, rssMiB: rssKiB / 1024 };
}

/** The command that runs dist: the bundle built into `work`, or cli.ts with `--source`. */
async function distCommand(work: string): Promise<string[]> {
  if (SOURCE) return [Deno.execPath(), "run", "-A", `${PROJECT}cli.ts`];
  const bundle = await buildBundle(work);
  return [Deno.execPath(), "run", "-A", bundle];
}

await requireTool("skopeo");
const registry = await startRegistry();
const work = await Deno.makeTempDir({ prefix: "dist-bench-fetch-" });
let failed = false;
try {
  const distCli = await distCommand(work);
  const rows: string[][] = [];
  for (const c of CASES) {
    if (ONLY && !c.repository.endsWith(`/${ONLY}`)) continue;
    await pushCase(registry.url, c);
    const ref = `${registry.host}/${c.repository}:latest`;
    const dist: { seconds: number; rssMiB: number }[] = [];
    const skopeo: { seconds: number; rssMiB: number }[] = [];
    // run -1 warms both tools up (page cache; V8's code cache of a fresh bundle) and is not counted
    for (let run = -1; run < RUNS; run++) {
      const distRoot = `${work}/dist-${run}`;
      const skopeoDir = `${work}/skopeo-${run}`;
      const distArgs = [...distCli, "fetch", "--root", distRoot, "-q"];
      if (CONCURRENCY) distArgs.push("--max-concurrent-downloads", String(CONCURRENCY));
      const skopeoArgs = [
        "skopeo",
        "copy",
        "-q",
        "--src-tls-verify=false",
        `docker://${ref}`,
        `oci:${skopeoDir}:latest`,
      ];
      // alternate which tool goes first, so neither always meets a warm or cold cache
      let d, s;
      if (run % 2 === 0) {
        d = await measure([...distArgs, ref]);
        s = await measure(skopeoArgs);
      } else {
        s = await measure(skopeoArgs);
        d = await measure([...distArgs, ref]);
      }
      if (run >= 0) {
        dist.push(d);
        skopeo.push(s);
      }
      await removeTree(distRoot);
      await removeTree(skopeoDir);
    }
    const d = median(dist.map((m) => m.seconds));
    const s = median(skopeo.map((m) => m.seconds));
    const rss = Math.max(...dist.map((m) => m.rssMiB));
    const ratio = d / s;
    const ok = ratio <= c.maxRatio && (c.maxRssMiB === undefined || rss <= c.maxRssMiB);
    if (!ok) failed = true;
    rows.push([
      c.name,
      d.toFixed(2) + " s",
      s.toFixed(2) + " s",
      ratio.toFixed(2) + ` (≤ ${c.maxRatio})`,
      rss.toFixed(0) + " MiB" + (c.maxRssMiB ? ` (≤ ${c.maxRssMiB})` : ""),
      ok ? "ok" : "MISSED",
    ]);
  }
  const header = ["image", "dist fetch", "skopeo copy", "ratio", "dist peak RSS", ""];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) {
    console.log(row.map((v, i) => v.padEnd(widths[i])).join("  "));
  }
  console.log(
    `(median of ${RUNS} runs each; concurrency ${CONCURRENCY || "default"}; dist ran as ` +
      `${SOURCE ? "deno run cli.ts" : "the bundle"})`,
  );
} finally {
  await registry.stop();
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
