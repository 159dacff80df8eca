/**
 * Benchmark: `skopeo copy` of an 8-layer image from `dist serve` against from `docker-registry`
 * serving the same content, side by side; target: from dist at most 1.0× the time from the
 * registry. Also small manifest GETs per second against each (16 clients, 3 s).
 *
 * Both servers hold the same image (dist copies it from the registry into its store first); runs
 * alternate, each into a fresh OCI layout and ending in `sync`; medians are compared.
 *
 *     deno run -A bench/serve.ts [--runs N] [--layer-mib N] [--layers N]
 */
// deno-lint-ignore-file no-console
import { startRegistry } from "../tests/_helpers/registry.ts";
import { pushBlob, pushManifest } from "../tests/_helpers/push.ts";
import { randomBytes } from "../tests/_helpers/images.ts";
import { startServe } from "../tests/_helpers/serve.ts";
import { removeTree, requireTool } from "../tests/_helpers/temp.ts";
import type { Descriptor } from "../content/descriptor.ts";
import { benchConfig, flag, median } from "./_common.ts";

const RUNS = flag("runs", 3);
const LAYERS = flag("layers", 8);
const LAYER_MIB = flag("layer-mib", 128);
const MAX_RATIO = 1.0;
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

async function run(program: string, args: string[]): Promise<number> {
  await new Deno.Command("sync").output();
  const start = performance.now();
  const result = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" })
    .output();
  await new Deno.Command("sync").output();
  if (!result.success) throw new Error(new TextDecoder().decode(result.stderr));
  return (performance.now() - start) / 1000;
}

/** Manifest GETs per second from 16 concurrent clients over 3 s. */
async function manifestRate(url: string): Promise<number> {
  const deadline = performance.now() + 3000;
  let count = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (performance.now() < deadline) {
      const reply = await fetch(`${url}/v2/bench/app/manifests/v1`, {
        headers: { accept: MANIFEST },
      });
      await reply.arrayBuffer();
      count++;
    }
  }));
  return count / 3;
}

await requireTool("skopeo");
const registry = await startRegistry();
const work = await Deno.makeTempDir({ prefix: "dist-bench-serve-" });
let failed = false;
try {
  const layers: Descriptor[] = [];
  for (let i = 0; i < LAYERS; i++) {
    layers.push(
      await pushBlob(
        registry.url,
        "bench/app",
        randomBytes(LAYER_MIB << 20),
        "application/vnd.oci.image.layer.v1.tar",
      ),
    );
  }
  const config = await pushBlob(
    registry.url,
    "bench/app",
    benchConfig(layers),
    "application/vnd.oci.image.config.v1+json",
  );
  await pushManifest(registry.url, "bench/app", "v1", {
    schemaVersion: 2,
    mediaType: MANIFEST,
    config,
    layers,
  }, MANIFEST);
  const served = await startServe(`${work}/store`);
  try {
    const seeded = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "fetch",
        "--root",
        `${work}/store`,
        "-q",
        `${registry.host}/bench/app:v1`,
      ],
      stdout: "null",
    }).output();
    if (!seeded.success) throw new Error("could not fill dist's store");
    // the record is named after the registry; dist serve drops the host: same repository, same tag
    const copy = (host: string, n: number) => [
      "copy",
      "-q",
      "--src-tls-verify=false",
      `docker://${host}/bench/app:v1`,
      `oci:${work}/out-${n}:v1`,
    ];
    const fromDist: number[] = [];
    const fromRegistry: number[] = [];
    for (let n = -1; n < RUNS; n++) {
      const order = n % 2 === 0 ? [served.host, registry.host] : [registry.host, served.host];
      for (const host of order) {
        const seconds = await run("skopeo", copy(host, n + 10));
        await removeTree(`${work}/out-${n + 10}`);
        if (n >= 0) (host === served.host ? fromDist : fromRegistry).push(seconds);
      }
    }
    const d = median(fromDist);
    const r = median(fromRegistry);
    if (d / r > MAX_RATIO) failed = true;
    console.log(
      `skopeo copy of ${LAYERS} × ${LAYER_MIB} MiB, median of ${RUNS} alternating runs, each ending in sync`,
    );
    console.log(`  from dist serve       ${d.toFixed(2)} s`);
    console.log(`  from docker-registry  ${r.toFixed(2)} s`);
    console.log(
      `  ratio ${(d / r).toFixed(2)} (target ≤ ${MAX_RATIO})  ${
        d / r <= MAX_RATIO ? "ok" : "MISSED"
      }`,
    );
    const distRate = await manifestRate(served.url);
    const registryRate = await manifestRate(registry.url);
    console.log(
      `manifest GETs per second (16 clients, 3 s): dist serve ${
        distRate.toFixed(0)
      }, docker-registry ${registryRate.toFixed(0)}`,
    );
  } finally {
    await served.stop();
  }
} finally {
  await registry.stop();
  await removeTree(work);
}
Deno.exit(failed ? 1 : 0);
