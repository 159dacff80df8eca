import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { type Registry, withRegistry } from "../_helpers/registry.ts";
import { buildLayer, type PushedImage, pushImage, pushIndex } from "../_helpers/images.ts";

interface Pushed {
  ref: string;
  amd64: PushedImage;
  arm64: PushedImage;
}

/** `pull/web:v1`: an index of amd64 and arm64 images of two layers, with a runtime config. */
async function pushWeb(registry: Registry): Promise<Pushed> {
  const base = await buildLayer({
    "etc/hostname": "web\n",
    "usr/bin/serve": { content: "#!/bin/sh\necho serving\n", mode: 0o755 },
    "var/www/index.html": "<h1>old</h1>\n",
  }, "gzip");
  const config = {
    Entrypoint: ["/usr/bin/serve"],
    Cmd: ["--port", "8080"],
    Env: ["MODE=production"],
    WorkingDir: "/var/www",
    User: "0:0",
  };
  const amd64 = await pushImage(registry.url, "pull/web", {
    layers: [base, await buildLayer({ "var/www/index.html": "<h1>amd64</h1>\n" }, "zstd")],
    config,
  });
  const arm64 = await pushImage(registry.url, "pull/web", {
    layers: [base, await buildLayer({ "var/www/index.html": "<h1>arm64</h1>\n" }, "none")],
    config,
    platform: { os: "linux", architecture: "arm64", variant: "v8" },
  });
  await pushIndex(registry.url, "pull/web", "v1", [amd64.manifest, arm64.manifest]);
  return { ref: `${registry.host}/pull/web:v1`, amd64, arm64 };
}

async function readConfig(bundle: string) {
  return JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
}

Deno.test("dist pull makes a runtime bundle from the image config", async () => {
  await withRegistry(async (registry, dir) => {
    const web = await pushWeb(registry);
    const root = `${dir}/store`;
    const bundle = `${dir}/bundle`;
    const result = await runDist([
      "pull",
      "--root",
      root,
      "--platform",
      "linux/amd64",
      web.ref,
      bundle,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `pulled ${web.ref} into ${bundle}\n`);
    const config = await readConfig(bundle);
    assert.deepEqual(config.process.args, ["/usr/bin/serve", "--port", "8080"]);
    assert.ok(config.process.env.includes("MODE=production"));
    assert.ok(config.process.env.some((e: string) => e.startsWith("PATH=")), "a default PATH");
    assert.equal(config.process.cwd, "/var/www");
    assert.equal(config.root.path, "rootfs");
    // the upper layer replaced the page; the lower layer's files are there
    assert.equal(
      await Deno.readTextFile(`${bundle}/rootfs/var/www/index.html`),
      "<h1>amd64</h1>\n",
    );
    assert.equal(await Deno.readTextFile(`${bundle}/rootfs/etc/hostname`), "web\n");
    assert.equal((await Deno.stat(`${bundle}/rootfs/usr/bin/serve`)).mode! & 0o777, 0o755);
    // the image was recorded too
    const images = await runDist(["images", "--root", root, "-q"]);
    assert.equal(images.stdout, `${web.ref}\n`);
  });
});

Deno.test("dist pull picks the --platform and defaults DIR to the repository's name", async () => {
  await withRegistry(async (registry, dir) => {
    const web = await pushWeb(registry);
    const result = await runDist(
      ["pull", "--root", `${dir}/store`, "-q", "--platform", "linux/arm64", web.ref],
      { cwd: dir },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).mediaType, "application/vnd.oci.image.index.v1+json");
    assert.equal(
      await Deno.readTextFile(`${dir}/web/rootfs/var/www/index.html`),
      "<h1>arm64</h1>\n",
    );
    const two = await runDist([
      "pull",
      "--root",
      `${dir}/store`,
      "--platform",
      "linux/arm64",
      "--platform",
      "linux/amd64",
      web.ref,
    ]);
    assert.equal(two.code, 2);
  });
});

Deno.test("dist unpack makes a bundle from the store alone, by name or digest", async () => {
  await withRegistry(async (registry, dir) => {
    const web = await pushWeb(registry);
    const root = `${dir}/store`;
    const fetched = await runDist(["fetch", "--root", root, "-q", "--all-platforms", web.ref]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await registry.stop(); // from here on only the store is there

    const byName = await runDist([
      "unpack",
      "--root",
      root,
      "--platform",
      "linux/arm64",
      web.ref,
      `${dir}/a`,
    ]);
    assert.equal(byName.code, 0, byName.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/a/rootfs/var/www/index.html`), "<h1>arm64</h1>\n");
    assert.equal((await readConfig(`${dir}/a`)).process.cwd, "/var/www");

    const byDigest = await runDist([
      "unpack",
      "--root",
      root,
      web.amd64.manifest.digest,
      `${dir}/b`,
    ]);
    assert.equal(byDigest.code, 0, byDigest.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/b/rootfs/var/www/index.html`), "<h1>amd64</h1>\n");

    const index = JSON.parse(fetched.stdout).digest;
    const byIndex = await runDist([
      "unpack",
      "--root",
      root,
      "--json",
      "--platform",
      "linux/arm64/v8",
      index,
      `${dir}/c`,
    ]);
    assert.equal(byIndex.code, 0, byIndex.stderr);
    const events = byIndex.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(events.map((e) => e.status), [
      "unpacking",
      "unpacked",
      "unpacking",
      "unpacked",
    ]);
    assert.equal(await Deno.readTextFile(`${dir}/c/rootfs/var/www/index.html`), "<h1>arm64</h1>\n");

    const missing = await runDist([
      "unpack",
      "--root",
      root,
      `${registry.host}/pull/none:v1`,
      `${dir}/d`,
    ]);
    assert.equal(missing.code, 3);
    const noPlatform = await runDist([
      "unpack",
      "--root",
      root,
      "--platform",
      "linux/s390x",
      web.ref,
      `${dir}/e`,
    ]);
    assert.equal(noPlatform.code, 3);
    assert.match(noPlatform.stderr, /no manifest for platform linux\/s390x in the store/);

    // "" is no directory; taken as one it would put the bundle at the file system's root
    const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);
    const atRoot = async () => [await exists("/rootfs"), await exists("/config.json")];
    const before = await atRoot();
    for (const command of ["unpack", "pull"]) {
      const empty = await runDist([command, "--root", root, web.ref, ""]);
      assert.equal(empty.code, 2, empty.stderr);
      assert.match(empty.stderr, /^dist: invalid bundle directory ""/);
    }
    assert.deepEqual(await atRoot(), before);
    // pull refuses a bundle that exists before it downloads: the registry is gone by now
    const again = await runDist(["pull", "--root", root, web.ref, `${dir}/a`]);
    assert.equal(again.code, 1, again.stderr);
    assert.equal(again.stderr, `dist: cannot unpack into ${dir}/a: ${dir}/a/config.json exists\n`);
  });
});
