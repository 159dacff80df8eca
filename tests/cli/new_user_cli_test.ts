/** What a new user hits: several references at once, refusals before downloads, odd archives. */
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { buildLayer, pushImage } from "../_helpers/images.ts";
import { withRegistry } from "../_helpers/registry.ts";
import { layerOf, writeImageLayout } from "../_helpers/layout.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";
import { withTempDir } from "../_helpers/temp.ts";

const encoder = new TextEncoder();

Deno.test("dist fetch A B C tries every reference and reports each failure", async () => {
  await withRegistry(async (registry, dir) => {
    await pushImage(registry.url, "many/app", {
      layers: [await buildLayer({ "etc/a": "a\n" }, "gzip")],
      tag: "v1",
    });
    const result = await runDist([
      "fetch",
      "--root",
      `${dir}/store`,
      "-q",
      `${registry.host}/Bad:Ref`,
      `${registry.host}/many/missing:v1`,
      `${registry.host}/many/app:v1`,
    ]);
    assert.equal(result.code, 2, "the first failure (a bad reference) sets the exit code");
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 2, result.stderr);
    assert.match(lines[0], /invalid reference|invalid/);
    assert.match(lines[1], /many\/missing:v1: not found/);
    const images = await runDist(["images", "--root", `${dir}/store`, "-q"]);
    assert.equal(images.stdout, `${registry.host}/many/app:v1\n`, "the good one was fetched");
  });
});

Deno.test("fetch-object with a media type the registry will not serve shows the registry's words", async () => {
  await withRegistry(async (registry, dir) => {
    await pushImage(registry.url, "types/app", {
      layers: [await buildLayer({ "etc/a": "a\n" }, "gzip")],
      tag: "v1",
    });
    void dir;
    const result = await runDist([
      "fetch-object",
      `${registry.host}/types/app:v1`,
      "mediatype:application/vnd.docker.distribution.manifest.v2+json",
    ]);
    assert.equal(result.code, 3);
    assert.match(
      result.stderr,
      /MANIFEST_UNKNOWN: OCI manifest found, but accept header does not support OCI manifests/,
    );
    assert.doesNotMatch(result.stderr, /not found/);
  });
});

Deno.test("dist pull REF FILE refuses before downloading anything (exit 2)", async () => {
  await withRegistry(async (registry, dir) => {
    await pushImage(registry.url, "pull/app", {
      layers: [await buildLayer({ "etc/a": "a\n" }, "gzip")],
      tag: "v1",
    });
    await Deno.writeTextFile(`${dir}/afile`, "not a directory");
    const result = await runDist([
      "pull",
      "--root",
      `${dir}/store`,
      `${registry.host}/pull/app:v1`,
      `${dir}/afile`,
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /afile is not a directory/);
    const blobs = await Deno.readDir(`${dir}/store/blobs/sha256`)[Symbol.asyncIterator]().next()
      .catch(() => ({ done: true }));
    assert.equal(blobs.done, true, "nothing was downloaded");
  });
});

Deno.test("dist import takes Docker 25's null manifests, and says which of two same-named images it kept", async () => {
  await withTempDir(async (dir) => {
    // a docker-archive whose index.json says "manifests": null, as Docker 25.0 wrote
    const layout = `${dir}/layout`;
    const layerTar = new Uint8Array(
      await new Response(writeTar([{ header: { name: "etc/x" }, body: encoder.encode("x\n") }]))
        .arrayBuffer(),
    );
    const image = await writeImageLayout(layout, [layerOf(layerTar, "none")]);
    const manifest = JSON.parse(
      await Deno.readTextFile(`${layout}/blobs/sha256/${image.manifest.slice(7)}`),
    );
    const docker = [{
      Config: `blobs/sha256/${manifest.config.digest.slice(7)}`,
      RepoTags: ["example.com/null/app:v1"],
      Layers: manifest.layers.map((l: { digest: string }) => `blobs/sha256/${l.digest.slice(7)}`),
    }];
    await Deno.writeTextFile(`${layout}/manifest.json`, JSON.stringify(docker));
    await Deno.writeTextFile(`${layout}/index.json`, '{"schemaVersion":2,"manifests":null}');
    const tar = await new Deno.Command("tar", {
      args: ["-cf", `${dir}/null.tar`, "-C", layout, "."],
    }).output();
    assert.ok(tar.success);
    const imported = await runDist(["import", "--root", `${dir}/a`, `${dir}/null.tar`]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /imported example\.com\/null\/app:v1 sha256:/);

    // an OCI layout naming two different manifests the same
    const twice = `${dir}/twice`;
    const first = await writeImageLayout(twice, [layerOf(layerTar, "none")], { tag: "same" });
    const other = new Uint8Array(
      await new Response(writeTar([{ header: { name: "etc/y" }, body: encoder.encode("y\n") }]))
        .arrayBuffer(),
    );
    const second = await writeImageLayout(`${dir}/second`, [layerOf(other, "none")], {
      tag: "same",
    });
    await new Deno.Command("cp", { args: ["-r", `${dir}/second/blobs/.`, `${twice}/blobs/`] })
      .output();
    const index = JSON.parse(await Deno.readTextFile(`${twice}/index.json`));
    const secondIndex = JSON.parse(await Deno.readTextFile(`${dir}/second/index.json`));
    index.manifests.push(...secondIndex.manifests);
    await Deno.writeTextFile(`${twice}/index.json`, JSON.stringify(index));
    await new Deno.Command("tar", { args: ["-cf", `${dir}/twice.tar`, "-C", twice, "."] }).output();
    const warned = await runDist(["import", "--root", `${dir}/b`, `${dir}/twice.tar`]);
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(
      warned.stderr,
      new RegExp(`names two images same: kept ${first.manifest}, not ${second.manifest}`),
    );
  });
});

Deno.test("short digests work wherever a digest does; an ambiguous one lists the candidates; a name without its registry gets a hint", async () => {
  await withRegistry(async (registry, dir) => {
    const image = await pushImage(registry.url, "short/app", {
      layers: [await buildLayer({ "etc/a": "a\n" }, "gzip")],
      tag: "v1",
    });
    const root = `${dir}/store`;
    assert.equal(
      (await runDist(["fetch", "--root", root, "-q", `${registry.host}/short/app:v1`])).code,
      0,
    );
    const listed = await runDist(["images", "--root", root]);
    const short = /sha256:[0-9a-f]{12}/.exec(listed.stdout)![0];
    assert.ok(image.manifest.digest.startsWith(short));
    const unpacked = await runDist(["unpack", "--root", root, short, `${dir}/bundle`]);
    assert.equal(unpacked.code, 0, unpacked.stderr);
    const path = await runDist(["path", "--root", root, "-q", image.layers[0].digest.slice(0, 19)]);
    assert.equal(path.code, 0, path.stderr);
    assert.ok(path.stdout.trim().endsWith(image.layers[0].digest.slice(7)));
    // blobs until two share their first hex digit, then that digit is ambiguous
    const firsts = new Map<string, string[]>();
    for (let i = 0;; i++) {
      const listing = await runDist(["list", "--root", root, "-q"]);
      firsts.clear();
      for (const digest of listing.stdout.trim().split("\n")) {
        const key = digest.slice(0, 8);
        firsts.set(key, [...(firsts.get(key) ?? []), digest]);
      }
      if ([...firsts.values()].some((d) => d.length > 1)) break;
      const bytes = `blob ${i}\n`;
      await runDist([
        "ingest",
        "--root",
        root,
        "--expected-digest",
        await sha256(bytes),
        "--expected-size",
        String(bytes.length),
        `extra-${i}`,
      ], { stdin: bytes });
    }
    const [prefix, candidates] = [...firsts].find(([, d]) => d.length > 1)!;
    const ambiguous = await runDist(["path", "--root", root, prefix]);
    assert.equal(ambiguous.code, 2, ambiguous.stderr);
    for (const digest of candidates) assert.ok(ambiguous.stderr.includes(digest), ambiguous.stderr);
    const hinted = await runDist(["unpack", "--root", root, "short/app:v1", `${dir}/other`]);
    assert.equal(hinted.code, 3);
    assert.match(hinted.stderr, new RegExp(`did you mean ${registry.host}/short/app:v1\\?`));
  });
});

async function sha256(text: string): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
  return "sha256:" + [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("the last progress of a fetch stopped by Ctrl-C is what dist active shows", async () => {
  await withRegistry(async (registry, dir) => {
    const { compressLayer } = await import("../_helpers/images.ts");
    const { randomBytes } = await import("../_helpers/bytes.ts");
    const { startFaultProxy } = await import("../_helpers/fault_proxy.ts");
    const { spawnDist } = await import("../_helpers/cli.ts");
    const image = await pushImage(registry.url, "slow/app", {
      layers: [compressLayer(randomBytes(8 << 20), "none")],
      tag: "v1",
    });
    const proxy = await startFaultProxy(registry.url, { bytesPerSecond: 4 << 20 });
    const root = `${dir}/store`;
    try {
      const child = spawnDist(["fetch", "--root", root, "--json", `${proxy.host}/slow/app:v1`]);
      await child.stdin.close();
      await new Promise((resolve) => setTimeout(resolve, 1200));
      child.kill("SIGINT");
      const { code, stdout } = await child.output();
      assert.equal(code, 130);
      const layer = image.layers[0].digest;
      const events = new TextDecoder().decode(stdout).trim().split("\n").map((l) => JSON.parse(l))
        .filter((e) => e.digest === layer && e.status === "downloading");
      const last = events.at(-1);
      assert.ok(last && last.offset > 0 && last.offset < 8 << 20, JSON.stringify(last));
      const active = await runDist(["active", "--root", root, "--json"]);
      const ingest = active.stdout.trim().split("\n").map((l) => JSON.parse(l))
        .find((s) => s.ref === `layer-${layer}`);
      assert.equal(ingest?.offset, last.offset);
    } finally {
      await proxy.stop();
    }
  });
});
