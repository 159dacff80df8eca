/**
 * A store changed on disk, whatever the change breaks first: a layer that no longer decompresses
 * or no longer parses as tar is reported as the digest mismatch it is, and an image index changed
 * to name another manifest is refused rather than followed.
 */
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { layerOf, writeImageLayout } from "../_helpers/layout.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";
import { digestOf } from "../../content/digest.ts";
import { seededBytes } from "../_helpers/bytes.ts";
import { withTempDir } from "../_helpers/temp.ts";

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

/** Overwrites a read-only stored blob in place, as a poisoned cache would. */
async function overwrite(root: string, digest: string, change: (b: Uint8Array) => void) {
  const path = `${root}/blobs/sha256/${digest.slice(7)}`;
  await Deno.chmod(path, 0o644);
  const bytes = await Deno.readFile(path);
  change(bytes);
  await Deno.writeFile(path, bytes);
}

Deno.test("dist unpack names a layer changed on disk as a digest mismatch, whatever breaks first", async () => {
  await withTempDir(async (dir) => {
    const tar = new Uint8Array(
      await new Response(writeTar([
        { header: { name: "etc/motd" }, body: new TextEncoder().encode("hello\n".repeat(20000)) },
        { header: { name: "bin/tool", mode: 0o755 }, body: seededBytes(100_000) },
      ])).arrayBuffer(),
    );
    let n = 0;
    for (const compression of ["gzip", "zstd", "none"] as const) {
      const layer = layerOf(tar, compression);
      const digest = digestOf(layer.bytes);
      // a byte in the first header, in the middle, near the end (a gzip or zstd trailer)
      for (const at of [100, layer.bytes.length >> 1, layer.bytes.length - 6]) {
        const root = `${dir}/store-${++n}`;
        const image = await writeImageLayout(root, [layer]);
        await overwrite(root, digest, (bytes) => void (bytes[at] ^= 0x55));
        const bundle = `${dir}/bundle-${n}`;
        const result = await runDist(["unpack", "--root", root, image.manifest, bundle]);
        const what = `${compression}, byte ${at}: ${result.stderr}`;
        assert.equal(result.code, 1, what);
        assert.match(
          result.stderr,
          new RegExp(`stored layer 1/1 ${digest}: expected digest ${digest}, got sha256:`),
          what,
        );
        assert.equal(result.stderr.trim().split("\n").length, 1, what);
        assert.equal(await exists(bundle), false, what);
      }
    }
  });
});

Deno.test("dist unpack refuses an image index changed on disk to name another manifest", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    const tarOf = async (text: string) =>
      new Uint8Array(
        await new Response(
          writeTar([{ header: { name: "which" }, body: new TextEncoder().encode(text) }]),
        ).arrayBuffer(),
      );
    const good = await writeImageLayout(root, [layerOf(await tarOf("good\n"), "gzip")]);
    const evil = await writeImageLayout(root, [layerOf(await tarOf("evil\n"), "gzip")], {
      tag: "other",
    });
    const manifestSize = async (digest: string) =>
      (await Deno.stat(`${root}/blobs/sha256/${digest.slice(7)}`)).size;
    const entry = async (digest: string) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest,
      size: await manifestSize(digest),
      platform: { architecture: "amd64", os: "linux" },
    });
    const indexBytes = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [await entry(good.manifest)],
    }));
    const indexDigest = digestOf(indexBytes);
    await Deno.writeFile(`${root}/blobs/sha256/${indexDigest.slice(7)}`, indexBytes);
    await Deno.chmod(`${root}/blobs/sha256/${indexDigest.slice(7)}`, 0o444);
    const records = JSON.parse(await Deno.readTextFile(`${root}/index.json`));
    records.manifests.push({
      mediaType: "application/vnd.oci.image.index.v1+json",
      digest: indexDigest,
      size: indexBytes.length,
      annotations: { "org.opencontainers.image.ref.name": "multi" },
    });
    await Deno.writeTextFile(`${root}/index.json`, JSON.stringify(records));
    const unpack = (bundle: string) =>
      runDist(["unpack", "--root", root, "--platform", "linux/amd64", "multi", bundle]);

    const before = await unpack(`${dir}/before`);
    assert.equal(before.code, 0, before.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/before/rootfs/which`), "good\n");

    // the index now names the other manifest (same length: only the digest differs)
    await overwrite(root, indexDigest, (bytes) => {
      const text = new TextDecoder().decode(bytes).replace(good.manifest, evil.manifest);
      bytes.set(new TextEncoder().encode(text));
    });
    const after = await unpack(`${dir}/after`);
    assert.equal(after.code, 1, after.stderr);
    assert.match(after.stderr, new RegExp(`index ${indexDigest}.*digest sha256:`));
    assert.equal(await exists(`${dir}/after`), false);
  });
});
