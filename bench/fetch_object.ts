/**
 * Benchmark: `dist fetch-object REPO@DIGEST > /dev/null` of a 256 MiB incompressible blob from a
 * local registry against `curl -s -o /dev/null` of the same blob URL, in the same run.
 *
 * Target: dist's median wall time at most 1.5× curl's. Runs alternate between the two tools after
 * one warm-up each; prints every time, the medians and the ratio; exits 1 when the target is missed.
 *
 *     deno run -A bench/fetch_object.ts [--runs N] [--size-mib N]
 */
// deno-lint-ignore-file no-console
import { startRegistry } from "../tests/_helpers/registry.ts";
import { requireTool } from "../tests/_helpers/temp.ts";
import { Digester } from "../content/digest.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;
const TARGET = 1.5;

function flag(name: string, fallback: number): number {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 ? Number(Deno.args[at + 1]) : fallback;
}
const RUNS = flag("runs", 5);
const SIZE = flag("size-mib", 256) * MiB;

/** Uploads `size` random bytes as one blob, streaming them (never all in memory). */
async function pushRandomBlob(registryUrl: string, repository: string, size: number) {
  // written to a file first (hashed on the way), then uploaded from it as a stream
  const chunks = function* () {
    const chunk = new Uint8Array(MiB);
    for (let done = 0; done < size; done += MiB) {
      for (let i = 0; i < MiB; i += 65536) crypto.getRandomValues(chunk.subarray(i, i + 65536));
      yield chunk.subarray(0, Math.min(MiB, size - done));
    }
  };
  const dir = await Deno.makeTempDir({ prefix: "dist-bench-" });
  const path = `${dir}/blob`;
  try {
    const digester = new Digester();
    const file = await Deno.open(path, { write: true, create: true });
    for (const chunk of chunks()) {
      digester.update(chunk);
      await file.write(chunk);
    }
    file.close();
    const digest = digester.digest();
    const start = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: "POST" });
    await start.body?.cancel();
    const location = new URL(start.headers.get("location")!, registryUrl);
    location.searchParams.set("digest", digest);
    const body = await Deno.open(path);
    const put = await fetch(location, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "content-length": String(size) },
      body: body.readable,
    });
    const text = await put.text();
    if (put.status !== 201) throw new Error(`upload failed: ${put.status} ${text}`);
    return digest;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function timed(command: string, args: string[]): Promise<number> {
  const started = performance.now();
  const result = await new Deno.Command(command, { args, stdout: "null", stderr: "piped" })
    .output();
  const elapsed = performance.now() - started;
  if (!result.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(result.stderr)}`);
  }
  return elapsed;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

await requireTool("curl");
const registry = await startRegistry();
let failed = false;
try {
  const digest = await pushRandomBlob(registry.url, "bench/blob", SIZE);
  const url = `${registry.url}/v2/bench/blob/blobs/${digest}`;
  const ref = `${registry.host}/bench/blob@${digest}`;
  const dist = () => timed(Deno.execPath(), ["run", "--quiet", "-A", CLI, "fetch-object", ref]);
  const curl = () => timed("curl", ["-s", "-f", "-o", "/dev/null", url]);
  await dist(); // warm-up: module cache, page cache
  await curl();
  const times = { dist: [] as number[], curl: [] as number[] };
  for (let run = 0; run < RUNS; run++) {
    times.curl.push(await curl());
    times.dist.push(await dist());
  }
  const ratio = median(times.dist) / median(times.curl);
  const show = (values: number[]) => values.map((v) => v.toFixed(0)).join(" ");
  console.log(`fetch-object of a ${SIZE / MiB} MiB blob to /dev/null, ${RUNS} runs each (ms)`);
  console.log(`  curl  ${show(times.curl)}  median ${median(times.curl).toFixed(0)}`);
  console.log(`  dist  ${show(times.dist)}  median ${median(times.dist).toFixed(0)}`);
  console.log(
    `  ratio ${ratio.toFixed(2)} (target ≤ ${TARGET})  ${ratio <= TARGET ? "ok" : "MISSED"}`,
  );
  failed = ratio > TARGET;
} finally {
  await registry.stop();
}
if (failed) Deno.exit(1);
