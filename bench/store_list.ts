/**
 * Benchmark: `dist list` over 10,000 blobs and `dist active` over 1,000 ingests, each under 1 s
 * of wall time (the whole process, start-up included).
 *
 * Blobs are laid out as commits leave them (`blobs/sha256/<hex>`, read-only), written directly to
 * save the set-up time; ingests are made through the store API (written to, then closed).
 * Prints a table of medians; exits 1 when a target is missed.
 *
 *     deno run -A bench/store_list.ts [--runs N] [--blobs N] [--ingests N]
 */
// deno-lint-ignore-file no-console
import { Store } from "../content/store/store.ts";
import { digestOf } from "../content/digest.ts";
import { removeTree } from "../tests/_helpers/temp.ts";
import { flag, median } from "./_common.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;

const RUNS = flag("runs", 5);
const BLOBS = flag("blobs", 10_000);
const INGESTS = flag("ingests", 1_000);
const MAX_SECONDS = 1;

/** Runs dist; returns wall seconds and the number of output lines. */
async function time(args: string[]): Promise<{ seconds: number; lines: number }> {
  const start = performance.now();
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  if (!result.success) {
    throw new Error(`dist ${args.join(" ")} failed:\n${new TextDecoder().decode(result.stderr)}`);
  }
  const text = new TextDecoder().decode(result.stdout);
  return { seconds, lines: text.split("\n").filter((l) => l !== "").length };
}

const root = await Deno.makeTempDir({ prefix: "dist-bench-list-" });
let failed = false;
try {
  const store = await Store.open(root);
  const encoder = new TextEncoder();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < BLOBS; i++) {
    const bytes = encoder.encode(`blob ${i}\n`.repeat(1 + (i % 50)));
    pending.push(Deno.writeFile(store.blobPath(digestOf(bytes)), bytes, { mode: 0o444 }));
    if (pending.length === 256) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  for (let i = 0; i < INGESTS; i++) {
    const writer = await store.writer(`layer-bench-${i}`, { total: 1 << 20 });
    await writer.write(encoder.encode(`ingest ${i}\n`.repeat(1 + (i % 50))));
    await writer.close();
  }

  const cases = [
    { name: `dist list (${BLOBS} blobs)`, args: ["list"], lines: BLOBS + 1 },
    { name: "dist list -q", args: ["list", "-q"], lines: BLOBS },
    { name: "dist list --json", args: ["list", "--json"], lines: BLOBS },
    { name: `dist active (${INGESTS} ingests)`, args: ["active"], lines: INGESTS + 1 },
    { name: "dist active --json", args: ["active", "--json"], lines: INGESTS },
  ];
  const rows = [["command", "median", "best", "target", ""]];
  for (const c of cases) {
    const seconds: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const result = await time([...c.args, "--root", root]);
      if (result.lines !== c.lines) {
        throw new Error(`${c.name} printed ${result.lines} lines, want ${c.lines}`);
      }
      seconds.push(result.seconds);
    }
    const ok = median(seconds) < MAX_SECONDS;
    if (!ok) failed = true;
    rows.push([
      c.name,
      `${median(seconds).toFixed(3)} s`,
      `${Math.min(...seconds).toFixed(3)} s`,
      `< ${MAX_SECONDS} s`,
      ok ? "ok" : "MISSED",
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const row of rows) console.log(row.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd());
  console.log(`(wall time of the whole process, ${RUNS} runs each)`);
} finally {
  await removeTree(root);
}
Deno.exit(failed ? 1 : 0);
