/**
 * Benchmark: `dist ingest` of 1 GiB from a pipe against `openssl dgst -sha256` of the same pipe,
 * in the same run, each command ending in `sync`.
 *
 * - wall time at most 1.2× openssl's (`cat FILE | dist ingest …` vs `cat FILE | openssl dgst
 *   -sha256`; dist also writes, flushes and commits the blob), as issue 14 asks to keep
 * - peak RSS of the dist process at most 100 MiB
 *
 * The runs alternate between the tools; medians are compared (the best run is shown too).
 * Prints a table; exits 1 when a target is missed.
 *
 *     deno run -A bench/ingest.ts [--runs N] [--size MiB]
 */
// deno-lint-ignore-file no-console
import { removeTree, requireTool } from "../tests/_helpers/temp.ts";
import { flag, median } from "./_common.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;

const RUNS = flag("runs", 5);
const SIZE = flag("size", 1024) * MiB;
const MAX_RATIO = 1.2;
const MAX_RSS_MIB = 100;

/** Runs a shell pipeline; returns wall seconds, stdout and stderr. */
async function timeShell(
  script: string,
): Promise<{ seconds: number; stdout: string; stderr: string }> {
  const start = performance.now();
  const result = await new Deno.Command("sh", {
    args: ["-c", `${script}; sync`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  const decoder = new TextDecoder();
  const stdout = decoder.decode(result.stdout);
  const stderr = decoder.decode(result.stderr);
  if (!result.success) throw new Error(`${script} failed:\n${stderr}`);
  return { seconds, stdout, stderr };
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

await requireTool("openssl");
await requireTool("/usr/bin/time");
const work = await Deno.makeTempDir({ prefix: "dist-bench-ingest-" });
let failed = false;
try {
  const file = `${work}/data`;
  await timeShell(`head -c ${SIZE} /dev/urandom > ${quote(file)}`);
  const hex = (await timeShell(`openssl dgst -sha256 -r ${quote(file)}`)).stdout.split(" ")[0];
  const digest = `sha256:${hex}`;

  const openssl: number[] = [];
  const dist: number[] = [];
  const rss: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const root = `${work}/store`;
    const runOpenssl = async () => {
      const { seconds, stdout } = await timeShell(
        `cat ${quote(file)} | openssl dgst -sha256 -r`,
      );
      if (!stdout.startsWith(hex)) throw new Error(`openssl computed ${stdout}`);
      openssl.push(seconds);
    };
    const runDist = async () => {
      const { seconds, stderr } = await timeShell(
        `cat ${quote(file)} | /usr/bin/time -f 'RSS %M' ${quote(Deno.execPath())} run -A ` +
          `${quote(CLI)} ingest --root ${quote(root)} --expected-digest ${digest} ` +
          `--expected-size ${SIZE} bench`,
      );
      const kib = Number(/RSS (\d+)/.exec(stderr)?.[1]);
      const blob = await Deno.stat(`${root}/blobs/sha256/${hex}`);
      if (blob.size !== SIZE) throw new Error(`dist stored ${blob.size} bytes`);
      dist.push(seconds);
      rss.push(kib / 1024);
      await removeTree(root);
    };
    // alternate which tool goes first, so neither always meets a warm or cold cache
    if (run % 2 === 0) {
      await runOpenssl();
      await runDist();
    } else {
      await runDist();
      await runOpenssl();
    }
  }

  const throughput = (seconds: number) => SIZE / MiB / seconds;
  const ratio = median(dist) / median(openssl);
  const bestRatio = Math.min(...dist) / Math.min(...openssl);
  const peak = Math.max(...rss);
  const ratioOk = ratio <= MAX_RATIO;
  const rssOk = peak <= MAX_RSS_MIB;
  failed = !ratioOk || !rssOk;
  const rows = [
    ["", "median", "best", "target", ""],
    [
      "openssl dgst -sha256",
      `${median(openssl).toFixed(2)} s  ${throughput(median(openssl)).toFixed(0)} MiB/s`,
      `${Math.min(...openssl).toFixed(2)} s`,
      "",
      "",
    ],
    [
      "dist ingest",
      `${median(dist).toFixed(2)} s  ${throughput(median(dist)).toFixed(0)} MiB/s`,
      `${Math.min(...dist).toFixed(2)} s`,
      "",
      "",
    ],
    [
      "time dist/openssl",
      `${ratio.toFixed(2)}×`,
      `${bestRatio.toFixed(2)}×`,
      `≤ ${MAX_RATIO}×`,
      ratioOk ? "ok" : "MISSED",
    ],
    [
      "dist peak RSS",
      `${median(rss).toFixed(0)} MiB`,
      `max ${peak.toFixed(0)} MiB`,
      `≤ ${MAX_RSS_MIB} MiB`,
      rssOk ? "ok" : "MISSED",
    ],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const row of rows) console.log(row.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd());
  const list = (values: number[]) => values.map((v) => v.toFixed(2)).join(" ");
  console.log(`runs (s): openssl ${list(openssl)}; dist ${list(dist)}`);
  console.log(`(${SIZE / MiB} MiB through a pipe, ${RUNS} runs each, alternating)`);
} finally {
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
