/** `dist check` finds missing and changed blobs; `--repair` fetches them again. */
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { buildLayer, pushImage } from "../_helpers/images.ts";
import { withRegistry } from "../_helpers/registry.ts";

Deno.test("dist check reports a changed and a missing blob, and --repair mends both", async () => {
  await withRegistry(async (registry, dir) => {
    const image = await pushImage(registry.url, "check/app", {
      layers: [
        await buildLayer({ "etc/a": "a\n".repeat(100) }, "gzip"),
        await buildLayer({ "etc/b": "b\n".repeat(100) }, "none"),
      ],
      tag: "v1",
    });
    const ref = `${registry.host}/check/app:v1`;
    const root = `${dir}/store`;
    assert.equal((await runDist(["fetch", "--root", root, "-q", ref])).code, 0);
    const clean = await runDist(["check", "--root", root]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(clean.stdout, `ok ${ref}\n`);

    const [first, second] = image.layers.map((l) => l.digest);
    const path = `${root}/blobs/sha256/${first.slice(7)}`;
    await Deno.chmod(path, 0o644);
    const bytes = await Deno.readFile(path);
    bytes[10] ^= 1;
    await Deno.writeFile(path, bytes);
    assert.equal((await runDist(["delete", "--root", root, "--force", second])).code, 0);
    const damaged = await runDist(["check", "--root", root, ref]);
    assert.equal(damaged.code, 1);
    assert.match(damaged.stderr, new RegExp(`damaged: .*corrupt ${first}`));
    assert.match(damaged.stderr, new RegExp(`missing ${second}`));

    const repaired = await runDist(["check", "--root", root, "--repair", ref]);
    assert.equal(repaired.code, 0, repaired.stderr);
    assert.equal(repaired.stdout, `ok ${ref}\n`);
    const unpacked = await runDist(["unpack", "--root", root, ref, `${dir}/bundle`]);
    assert.equal(unpacked.code, 0, unpacked.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/bundle/rootfs/etc/a`), "a\n".repeat(100));

    const unknown = await runDist(["check", "--root", root, "nothing/here:v1"]);
    assert.equal(unknown.code, 3, unknown.stderr);
  });
});
