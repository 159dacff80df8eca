import assert from "node:assert/strict";
import type { Descriptor } from "../../content/descriptor.ts";
import { digestOf } from "../../content/digest.ts";
import { Images } from "../../content/images/records.ts";
import { Store } from "../../content/store/store.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import { runDist, spawnDist } from "../_helpers/cli.ts";
import { buildLayer, type PushedImage, pushImage } from "../_helpers/images.ts";
import { type Registry, withRegistry } from "../_helpers/registry.ts";
import { requireTool, withTempDir } from "../_helpers/temp.ts";

const decoder = new TextDecoder();

interface Setup {
  registry: Registry;
  dir: string;
  /** The store the image was fetched into. */
  root: string;
  ref: string;
  image: PushedImage;
  diffIds: string[];
}

/**
 * Pushes an image of two uncompressed layers and one gzip layer to a fresh registry and fetches
 * it with `dist fetch` into `DIR/root`.
 */
async function withFetchedImage(fn: (setup: Setup) => Promise<void>): Promise<void> {
  await requireTool("skopeo");
  await withRegistry(async (registry, dir) => {
    const layers = [
      await buildLayer({ "etc/os-release": "ID=archive\n" }, "none"),
      await buildLayer({ "usr/bin/tool": { content: "#!/bin/sh\n", mode: 0o755 } }, "none"),
      await buildLayer({ "srv/data.txt": "data\n".repeat(100) }, "gzip"),
    ];
    const image = await pushImage(registry.url, "archive/app", {
      layers,
      tag: "v1",
      config: { Cmd: ["/usr/bin/tool"] },
    });
    const ref = `${registry.host}/archive/app:v1`;
    const root = `${dir}/root`;
    const fetched = await runDist(["fetch", "--root", root, "-q", ref]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await fn({ registry, dir, root, ref, image, diffIds: layers.map((l) => l.diffId) });
  });
}

async function run(program: string, args: string[]): Promise<string> {
  const result = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
    .output();
  assert.ok(
    result.success,
    `${program} ${args.join(" ")} failed: ${decoder.decode(result.stderr)}`,
  );
  return decoder.decode(result.stdout);
}

/** The manifest and config digest skopeo wrote into an OCI layout directory. */
async function layoutImage(dir: string): Promise<{ config: string; layers: string[] }> {
  const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  assert.equal(index.manifests.length, 1);
  const manifest = JSON.parse(
    await Deno.readTextFile(`${dir}/blobs/sha256/${index.manifests[0].digest.slice(7)}`),
  );
  return {
    config: manifest.config.digest,
    layers: manifest.layers.map((l: Descriptor) => l.digest),
  };
}

async function storedDigests(root: string): Promise<string[]> {
  const listed = await runDist(["list", "--root", root, "-q"]);
  assert.equal(listed.code, 0, listed.stderr);
  return listed.stdout.trim().split("\n").sort();
}

async function records(root: string): Promise<[string, string][]> {
  const result = await runDist(["images", "--root", root, "--json"]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim().split("\n").filter((l) => l).map((l) => {
    const record = JSON.parse(l);
    return [record.name, record.target.digest];
  });
}

Deno.test("dist export writes a docker-archive that skopeo reads and copies with the same layers", async () => {
  await withFetchedImage(async ({ dir, root, ref, image, diffIds }) => {
    const file = `${dir}/image.tar`;
    const exported = await runDist(["export", "--root", root, "-o", file, ref]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.equal(exported.stdout, "");
    // plain tar reads it, in docker save's layout
    const names = (await run("tar", ["-tf", file])).trim().split("\n");
    for (const name of ["manifest.json", "repositories", "oci-layout", "index.json"]) {
      assert.ok(names.includes(name), name);
    }
    const inspect = JSON.parse(await run("skopeo", ["inspect", `docker-archive:${file}`]));
    assert.deepEqual(inspect.Layers, diffIds);
    const config = JSON.parse(
      await run("skopeo", ["inspect", "--config", `docker-archive:${file}`]),
    );
    assert.deepEqual(config.config.Cmd, ["/usr/bin/tool"]);

    await run("skopeo", [
      "copy",
      "-q",
      "--dest-oci-accept-uncompressed-layers",
      `docker-archive:${file}`,
      `oci:${dir}/copy:latest`,
    ]);
    const copied = await layoutImage(`${dir}/copy`);
    assert.equal(copied.config, image.config.digest);
    // a docker-archive carries layers by their uncompressed digest (diff_id); the
    // uncompressed layers are byte for byte the blobs dist fetched
    assert.deepEqual(copied.layers, diffIds);
    assert.deepEqual(copied.layers.slice(0, 2), image.layers.slice(0, 2).map((l) => l.digest));
  });
});

Deno.test("dist export --format oci writes an OCI archive that skopeo reads and copies unchanged", async () => {
  await withFetchedImage(async ({ dir, root, ref, image }) => {
    const file = `${dir}/image-oci.tar`;
    const exported = await runDist(["export", "--root", root, "--format", "oci", "-o", file, ref]);
    assert.equal(exported.code, 0, exported.stderr);
    const names = (await run("tar", ["-tf", file])).trim().split("\n");
    assert.ok(!names.includes("manifest.json"));
    const inspect = JSON.parse(await run("skopeo", ["inspect", `oci-archive:${file}`]));
    assert.equal(inspect.Digest, image.manifest.digest);
    assert.deepEqual(inspect.Layers, image.layers.map((l) => l.digest));
    await run("skopeo", [
      "copy",
      "-q",
      "--dest-oci-accept-uncompressed-layers", // else skopeo gzips the uncompressed layers
      `oci-archive:${file}:${ref}`,
      `oci:${dir}/copy:latest`,
    ]);
    const copied = await layoutImage(`${dir}/copy`);
    assert.equal(copied.config, image.config.digest);
    assert.deepEqual(copied.layers, image.layers.map((l) => l.digest));
  });
});

Deno.test("dist import loads either kind into a fresh store with the same digests and records", async () => {
  await withFetchedImage(async ({ dir, root, ref, image }) => {
    const digests = await storedDigests(root);
    for (const format of ["docker", "oci"]) {
      const file = `${dir}/${format}.tar`;
      const exported = await runDist([
        "export",
        "--root",
        root,
        "--format",
        format,
        "-o",
        file,
        ref,
      ]);
      assert.equal(exported.code, 0, exported.stderr);
      const fresh = `${dir}/fresh-${format}`;
      const imported = await runDist(["import", "--root", fresh, file]);
      assert.equal(imported.code, 0, imported.stderr);
      assert.equal(imported.stdout, `imported ${ref} ${image.manifest.digest}\n`);
      assert.deepEqual(await records(fresh), [[ref, image.manifest.digest]], format);
      assert.deepEqual(await storedDigests(fresh), digests, format);
      // the imported image is whole: it unpacks from the store alone
      const unpacked = await runDist([
        "unpack",
        "--root",
        fresh,
        "-q",
        ref,
        `${dir}/bundle-${format}`,
      ]);
      assert.equal(unpacked.code, 0, unpacked.stderr);
      assert.equal(
        await Deno.readTextFile(`${dir}/bundle-${format}/rootfs/etc/os-release`),
        "ID=archive\n",
      );
    }
  });
});

Deno.test("dist export -o - streams the archive to stdout and dist import - reads stdin", async () => {
  await withFetchedImage(async ({ dir, root, ref, image }) => {
    const file = `${dir}/image.tar`;
    assert.equal((await runDist(["export", "--root", root, "-o", file, ref])).code, 0);
    const child = spawnDist(["export", "--root", root, "-o", "-", ref]);
    await child.stdin.close();
    const streamed = await child.output();
    assert.equal(streamed.code, 0, decoder.decode(streamed.stderr));
    // the same bytes as the file: the archive does not depend on where it goes
    assert.deepEqual(streamed.stdout, await Deno.readFile(file));
    const imported = await runDist(["import", "--root", `${dir}/fresh`, "-q", "-"], {
      stdin: streamed.stdout,
    });
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal(imported.stdout, `${ref}\n`);
    assert.deepEqual(await records(`${dir}/fresh`), [[ref, image.manifest.digest]]);
  });
});

Deno.test("dist export that fails midway leaves no file behind", async () => {
  await withTempDir(async (dir) => {
    // An image whose last layer reads as an error: a directory sits where the blob should be,
    // with the size the manifest gives, so it passes the checks before writing starts.
    const store = await Store.open(`${dir}/root`);
    const put = async (bytes: Uint8Array, mediaType: string): Promise<Descriptor> => {
      const digest = digestOf(bytes);
      await writeBlob(store, `t-${digest}`, [bytes], { digest, size: bytes.length });
      return { mediaType, digest, size: bytes.length };
    };
    const good = await put(new Uint8Array(4096), "application/vnd.oci.image.layer.v1.tar");
    const badDigest = digestOf(new TextEncoder().encode("unreadable"));
    await Deno.mkdir(store.blobPath(badDigest));
    const bad = {
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: badDigest,
      size: (await Deno.stat(store.blobPath(badDigest))).size,
    };
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    const config = await put(
      enc({ os: "linux", architecture: "amd64", rootfs: { diff_ids: [good.digest, bad.digest] } }),
      "application/vnd.oci.image.config.v1+json",
    );
    const manifest = await put(
      enc({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config,
        layers: [good, bad],
      }),
      "application/vnd.oci.image.manifest.v1+json",
    );
    await new Images(store.root).put("r/broken:v1", manifest);
    await Deno.mkdir(`${dir}/out`);
    const result = await runDist([
      "export",
      "--root",
      store.root,
      "-o",
      `${dir}/out/x.tar`,
      "r/broken:v1",
    ]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^dist: /);
    assert.deepEqual([...Deno.readDirSync(`${dir}/out`)], []); // neither x.tar nor a temp file
  });
});

Deno.test("dist import refuses hostile archives and records nothing", async () => {
  await withTempDir(async (dir) => {
    const tarFile = async (name: string, entries: Parameters<typeof writeTar>[0]) => {
      const path = `${dir}/${name}`;
      await Deno.writeFile(
        path,
        new Uint8Array(await new Response(writeTar(entries)).arrayBuffer()),
      );
      return path;
    };
    const text = (s: string) => new TextEncoder().encode(s);
    const escape = await tarFile("escape.tar", [
      { header: { name: "oci-layout" }, body: text('{"imageLayoutVersion":"1.0.0"}') },
      { header: { name: "../../tmp/evil" }, body: text("x") },
    ]);
    const wrong = digestOf(text("promised"));
    const forged = await tarFile("forged.tar", [
      { header: { name: `blobs/sha256/${wrong.slice(7)}` }, body: text("delivered") },
    ]);
    const root = `${dir}/root`;
    const first = await runDist(["import", "--root", root, escape]);
    assert.equal(first.code, 1);
    assert.equal(
      first.stderr,
      'dist: refusing archive entry "../../tmp/evil": it has a .. component\n',
    );
    const second = await runDist(["import", "--root", root, forged]);
    assert.equal(second.code, 1);
    assert.match(
      second.stderr,
      new RegExp(`^dist: invalid archive: blobs/sha256/${wrong.slice(7)} does not hold`),
    );
    assert.deepEqual(await records(root), []);
    const listed = await runDist(["list", "--root", root, "-q"]);
    assert.equal(listed.stdout, "");
  });
});

Deno.test("dist export and import report usage errors and missing images", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/root`;
    const missing = await runDist(["export", "--root", root, "-o", `${dir}/x.tar`, "r/none:v1"]);
    assert.equal(missing.code, 3);
    assert.equal(missing.stderr, "dist: image r/none:v1 not found\n");
    const noOutput = await runDist(["export", "--root", root, "r/none:v1"]);
    assert.equal(noOutput.code, 2);
    assert.match(noOutput.stderr, /-o FILE/);
    const badFormat = await runDist(["export", "--root", root, "--format", "tgz", "-o", "x", "a"]);
    assert.equal(badFormat.code, 2);
    const noFile = await runDist(["import", "--root", root, `${dir}/absent.tar`]);
    assert.equal(noFile.code, 3); // a missing input file is not found
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["root"]);
  });
});

Deno.test("dist export --help and dist import --help describe their flags", async () => {
  const exportHelp = await runDist(["export", "--help"]);
  assert.equal(exportHelp.code, 0);
  for (
    const text of [
      "Usage: dist export -o FILE|-",
      "--output FILE",
      "--format docker|oci",
      "--platform",
    ]
  ) {
    assert.ok(exportHelp.stdout.includes(text), text);
  }
  const importHelp = await runDist(["import", "--help"]);
  assert.equal(importHelp.code, 0);
  assert.ok(importHelp.stdout.includes("Usage: dist import [flags] FILE|-"));
  const main = await runDist(["--help"]);
  assert.match(main.stdout, /\n {2}export +write images/);
  assert.match(main.stdout, /\n {2}import +read a docker-archive/);
});

/** Writes a tar archive of `entries` to `path`. */
async function writeArchive(path: string, entries: Parameters<typeof writeTar>[0]): Promise<void> {
  await Deno.writeFile(path, new Uint8Array(await new Response(writeTar(entries)).arrayBuffer()));
}

Deno.test("dist import of an archive with one invalid image name exits 2 and records no image", async () => {
  await withTempDir(async (dir) => {
    const text = (s: string) => new TextEncoder().encode(s);
    const layer = await buildLayer({ "hello": "hello\n" }, "none");
    const config = text(JSON.stringify({
      os: "linux",
      architecture: "amd64",
      rootfs: { type: "layers", diff_ids: [layer.diffId] },
    }));
    const manifest = text(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: digestOf(config),
        size: config.length,
      },
      layers: [{
        mediaType: layer.mediaType,
        digest: digestOf(layer.bytes),
        size: layer.bytes.length,
      }],
    }));
    // two index.json entries name one manifest; the valid name comes first
    const named = (name: string) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: digestOf(manifest),
      size: manifest.length,
      annotations: { "org.opencontainers.image.ref.name": name },
    });
    const blob = (bytes: Uint8Array) => ({
      header: { name: `blobs/sha256/${digestOf(bytes).slice(7)}` },
      body: bytes,
    });
    const archive = `${dir}/h1.tar`;
    await writeArchive(archive, [
      { header: { name: "oci-layout" }, body: text('{"imageLayoutVersion":"1.0.0"}') },
      {
        header: { name: "index.json" },
        body: text(JSON.stringify({
          schemaVersion: 2,
          manifests: [named("example.com/good:v1"), named("bad name")],
        })),
      },
      blob(manifest),
      blob(config),
      blob(layer.bytes),
    ]);
    const root = `${dir}/root`;
    const imported = await runDist(["import", "--root", root, archive, "-q"]);
    assert.equal(imported.code, 2);
    assert.equal(imported.stderr, 'dist: invalid image name "bad name"\n');
    assert.equal(imported.stdout, "");
    const images = await runDist(["images", "--root", root, "-q"]);
    assert.equal(images.code, 0, images.stderr);
    assert.equal(images.stdout, "");
  });
});

Deno.test("dist import stopped by Ctrl-C while its input stalls leaves no ingest", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/root`;
    // an older docker-archive (layers at <id>/layer.tar, no digest known in advance), of which
    // the pipe delivers the first layer and part of the second, then nothing more
    const layers = [
      await buildLayer({ "a.txt": "a\n" }, "none"),
      await buildLayer({ "b.bin": new Uint8Array(200_000) }, "none"),
    ];
    const archive = new Uint8Array(
      await new Response(writeTar([
        { header: { name: "aaa/layer.tar" }, body: layers[0].bytes },
        { header: { name: "bbb/layer.tar" }, body: layers[1].bytes },
      ])).arrayBuffer(),
    );
    const store = await Store.open(root);
    const child = spawnDist(["import", "--root", root, "-q", "-"]);
    const stdin = child.stdin.getWriter();
    try {
      await stdin.write(archive.subarray(0, 1024 + layers[0].bytes.length + 50_000));
      // the second layer's ingest is open: the first layer is in the store, one ingest is listed
      const first = digestOf(layers[0].bytes);
      for (let i = 0; !(await store.has(first)) || (await store.listStatuses()).length === 0; i++) {
        assert.ok(i < 500, "dist import never started the second layer");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      child.kill("SIGINT");
      // a user whose Ctrl-C did nothing presses it again, which exits at once
      const again = setTimeout(() => child.kill("SIGINT"), 10_000);
      const { code, stderr } = await child.output();
      clearTimeout(again);
      assert.equal(code, 130);
      const active = await runDist(["active", "--root", root, "--json"]); // one line an ingest
      assert.equal(active.code, 0, active.stderr);
      assert.equal(active.stdout, "");
      assert.deepEqual(await store.listStatuses(), []);
      assert.equal(decoder.decode(stderr), "dist: import interrupted\n");
    } finally {
      try {
        child.kill("SIGKILL"); // only if a failed assertion left it running
      } catch {
        // it has exited
      }
      await stdin.close().catch(() => {});
      await child.status;
    }
  });
});
