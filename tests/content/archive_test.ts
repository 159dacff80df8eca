import assert from "node:assert/strict";
import { exportImages, importArchive } from "../../content/archives/mod.ts";
import type { Descriptor, Platform } from "../../content/descriptor.ts";
import { digestOf } from "../../content/digest.ts";
import {
  CorruptContentError,
  DigestMismatchError,
  InvalidArgumentError,
  NotFoundError,
  UnsafeEntryError,
} from "../../content/errors.ts";
import { Images } from "../../content/images/records.ts";
import { Store } from "../../content/store/store.ts";
import { readTar } from "../../content/layers/tar_reader.ts";
import { type TarWriteEntry, writeTar } from "../../content/layers/tar_writer.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import { compressLayer, type Layer } from "../_helpers/images.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { bytesOf } from "../_helpers/bytes.ts";

const encoder = new TextEncoder();
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";

/** An uncompressed layer tar holding `files`. */
async function layerTar(files: Record<string, string>): Promise<Uint8Array<ArrayBuffer>> {
  return await bytesOf(writeTar(
    Object.entries(files).map(([name, text]) => ({ header: { name }, body: encoder.encode(text) })),
  ));
}

async function putBlob(
  store: Store,
  bytes: Uint8Array,
  mediaType: string,
): Promise<Descriptor> {
  const digest = digestOf(bytes);
  await writeBlob(store, `test-${digest}`, [bytes], { digest, size: bytes.length });
  return { mediaType, digest, size: bytes.length };
}

function json(value: unknown): Uint8Array<ArrayBuffer> {
  return encoder.encode(JSON.stringify(value));
}

/** Stores a single-platform image: layers, config and manifest; returns the manifest's entry. */
async function putImage(
  store: Store,
  layers: Layer[],
  platform: Platform = { os: "linux", architecture: "amd64" },
): Promise<{ manifest: Descriptor; config: Descriptor; layers: Descriptor[] }> {
  const layerDescs = [];
  for (const layer of layers) layerDescs.push(await putBlob(store, layer.bytes, layer.mediaType));
  const config = await putBlob(
    store,
    json({
      ...platform,
      config: {},
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    }),
    OCI_CONFIG,
  );
  const manifest = await putBlob(
    store,
    json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: layerDescs }),
    OCI_MANIFEST,
  );
  return { manifest: { ...manifest, platform }, config, layers: layerDescs };
}

async function twoLayers(tag: string): Promise<Layer[]> {
  return [
    compressLayer(await layerTar({ [`etc/${tag}`]: `${tag}\n` }), "none"),
    compressLayer(await layerTar({ [`bin/${tag}`]: `#!/bin/sh\necho ${tag}\n` }), "gzip"),
  ];
}

async function digests(store: Store): Promise<string[]> {
  return (await Array.fromAsync(store.list())).map((i) => i.digest).sort();
}

/** Reads an archive's small files (everything but blobs) into a map. */
async function archiveFiles(stream: ReadableStream<Uint8Array>): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const entry of readTar(stream)) {
    if (entry.header.type !== "file") continue;
    const text = await new Response(entry.body).text();
    files.set(entry.header.name, entry.header.name.startsWith("blobs/") ? `${text.length}` : text);
  }
  return files;
}

async function withStores(fn: (a: Store, b: Store) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    await fn(await Store.open(`${dir}/a`), await Store.open(`${dir}/b`));
  });
}

Deno.test("exportImages() then importArchive() keeps digests and records (docker format)", async () => {
  await withStores(async (source, target) => {
    const image = await putImage(source, await twoLayers("one"));
    await new Images(source.root).put("127.0.0.1:5000/app:v1", image.manifest);
    const archive = await bytesOf(await exportImages(source, ["127.0.0.1:5000/app:v1"]));

    const result = await importArchive(target, new Blob([archive]).stream());
    assert.equal(result.format, "docker");
    assert.deepEqual(result.unnamed, []);
    assert.deepEqual(result.records.map((r) => [r.name, r.target.digest]), [
      ["127.0.0.1:5000/app:v1", image.manifest.digest],
    ]);
    assert.deepEqual(await digests(target), await digests(source));
    assert.deepEqual(
      (await new Images(target.root).list()).map((r) => [r.name, r.target.digest]),
      [["127.0.0.1:5000/app:v1", image.manifest.digest]],
    );
  });
});

Deno.test("exportImages() writes docker save's manifest.json, repositories and OCI index", async () => {
  await withStores(async (store) => {
    const image = await putImage(store, await twoLayers("two"));
    await new Images(store.root).put("docker.io/library/app:v2", image.manifest);
    await new Images(store.root).put("docker.io/library/app:latest", image.manifest);
    const files = await archiveFiles(
      await exportImages(store, [
        "app:v2",
        "docker.io/library/app:v2",
        "docker.io/library/app:latest",
      ]),
    );
    const hex = (d: Descriptor) => d.digest.slice("sha256:".length);
    assert.deepEqual(JSON.parse(files.get("manifest.json")!), [{
      Config: `blobs/sha256/${hex(image.config)}`,
      RepoTags: ["app:v2", "app:latest"],
      Layers: image.layers.map((l) => `blobs/sha256/${hex(l)}`),
    }]);
    const top = hex(image.layers[1]);
    assert.deepEqual(JSON.parse(files.get("repositories")!), { app: { v2: top, latest: top } });
    assert.deepEqual(JSON.parse(files.get("oci-layout")!), { imageLayoutVersion: "1.0.0" });
    const index = JSON.parse(files.get("index.json")!);
    assert.deepEqual(index.manifests.map((m: Descriptor) => [m.digest, m.annotations]), [
      [image.manifest.digest, {
        "io.containerd.image.name": "docker.io/library/app:v2",
        "org.opencontainers.image.ref.name": "v2",
      }],
      [image.manifest.digest, {
        "io.containerd.image.name": "docker.io/library/app:latest",
        "org.opencontainers.image.ref.name": "latest",
      }],
    ]);
    // each blob once: manifest, config, two layers
    assert.equal([...files.keys()].filter((n) => n.startsWith("blobs/")).length, 4);
  });
});

/** An index of amd64 and arm64 images plus an entry for a platform that was never fetched. */
async function putMultiPlatform(store: Store) {
  const amd = await putImage(store, await twoLayers("amd"));
  const arm = await putImage(store, await twoLayers("arm"), {
    os: "linux",
    architecture: "arm64",
    variant: "v8",
  });
  const absent = json({ schemaVersion: 2, absent: true });
  const index = await putBlob(
    store,
    json({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [amd.manifest, arm.manifest, {
        mediaType: OCI_MANIFEST,
        digest: digestOf(absent),
        size: absent.length,
        platform: { os: "linux", architecture: "s390x" },
      }],
    }),
    OCI_INDEX,
  );
  await new Images(store.root).put("127.0.0.1:5000/multi:v1", index);
  return { amd, arm, index };
}

Deno.test("exportImages() writes one platform of a multi-platform image into a docker-archive", async () => {
  await withStores(async (store) => {
    const { arm } = await putMultiPlatform(store);
    const files = await archiveFiles(
      await exportImages(store, ["127.0.0.1:5000/multi:v1"], {
        platform: { os: "linux", architecture: "arm64" },
      }),
    );
    const [item] = JSON.parse(files.get("manifest.json")!);
    assert.equal(item.Config, `blobs/sha256/${arm.config.digest.slice(7)}`);
    const index = JSON.parse(files.get("index.json")!);
    assert.deepEqual(index.manifests.map((m: Descriptor) => m.digest), [arm.manifest.digest]);
    assert.equal([...files.keys()].filter((n) => n.startsWith("blobs/")).length, 4);
  });
});

Deno.test("importArchive() of one platform keeps the record of the index that lists it", async () => {
  await withStores(async (store) => {
    const { index } = await putMultiPlatform(store);
    const name = "127.0.0.1:5000/multi:v1";
    const archive = await exportImages(store, [name], {
      platform: { os: "linux", architecture: "arm64" },
    });
    const result = await importArchive(store, archive);
    assert.deepEqual(result.records, [{ name, target: index }]);
    assert.deepEqual((await new Images(store.root).get(name)).target, index);
  });
});

Deno.test("exportImages() keeps the whole index in an OCI archive and importArchive() records it", async () => {
  await withStores(async (source, target) => {
    const { index, amd, arm } = await putMultiPlatform(source);
    const archive = await exportImages(source, ["127.0.0.1:5000/multi:v1"], { format: "oci" });
    const result = await importArchive(target, archive);
    assert.equal(result.format, "oci");
    assert.deepEqual(result.records, [{ name: "127.0.0.1:5000/multi:v1", target: index }]);
    assert.deepEqual(await digests(target), await digests(source));
    for (const d of [index, amd.manifest, arm.manifest, ...amd.layers, ...arm.layers]) {
      assert.ok(await target.has(d.digest), d.digest);
    }
  });
});

Deno.test("exportImages() refuses unknown names and incomplete images before writing", async () => {
  await withStores(async (store) => {
    const image = await putImage(store, await twoLayers("gone"));
    await new Images(store.root).put("127.0.0.1:5000/gone:v1", image.manifest);
    await assertRejects(() => exportImages(store, ["127.0.0.1:5000/nothing:v1"]), NotFoundError);
    await store.delete(image.layers[1].digest);
    for (const format of ["docker", "oci"] as const) {
      await assertRejects(
        () => exportImages(store, ["127.0.0.1:5000/gone:v1"], { format }),
        NotFoundError,
        image.layers[1].digest,
      );
    }
  });
});

Deno.test("exportImages() stops its stream when the signal aborts", async () => {
  await withStores(async (store) => {
    const image = await putImage(store, await twoLayers("stop"));
    await new Images(store.root).put("r/stop:v1", image.manifest);
    const controller = new AbortController();
    const archive = await exportImages(store, ["r/stop:v1"], { signal: controller.signal });
    const reader = archive.getReader();
    await reader.read();
    controller.abort(new Error("stop here"));
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) break;
    }, /stop here/);
  });
});

/** A tar archive made of `entries`, as a stream. */
function tarOf(entries: TarWriteEntry[]): ReadableStream<Uint8Array> {
  return writeTar(entries);
}

function file(name: string, body: Uint8Array | string): TarWriteEntry {
  return { header: { name }, body: typeof body === "string" ? encoder.encode(body) : body };
}

/** `index.json` bytes with one entry: `manifest`, with `annotations`. */
function indexOf(manifest: Uint8Array, annotations: Record<string, string>): Uint8Array {
  return json({
    schemaVersion: 2,
    manifests: [{
      mediaType: OCI_MANIFEST,
      digest: digestOf(manifest),
      size: manifest.length,
      annotations,
    }],
  });
}

/** The archive path of the blob `bytes`. */
function blobName(bytes: Uint8Array): string {
  return `blobs/sha256/${digestOf(bytes).slice(7)}`;
}

/** The entries of a well-formed OCI archive of one small image named `name`. */
async function ociEntries(name: string): Promise<{ entries: TarWriteEntry[]; manifest: string }> {
  const layer = await layerTar({ "hello": "hello\n" });
  const config = json({
    os: "linux",
    architecture: "amd64",
    rootfs: { type: "layers", diff_ids: [digestOf(layer)] },
  });
  const manifest = json({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: digestOf(config), size: config.length },
    layers: [{
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: digestOf(layer),
      size: layer.length,
    }],
  });
  const index = indexOf(manifest, { "org.opencontainers.image.ref.name": name });
  const blob = (bytes: Uint8Array) => file(blobName(bytes), bytes);
  return {
    entries: [
      file("oci-layout", '{"imageLayoutVersion":"1.0.0"}'),
      file("index.json", index),
      blob(manifest),
      blob(config),
      blob(layer),
    ],
    manifest: digestOf(manifest),
  };
}

Deno.test("importArchive() reads an OCI layout another tool wrote, ./ prefixes included", async () => {
  await withStores(async (store) => {
    const { entries, manifest } = await ociEntries("other:1");
    const dotted = entries.map((e) => ({
      ...e,
      header: { ...e.header, name: `./${e.header.name}` },
    }));
    const result = await importArchive(store, tarOf(dotted));
    assert.deepEqual(result.records.map((r) => [r.name, r.target.digest]), [["other:1", manifest]]);
  });
});

Deno.test("importArchive() refuses unsafe entry names and records nothing", async () => {
  const cases: [string, TarWriteEntry][] = [
    ["../evil", file("../evil", "x")],
    ["absolute", file("/etc/evil", "x")],
    ["nested ..", file("blobs/../../evil", "x")],
    ["symlink out", {
      header: { name: "blobs/sha256/link", type: "symlink", linkname: "../../../etc/passwd" },
    }],
    ["absolute symlink", {
      header: { name: "layer.tar", type: "symlink", linkname: "/etc/passwd" },
    }],
  ];
  for (const [label, hostile] of cases) {
    await withStores(async (store) => {
      const { entries } = await ociEntries("victim:1");
      const error = await assertRejects(
        () => importArchive(store, tarOf([...entries, hostile])),
        UnsafeEntryError,
      );
      assert.match(error.message, /^refusing /, label);
      assert.deepEqual(await new Images(store.root).list(), [], label);
    });
  }
});

Deno.test("importArchive() refuses a blob whose content differs from its name", async () => {
  await withStores(async (store) => {
    const { entries } = await ociEntries("victim:1");
    const wrong = digestOf(encoder.encode("something else"));
    // the layer's bytes under another digest's name
    const layer = entries[4];
    const forged = {
      ...layer,
      header: { ...layer.header, name: `blobs/sha256/${wrong.slice(7)}` },
    };
    const error = await assertRejects(
      () => importArchive(store, tarOf([...entries.slice(0, 4), forged])),
      DigestMismatchError,
      `blobs/sha256/${wrong.slice(7)}`,
    );
    assert.ok(error.message.includes(wrong));
    assert.equal(await store.has(wrong), false);
    assert.deepEqual(await new Images(store.root).list(), []);
    assert.deepEqual(await store.listStatuses(), []);
  });
});

Deno.test("importArchive() refuses an archive that misses a blob its index needs", async () => {
  await withStores(async (store) => {
    const { entries } = await ociEntries("victim:1");
    await assertRejects(
      () => importArchive(store, tarOf(entries.slice(0, 4))), // no layer
      CorruptContentError,
      "neither in the archive nor in the store",
    );
    assert.deepEqual(await new Images(store.root).list(), []);
    await assertRejects(
      () => importArchive(store, tarOf([file("hello.txt", "not an image")])),
      CorruptContentError,
      "neither index.json",
    );
  });
});

for (
  const name of ["bad name", "../../etc/passwd", "example.com/app:v1@sha256:nothex"]
) {
  Deno.test(`importArchive() records no image when one of the archive's names is ${JSON.stringify(name)}`, async () => {
    await withStores(async (store) => {
      const { entries } = await ociEntries("unused");
      const manifest = entries[2].body as Uint8Array;
      const entry = (name: string) => ({
        mediaType: OCI_MANIFEST,
        digest: digestOf(manifest),
        size: manifest.length,
        annotations: { "org.opencontainers.image.ref.name": name },
      });
      // two entries naming one manifest: a good name first, so that writing records one at a
      // time would keep it
      const index = json({
        schemaVersion: 2,
        manifests: [entry("example.com/good:v1"), entry(name)],
      });
      const twoNames = entries.map((e) =>
        e.header.name === "index.json" ? file("index.json", index) : e
      );
      const error = await assertRejects(
        () => importArchive(store, tarOf(twoNames)),
        InvalidArgumentError,
      );
      assert.equal(error.message, `invalid image name ${JSON.stringify(name)}`);
      assert.deepEqual(await new Images(store.root).list(), []);
    });
  });
}

/** A docker-archive as docker save wrote it before Docker 25: `<id>/layer.tar`, `<hex>.json`. */
async function legacyDockerArchive(): Promise<{ entries: TarWriteEntry[]; diffIds: string[] }> {
  const base = await layerTar({ "etc/os-release": "ID=test\n" });
  const top = await layerTar({ "app": "app\n" });
  const diffIds = [digestOf(base), digestOf(top), digestOf(base)];
  const config = json({
    os: "linux",
    architecture: "amd64",
    rootfs: { type: "layers", diff_ids: diffIds },
  });
  const configName = `${digestOf(config).slice(7)}.json`;
  return {
    entries: [
      file("aaa/VERSION", "1.0"),
      file("aaa/json", "{}"),
      file("aaa/layer.tar", base),
      file("bbb/layer.tar", top),
      // docker save writes a repeated layer as a symlink to the first copy
      { header: { name: "ccc/layer.tar", type: "symlink", linkname: "../aaa/layer.tar" } },
      file(configName, config),
      file(
        "manifest.json",
        JSON.stringify([{
          Config: configName,
          RepoTags: ["legacy:1", "example.com/team/legacy:1"],
          Layers: ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
        }]),
      ),
      file("repositories", JSON.stringify({ legacy: { "1": "ccc" } })),
    ],
    diffIds,
  };
}

Deno.test("importArchive() builds an OCI manifest for an older docker-archive", async () => {
  await withStores(async (store) => {
    const { entries, diffIds } = await legacyDockerArchive();
    const result = await importArchive(store, tarOf(entries));
    assert.equal(result.format, "docker");
    assert.deepEqual(result.records.map((r) => r.name), [
      "docker.io/library/legacy:1",
      "example.com/team/legacy:1",
    ]);
    const target = result.records[0].target;
    assert.equal(target.mediaType, OCI_MANIFEST);
    const manifest = JSON.parse(new TextDecoder().decode(await store.readBytes(target.digest)));
    assert.deepEqual(manifest.layers.map((l: Descriptor) => [l.mediaType, l.digest]), [
      ["application/vnd.oci.image.layer.v1.tar", diffIds[0]],
      ["application/vnd.oci.image.layer.v1.tar", diffIds[1]],
      ["application/vnd.oci.image.layer.v1.tar", diffIds[2]],
    ]);
    // importing again changes nothing: the built manifest is the same
    const again = await importArchive(store, tarOf(entries));
    assert.equal(again.records[0].target.digest, target.digest);
  });
});

Deno.test("importArchive() checks uncompressed docker-archive layers against their diff_ids", async () => {
  await withStores(async (store) => {
    const { entries } = await legacyDockerArchive();
    const bad = await layerTar({ "other": "other\n" });
    const swapped = entries.map((e) =>
      e.header.name === "bbb/layer.tar" ? file("bbb/layer.tar", bad) : e
    );
    await assertRejects(
      () => importArchive(store, tarOf(swapped)),
      DigestMismatchError,
      "bbb/layer.tar",
    );
    assert.deepEqual(await new Images(store.root).list(), []);
  });
});

Deno.test("importArchive() prefers manifest.json over an OCI part that lacks the layers", async () => {
  // Docker 25's docker save (graph drivers) lists only foreign layers in its OCI manifest
  await withStores(async (store) => {
    const layer = await layerTar({ "x": "x\n" });
    const config = json({
      os: "linux",
      architecture: "amd64",
      rootfs: { type: "layers", diff_ids: [digestOf(layer)] },
    });
    const configDesc = { mediaType: OCI_CONFIG, digest: digestOf(config), size: config.length };
    const manifest = json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: configDesc,
      layers: [],
    });
    const index = indexOf(manifest, {
      "io.containerd.image.name": "docker.io/library/x:1",
      "org.opencontainers.image.ref.name": "1",
    });
    const result = await importArchive(
      store,
      tarOf([
        file("oci-layout", '{"imageLayoutVersion":"1.0.0"}'),
        file("index.json", index),
        file(
          "manifest.json",
          JSON.stringify([{
            Config: blobName(config),
            RepoTags: ["x:1"],
            Layers: [blobName(layer)],
          }]),
        ),
        file(blobName(manifest), manifest),
        file(blobName(config), config),
        file(blobName(layer), layer),
      ]),
    );
    assert.equal(result.records.length, 1);
    assert.equal(result.records[0].name, "docker.io/library/x:1");
    const stored = JSON.parse(
      new TextDecoder().decode(await store.readBytes(result.records[0].target.digest)),
    );
    assert.deepEqual(stored.layers.map((l: Descriptor) => l.digest), [digestOf(layer)]);
  });
});

Deno.test("importArchive() leaves no ingest of an older docker-archive it did not finish", async () => {
  await withStores(async (store) => {
    const { entries } = await legacyDockerArchive();
    const archive = await bytesOf(tarOf(entries));
    // cut in the middle of bbb/layer.tar: aaa/layer.tar is committed, bbb's ingest is open
    const header = new TextDecoder("latin1").decode(archive).indexOf("bbb/layer.tar");
    const cut = archive.subarray(0, header + 512 + 100);
    await assertRejects(
      () => importArchive(store, new Blob([cut]).stream()),
      CorruptContentError,
      "unexpected end of data in bbb/layer.tar",
    );
    assert.deepEqual(await store.listStatuses(), []);

    // aborted while the input stalls in bbb/layer.tar (a pipe nobody writes to): nothing but the
    // signal can end the wait
    const controller = new AbortController();
    const stalled = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(cut.slice());
      },
      pull: () => new Promise(() => {}),
    });
    const imported = importArchive(store, stalled, { signal: controller.signal });
    // waits until aaa/layer.tar is committed and the one open ingest is bbb's
    const base = digestOf(entries[2].body as Uint8Array);
    while (!(await store.has(base)) || (await store.listStatuses()).length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    controller.abort(new Error("stop here"));
    await assert.rejects(imported, /stop here/);
    assert.deepEqual(await store.listStatuses(), []);
    assert.deepEqual(await new Images(store.root).list(), []);
  });
});
