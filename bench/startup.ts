/**
 * Benchmark: how fast `dist` starts, against a bare `deno run` of an empty file, side by side.
 *
 * - `deno run cli.ts --help` and the single-file bundle's `--help` (warm caches, as a user's
 *   second run): at most 1.3× the bare `deno run` (issue 14). The runs alternate between the
 *   three commands; medians of `--runs` rounds.
 * - The bundle's `--help` and `list` with a cold module cache (a fresh, empty DENO_DIR every run,
 *   as a CI runner's first step): under 150 ms.
 *
 * Prints a table of medians; exits 1 when a target is missed.
 *
 *     deno run -A bench/startup.ts [--runs N]
 */
// deno-lint-ignore-file no-console
import { removeTree } from "../tests/_helpers/temp.ts";
import { buildBundle, flag, median } from "./_common.ts";

const PROJECT = new URL("../", import.meta.url).pathname;
const RUNS = flag("runs", 21);
const WARM_RATIO = 1.3;
const COLD_MS = 150;

/** Wall milliseconds of one `deno run` of `args`, with `denoDir` as its DENO_DIR. */
async function once(args: string[], denoDir?: string): Promise<number> {
  const start = performance.now();
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...args],
    env: denoDir ? { DENO_DIR: denoDir } : {},
    stdout: "null",
    stderr: "piped",
  }).output();
  const elapsed = performance.now() - start;
  if (!result.success) throw new Error(new TextDecoder().decode(result.stderr));
  return elapsed;
}

const work = await Deno.makeTempDir({ prefix: "dist-bench-startup-" });
let failed = false;
try {
  const bundle = await buildBundle(work);
  const empty = `${work}/empty.ts`;
  await Deno.writeTextFile(empty, "");
  const perms = ["--allow-read", "--allow-write", "--allow-env"];
  const warm: [string, string[]][] = [
    ["deno run of an empty file", [empty]],
    ["deno run cli.ts --help", [...perms, `${PROJECT}cli.ts`, "--help"]],
    ["deno run dist.js --help (the bundle)", [...perms, bundle, "--help"]],
  ];
  const times = warm.map(() => [] as number[]);
  for (const [, args] of warm) await once(args); // caches and page cache
  for (let run = 0; run < RUNS; run++) {
    for (let i = 0; i < warm.length; i++) {
      const k = (i + run) % warm.length; // which command goes first rotates
      times[k].push(await once(warm[k][1]));
    }
  }
  const bare = median(times[0]);
  console.log(`warm caches, medians of ${RUNS} rotating rounds; target ≤ ${WARM_RATIO}× bare\n`);
  for (let i = 0; i < warm.length; i++) {
    const ms = median(times[i]);
    const ratio = ms / bare;
    const verdict = i === 0 ? "" : ratio <= WARM_RATIO ? "ok" : "MISSED";
    if (verdict === "MISSED") failed = true;
    console.log(
      `${warm[i][0].padEnd(44)} ${ms.toFixed(0).padStart(5)} ms  ${ratio.toFixed(2)}×  ${verdict}`,
    );
  }

  console.log(`\ncold DENO_DIR, medians of ${RUNS} runs; target under ${COLD_MS} ms\n`);
  const cold: [string, string[]][] = [
    ["dist.js --help", [...perms, bundle, "--help"]],
    ["dist.js list, empty store", [...perms, bundle, "list", "--root", `${work}/store`]],
  ];
  for (const [name, args] of cold) {
    const runs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const denoDir = await Deno.makeTempDir({ dir: work });
      runs.push(await once(args, denoDir));
      await removeTree(denoDir);
    }
    const ms = median(runs);
    const verdict = ms < COLD_MS ? "ok" : "MISSED";
    if (verdict === "MISSED") failed = true;
    console.log(`${name.padEnd(44)} ${ms.toFixed(0).padStart(5)} ms  ${verdict}`);
  }
} finally {
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
