/**
 * Benchmark: `dist --help` and `dist list` on an empty store start in under 150 ms, run from the
 * single-file bundle with a cold module graph (a fresh, empty DENO_DIR for every run, so nothing
 * is cached). `deno run cli.ts` with a warm cache is shown for comparison.
 * Prints a table of medians; exits 1 when a target is missed.
 *
 *     deno run -A bench/startup.ts [--runs N]
 */
// deno-lint-ignore-file no-console
import { removeTree } from "../tests/_helpers/temp.ts";
import { buildBundle, flag, median } from "./_common.ts";

const PROJECT = new URL("../", import.meta.url).pathname;
const RUNS = flag("runs", 15);
const TARGET_MS = 150;

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
  const perms = ["--allow-read", "--allow-write", "--allow-env"];
  const cases: [string, string[], boolean][] = [
    ["dist.js --help (cold DENO_DIR)", [...perms, bundle, "--help"], true],
    ["dist.js list, empty store (cold DENO_DIR)", [
      ...perms,
      bundle,
      "list",
      "--root",
      `${work}/store`,
    ], true],
    ["cli.ts --help (warm cache, no target)", [...perms, `${PROJECT}cli.ts`, "--help"], false],
  ];
  console.log(`median of ${RUNS} runs; target under ${TARGET_MS} ms for the bundle\n`);
  for (const [name, args, cold] of cases) {
    await once(args); // warm the page cache (and, for cli.ts, Deno's module cache)
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const denoDir = cold ? await Deno.makeTempDir({ dir: work }) : undefined;
      times.push(await once(args, denoDir));
      if (denoDir) await removeTree(denoDir);
    }
    const ms = median(times);
    const verdict = !cold ? "" : ms < TARGET_MS ? "ok" : "MISSED";
    if (verdict === "MISSED") failed = true;
    console.log(`${name.padEnd(44)} ${ms.toFixed(0).padStart(5)} ms  ${verdict}`);
  }
} finally {
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
