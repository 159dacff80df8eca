/** A fetch in progress holds a lease: `dist delete` loops cannot break the image it records. */
import assert from "node:assert/strict";
import { runDist, spawnDist } from "../_helpers/cli.ts";
import { buildLayer, compressLayer, pushImage } from "../_helpers/images.ts";
import { randomBytes } from "../_helpers/bytes.ts";
import { withRegistry } from "../_helpers/registry.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";

Deno.test("dist list -q | xargs dist delete, looping during two fetches, leaves both images whole", async () => {
  await withRegistry(async (registry, dir) => {
    await pushImage(registry.url, "lease/app", {
      layers: [
        await buildLayer({ "etc/app": "app\n" }, "gzip"),
        await buildLayer({ "srv/a": randomBytes(3 << 20) }, "none"),
        await buildLayer({ "srv/b": randomBytes(3 << 20) }, "none"),
      ],
      tag: "v1",
    });
    // slow blobs keep the fetches going while the deletes run
    const proxy = await startFaultProxy(registry.url, { bytesPerSecond: 6 << 20 });
    const root = `${dir}/store`;
    try {
      const ref = `${proxy.host}/lease/app:v1`;
      const fetches = [0, 1].map(() =>
        spawnDist(["fetch", "--root", root, "-q", "--max-concurrent-downloads", "1", ref]).output()
      );
      let running = true;
      const done = Promise.all(fetches).finally(() => (running = false));
      let rounds = 0;
      while (running) {
        const listed = await runDist(["list", "--root", root, "-q"]);
        const digests = listed.stdout.split("\n").filter((l) => l.startsWith("sha256:"));
        if (digests.length) await runDist(["delete", "--root", root, ...digests]);
        rounds++;
      }
      const results = await done;
      for (const result of results) {
        assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
      }
      assert.ok(rounds >= 3, `only ${rounds} delete rounds ran during the fetches`);
      // the recorded image is whole: it unpacks from the store alone
      const unpacked = await runDist(["unpack", "--root", root, ref, `${dir}/bundle`]);
      assert.equal(unpacked.code, 0, unpacked.stderr);
      // and once the fetches are over, their leases are gone: unused content can go again
      const leases = [...Deno.readDirSync(`${root}/leases`)];
      assert.deepEqual(leases, []);
    } finally {
      await proxy.stop();
    }
  });
});

Deno.test("a lease left by a killed fetch protects nothing", async () => {
  await withRegistry(async (registry, dir) => {
    const image = await pushImage(registry.url, "lease/dead", {
      layers: [compressLayer(randomBytes(4 << 20), "none")],
      tag: "v1",
    });
    const proxy = await startFaultProxy(registry.url, { bytesPerSecond: 2 << 20 });
    const root = `${dir}/store`;
    try {
      const child = spawnDist(["fetch", "--root", root, "-q", `${proxy.host}/lease/dead:v1`]);
      // killed once the config is in and the layer on its way
      const config = `${root}/blobs/sha256/${image.config.digest.slice(7)}`;
      for (let i = 0; i < 200 && !(await Deno.lstat(config).then(() => true, () => false)); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill("SIGKILL");
      await child.output();
      assert.equal([...Deno.readDirSync(`${root}/leases`)].length, 1); // left behind
      const deleted = await runDist(["delete", "--root", root, image.config.digest]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.deepEqual([...Deno.readDirSync(`${root}/leases`)], []); // cleared on the way
    } finally {
      await proxy.stop();
    }
  });
});
