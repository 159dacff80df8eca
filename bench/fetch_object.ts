/**
 * Benchmark: `dist fetch-object REPO@DIGEST > /dev/null` of a 256 MiB incompressible blob from a
 * local registry against `curl -s -o /dev/null` of the same blob URL, in the same run.
 *
 * Target: the median wall time of `deno run -A cli.ts fetch-object` (the documented way to run
 * dist) at most 1.5× curl's. Also shown, without a target: the single-file bundle (`dist.js`),
 * `curl | openssl dgst -sha256`, which like dist verifies every byte (curl alone verifies none),
 * and `openssl dgst -sha256` of the registry's own copy of the blob (page cache, no network): the
 * cost of the hash alone, which bounds how close to curl any verifying client can get.
 * After one warm-up each, the tools run in turn, starting with a different one each round; prints
 * every time, the medians and the ratios; exits 1 when the target is missed.
 *
 *     deno run -A bench/fetch_object.ts [--runs N] [--size-mib N]
 */
// deno-lint-ignore-file no-console
import { startRegistry } from "../tests/_helpers/registry.ts";
import { removeTree, requireTool } from "../tests/_helpers/temp.ts";
import { Digester } from "../content/digest.ts";
import { buildBundle, flag, median } from "./_common.ts";

const PROJECT = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;
const TARGET = 1.5;
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

await requireTool("curl");
await requireTool("openssl");
const work = await Deno.makeTempDir({ prefix: "dist-bench-fetch-object-" });
const registry = await startRegistry();
let failed = false;
try {
  const bundle = await buildBundle(work);
  const digest = await pushRandomBlob(registry.url, "bench/blob", SIZE);
  const url = `${registry.url}/v2/bench/blob/blobs/${digest}`;
  const ref = `${registry.host}/bench/blob@${digest}`;
  const hex = digest.slice("sha256:".length);
  const stored = `${registry.storage}/docker/registry/v2/blobs/sha256/${
    hex.slice(0, 2)
  }/${hex}/data`;
  const deno = (script: string) => () =>
    timed(Deno.execPath(), ["run", "--quiet", "-A", script, "fetch-object", ref]);
  const tools: [string, () => Promise<number>][] = [
    ["curl -o /dev/null", () => timed("curl", ["-s", "-f", "-o", "/dev/null", url])],
    ["dist (deno run cli.ts)", deno(`${PROJECT}cli.ts`)],
    ["dist (dist.js bundle)", deno(bundle)],
    [
      "curl | openssl dgst -sha256",
      () =>
        timed("bash", ["-o", "pipefail", "-c", 'curl -s -f "$1" | openssl dgst -sha256', "-", url]),
    ],
    ["openssl dgst (hash alone)", () => timed("openssl", ["dgst", "-sha256", stored])],
  ];
  const times = tools.map(() => [] as number[]);
  for (const [, run] of tools) await run(); // warm-up: module cache, page cache
  for (let round = 0; round < RUNS; round++) {
    for (let i = 0; i < tools.length; i++) {
      const k = (round + i) % tools.length; // who goes first changes every round
      times[k].push(await tools[k][1]());
    }
  }
  const curl = median(times[0]);
  const ratio = median(times[1]) / curl;
  console.log(`fetch-object of a ${SIZE / MiB} MiB blob to /dev/null, ${RUNS} runs each (ms)`);
  tools.forEach(([name], k) => {
    const line = `  ${name.padEnd(28)} median ${median(times[k]).toFixed(0).padStart(5)}  ` +
      `×${(median(times[k]) / curl).toFixed(2)}   [${times[k].map((v) => v.toFixed(0)).join(" ")}]`;
    console.log(line);
  });
  console.log(
    `  ratio ${ratio.toFixed(2)} (target ≤ ${TARGET} for deno run cli.ts)  ` +
      (ratio <= TARGET ? "ok" : "MISSED"),
  );
  failed = ratio > TARGET;
} finally {
  await registry.stop();
  await removeTree(work);
}
if (failed) Deno.exit(1);
