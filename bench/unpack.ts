/**
 * Benchmark: unpacking a ~200 MB Debian-like rootfs (one gzip layer made by GNU tar from parts of
 * this machine's /usr and /etc: Python and Perl libraries, binaries, zoneinfo's symlinks) with
 * `unpackImage` against `umoci unpack` of the same OCI layout, in the same run.
 *
 * Targets (issue 14): dist's median wall time at most 0.45× umoci's, its peak RSS at most 100 MiB.
 * Both run as separate processes (dist through a small Deno child calling `unpackImage`), each
 * command ending in `sync`, alternating which goes first, after one warm-up pair, into fresh
 * bundle directories. The layer is built once and cached under `.bench/unpack/`. Prints every
 * time, the medians and the ratio; exits 1 when a target is missed.
 *
 *     deno run -A bench/unpack.ts [--runs N]
 */
// deno-lint-ignore-file no-console
import { unpackImage } from "../content/bundle/unpack.ts";
import { Digester, parseDigest } from "../content/digest.ts";
import { Store } from "../content/store/store.ts";
import { removeTree, requireTool } from "../tests/_helpers/temp.ts";
import { flag, median } from "./_common.ts";

const PATHS = [
  "usr/lib/python3.11",
  "usr/lib/python3",
  "usr/sbin",
  "usr/share/perl",
  "usr/share/perl5",
  "usr/lib/x86_64-linux-gnu/perl",
  "usr/share/zoneinfo",
  "usr/libexec",
  "etc",
];
const TARGET_RATIO = 0.45;
const TARGET_RSS_MIB = 100;
const WORK = new URL("../.bench/unpack/", import.meta.url).pathname;
const LAYOUT = `${WORK}layout`;

/** Child mode: `--child MANIFEST BUNDLE` unpacks and exits. */
if (Deno.args[0] === "--child") {
  await unpackImage(await Store.open(LAYOUT), parseDigest(Deno.args[1]), Deno.args[2]);
  Deno.exit(0);
}

async function sh(script: string): Promise<string> {
  const result = await new Deno.Command("bash", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!result.success) throw new Error(`${script}: ${new TextDecoder().decode(result.stderr)}`);
  return new TextDecoder().decode(result.stdout);
}

async function digestFile(path: string): Promise<string> {
  const digester = new Digester();
  const file = await Deno.open(path);
  const buffer = new Uint8Array(1 << 20);
  while (true) {
    const n = await file.read(buffer);
    if (n === null) break;
    digester.update(buffer.subarray(0, n));
  }
  file.close();
  return digester.digest();
}

/** Builds the layout once: GNU tar | gzip -6 as the layer, then config, manifest, index. */
interface Built {
  manifest: string;
  entries: string;
  uncompressed: number;
  compressed: number;
}

async function buildLayout(): Promise<Built> {
  const marker = `${WORK}image.json`;
  try {
    return JSON.parse(await Deno.readTextFile(marker));
  } catch {
    // build it below
  }
  await removeTree(WORK).catch(() => {});
  await Deno.mkdir(`${LAYOUT}/blobs/sha256`, { recursive: true });
  const paths = PATHS.filter((p) => {
    try {
      Deno.statSync(`/${p}`);
      return true;
    } catch {
      return false;
    }
  });
  console.log(`building the layer from /${paths.join(" /")} …`);
  await sh(
    `tar --format=pax --sort=name --warning=none --ignore-failed-read -C / -cf ${WORK}layer.tar ${
      paths.join(" ")
    } && gzip -6 -c ${WORK}layer.tar > ${WORK}layer.tar.gz`,
  );
  const diffId = await digestFile(`${WORK}layer.tar`);
  const layerDigest = await digestFile(`${WORK}layer.tar.gz`);
  const layerSize = (await Deno.stat(`${WORK}layer.tar.gz`)).size;
  await Deno.rename(`${WORK}layer.tar.gz`, `${LAYOUT}/blobs/sha256/${layerDigest.slice(7)}`);
  const uncompressed = (await Deno.stat(`${WORK}layer.tar`)).size;
  await Deno.remove(`${WORK}layer.tar`);
  const put = async (value: unknown) => {
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    const digester = new Digester();
    digester.update(bytes);
    const digest = digester.digest();
    await Deno.writeFile(`${LAYOUT}/blobs/sha256/${digest.slice(7)}`, bytes);
    return { digest, size: bytes.length };
  };
  const config = await put({
    architecture: "amd64",
    os: "linux",
    config: { Cmd: ["/bin/sh"], Env: ["PATH=/usr/sbin:/usr/bin"] },
    rootfs: { type: "layers", diff_ids: [diffId] },
  });
  const manifest = await put({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: layerDigest,
      size: layerSize,
    }],
  });
  await Deno.writeTextFile(`${LAYOUT}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  await Deno.writeTextFile(
    `${LAYOUT}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifest,
        annotations: { "org.opencontainers.image.ref.name": "bench" },
      }],
    }),
  );
  const entries = (await sh(`tar -tzf ${LAYOUT}/blobs/sha256/${layerDigest.slice(7)} | wc -l`))
    .trim();
  const meta = { manifest: manifest.digest, entries, uncompressed, compressed: layerSize };
  await Deno.writeTextFile(marker, JSON.stringify(meta));
  return meta;
}

/**
 * Runs `command` under GNU time, ending in `sync` (umoci flushes nothing; dist flushes nothing
 * either, but the comparison is "to durable"): wall seconds and peak RSS in MiB.
 */
async function timed(command: string[]): Promise<{ seconds: number; rssMiB: number }> {
  const line = command.map((a) => `'${a}'`).join(" ");
  const start = performance.now();
  const result = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%M", "sh", "-c", `${line} >/dev/null && sync`],
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - start) / 1000;
  const stderr = new TextDecoder().decode(result.stderr).trim();
  if (!result.success) throw new Error(`${line} failed: ${stderr}`);
  return { seconds, rssMiB: Number(stderr.split("\n").at(-1)) / 1024 };
}

await requireTool("umoci");
await requireTool("tar");
const runs = flag("runs", 5);
const built = await buildLayout();
const manifest = built.manifest;
console.log(
  `image ${manifest}: one layer, ${built.entries} entries, ${
    (built.uncompressed / 1e6).toFixed(0)
  } MB uncompressed, ${(built.compressed / 1e6).toFixed(0)} MB gzip`,
);

const self = new URL(import.meta.url).pathname;
const tools = {
  dist: (bundle: string) =>
    timed([Deno.execPath(), "run", "-A", "--quiet", self, "--child", manifest, bundle]),
  umoci: (bundle: string) => timed(["umoci", "unpack", "--image", `${LAYOUT}:bench`, bundle]),
};
const times: Record<keyof typeof tools, number[]> = { dist: [], umoci: [] };
let distRss = 0;
// Bundles are removed only at the end: ext4 skips inodes freed in the last minutes when it
// allocates, so a tool that runs right after a 10,000-file removal pays for it (up to 1.5 s here).
const bundles = `${WORK}bundles`;
await removeTree(bundles).catch(() => {});
await Deno.mkdir(bundles, { recursive: true });
try {
  for (let run = 0; run <= runs; run++) {
    // the order alternates, so neither tool always meets the other's dirty pages or warm cache
    const order = run % 2 === 0 ? ["umoci", "dist"] as const : ["dist", "umoci"] as const;
    for (const name of order) {
      const { seconds, rssMiB } = await tools[name](`${bundles}/${name}-${run}`);
      if (run === 0) {
        console.log(`${name.padEnd(6)} warm-up ${seconds.toFixed(2)} s`);
        continue;
      }
      times[name].push(seconds);
      if (name === "dist") distRss = Math.max(distRss, rssMiB);
      console.log(
        `${name.padEnd(6)} run ${run}   ${seconds.toFixed(2)} s  ${rssMiB.toFixed(0)} MiB`,
      );
    }
  }
} finally {
  await removeTree(bundles);
}
const dist = median(times.dist);
const umoci = median(times.umoci);
const ratio = dist / umoci;
const met = ratio <= TARGET_RATIO && distRss <= TARGET_RSS_MIB;
console.log(
  `\nunpack ~200 MB rootfs, to durable: dist ${dist.toFixed(2)} s, umoci ${umoci.toFixed(2)} s, ` +
    `ratio ${ratio.toFixed(2)} (target ≤ ${TARGET_RATIO}); dist peak RSS ${
      distRss.toFixed(0)
    } MiB ` +
    `(target ≤ ${TARGET_RSS_MIB}): ${met ? "PASS" : "FAIL"}`,
);
if (!met) Deno.exit(1);
