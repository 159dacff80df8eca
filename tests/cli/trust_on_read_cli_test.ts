/** A store changed on disk (a poisoned cache) is caught when read: unpack and export verify. */
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { buildLayer, pushImage } from "../_helpers/images.ts";
import { withRegistry } from "../_helpers/registry.ts";

/** Flips one byte of a stored blob in place, keeping its size. */
async function poison(root: string, digest: string): Promise<void> {
  const path = `${root}/blobs/sha256/${digest.slice(7)}`;
  await Deno.chmod(path, 0o644);
  const bytes = await Deno.readFile(path);
  bytes[Math.floor(bytes.length / 2)] ^= 0x20;
  await Deno.writeFile(path, bytes);
}

Deno.test("dist unpack and export refuse a config or layer changed on disk, and leave nothing", async () => {
  await withRegistry(async (registry, dir) => {
    const image = await pushImage(registry.url, "trust/app", {
      layers: [await buildLayer({ "etc/motd": "hello\n".repeat(50) }, "gzip")],
      config: { Cmd: ["/bin/true"] },
      tag: "v1",
    });
    const ref = `${registry.host}/trust/app:v1`;
    for (
      const [what, digest] of [["config", image.config.digest], ["layer", image.layers[0].digest]]
    ) {
      const root = `${dir}/${what}`;
      const fetched = await runDist(["fetch", "--root", root, "-q", ref]);
      assert.equal(fetched.code, 0, fetched.stderr);
      await poison(root, digest);
      const unpacked = await runDist(["unpack", "--root", root, ref, `${dir}/${what}-bundle`]);
      assert.equal(unpacked.code, 1, unpacked.stderr);
      assert.match(unpacked.stderr, new RegExp(`${digest}.*digest|digest.*${digest}`));
      assert.equal(await Deno.lstat(`${dir}/${what}-bundle`).then(() => true, () => false), false);
      const exported = await runDist(["export", "--root", root, "-o", `${dir}/${what}.tar`, ref]);
      assert.equal(exported.code, 1, exported.stderr);
      assert.match(exported.stderr, /digest/);
      assert.equal(await Deno.lstat(`${dir}/${what}.tar`).then(() => true, () => false), false);
    }
  });
});
