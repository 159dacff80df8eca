/**
 * Benchmark: `dist copy` (registry → registry) and `dist push` (store → registry) of an 8-layer
 * image between two local registries, against `skopeo copy` of the same, in the same run.
 * Targets: dist at most 0.7× skopeo's wall time, peak RSS at most 150 MiB.
 *
 * Every run writes to a destination registry started afresh for it (so that neither tool can
 * skip or mount a blob an earlier run left); runs alternate between the tools, each ends in
 * `sync` (the registry's writes count for both), and medians are compared. dist runs as the single-file bundle. Prints a table; exits 1 when a target is missed.
 *
 *     deno run -A bench/push.ts [--runs N] [--layer-mib N] [--layers N]
 */
// deno-lint-ignore-file no-console
import { startRegistry } from "../tests/_helpers/registry.ts";
import { pushBlob, pushManifest } from "../tests/_helpers/push.ts";
import { randomBytes } from "../tests/_helpers/images.ts";
import { removeTree, requireTool } from "../tests/_helpers/temp.ts";
import type { Descriptor } from "../content/descriptor.ts";
import { benchConfig, buildBundle, flag, median } from "./_common.ts";

const RUNS = flag("runs", 3);
const LAYERS = flag("layers", 8);
const LAYER_MIB = flag("layer-mib", 128);
const MAX_RATIO = 0.7;
const MAX_RSS_MIB = 150;

interface Measured {
  seconds: number;
  rssMiB: number;
}

/**
 * Runs a command under GNU time against a fresh destination registry, then `sync`; returns wall
 * seconds (with the sync) and peak RSS.
 */
async function measure(command: (host: string) => string[]): Promise<Measured> {
  await destination.stop();
  destination = await startRegistry();
  await new Deno.Command("sync").output();
  const start = performance.now();
  const result = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", ...command(destination.host)],
    stdout: "null",
    stderr: "piped",
  }).output();
  await new Deno.Command("sync").output();
  const seconds = (performance.now() - start) / 1000;
  const stderr = new TextDecoder().decode(result.stderr).trim();
  if (!result.success) throw new Error(`${command(destination.host).join(" ")}:\n${stderr}`);
  return { seconds, rssMiB: Number(stderr.split("\n").at(-1)) / 1024 };
}

async function run(command: string[]): Promise<void> {
  const result = await new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "null",
    stderr: "piped",
  })
    .output();
  if (!result.success) throw new Error(new TextDecoder().decode(result.stderr));
}

await requireTool("skopeo");
const source = await startRegistry();
let destination = await startRegistry();
const work = await Deno.makeTempDir({ prefix: "dist-bench-push-" });
let failed = false;
try {
  const dist = [Deno.execPath(), "run", "-A", await buildBundle(work)];
  const layers: Descriptor[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const bytes = randomBytes(LAYER_MIB << 20);
    layers.push(
      await pushBlob(source.url, "bench/app", bytes, "application/vnd.oci.image.layer.v1.tar"),
    );
  }
  const config = await pushBlob(
    source.url,
    "bench/app",
    benchConfig(layers),
    "application/vnd.oci.image.config.v1+json",
  );
  const mediaType = "application/vnd.oci.image.manifest.v1+json";
  await pushManifest(
    source.url,
    "bench/app",
    "v1",
    { schemaVersion: 2, mediaType, config, layers },
    mediaType,
  );
  const ref = `${source.host}/bench/app:v1`;
  // the stores both tools push from: dist's store, and an OCI layout skopeo wrote
  const store = `${work}/store`;
  await run([...dist, "fetch", "--root", store, "-q", ref]);
  await run([
    "skopeo",
    "copy",
    "-q",
    "--src-tls-verify=false",
    `docker://${ref}`,
    `oci:${work}/layout:v1`,
  ]);

  const cases: {
    name: string;
    dist: (n: number, host: string) => string[];
    skopeo: (n: number, host: string) => string[];
  }[] = [
    {
      name: "copy registry → registry",
      dist: (n, host) => [...dist, "copy", "-q", ref, `${host}/dist-copy-${n}/app:v1`],
      skopeo: (n, host) => [
        "skopeo",
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        `docker://${ref}`,
        `docker://${host}/skopeo-copy-${n}/app:v1`,
      ],
    },
    {
      name: "push store → registry",
      dist: (n, host) => [
        ...dist,
        "push",
        "--root",
        store,
        "-q",
        ref,
        `${host}/dist-push-${n}/app:v1`,
      ],
      skopeo: (n, host) => [
        "skopeo",
        "copy",
        "-q",
        "--dest-tls-verify=false",
        `oci:${work}/layout:v1`,
        `docker://${host}/skopeo-push-${n}/app:v1`,
      ],
    },
  ];
  const rows: string[][] = [];
  for (const c of cases) {
    const d: Measured[] = [];
    const s: Measured[] = [];
    for (let n = -1; n < RUNS; n++) {
      const pair = n % 2 === 0
        ? [await measure((h) => c.dist(n + 1, h)), await measure((h) => c.skopeo(n + 1, h))]
        : [await measure((h) => c.skopeo(n + 1, h)), await measure((h) => c.dist(n + 1, h))]
          .reverse();
      if (n < 0) continue; // the first pair warms caches up
      d.push(pair[0]);
      s.push(pair[1]);
    }
    const dm = median(d.map((m) => m.seconds));
    const sm = median(s.map((m) => m.seconds));
    const rss = Math.max(...d.map((m) => m.rssMiB));
    const ok = dm / sm <= MAX_RATIO && rss <= MAX_RSS_MIB;
    if (!ok) failed = true;
    rows.push([
      c.name,
      dm.toFixed(2) + " s",
      sm.toFixed(2) + " s",
      (dm / sm).toFixed(2) + ` (≤ ${MAX_RATIO})`,
      rss.toFixed(0) + ` MiB (≤ ${MAX_RSS_MIB})`,
      ok ? "ok" : "MISSED",
    ]);
  }
  const header = ["work", "dist", "skopeo copy", "ratio", "dist peak RSS", ""];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) {
    console.log(row.map((v, i) => v.padEnd(widths[i])).join("  "));
  }
  console.log(
    `(${LAYERS} × ${LAYER_MIB} MiB; median of ${RUNS} alternating pairs, each ending in sync)`,
  );
} finally {
  await source.stop();
  await destination.stop();
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
