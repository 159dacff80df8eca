import assert from "node:assert/strict";
import { collectGarbage, imageUses } from "../../content/images/gc.ts";
import { acquireLease, leasedDigests, leaseLock } from "../../content/images/lease.ts";
import { Store } from "../../content/store/store.ts";
import { Images } from "../../content/images/records.ts";
import { digestOf } from "../../content/digest.ts";
import { type Descriptor, MediaType } from "../../content/descriptor.ts";
import { CorruptContentError, LockedError } from "../../content/errors.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import { fetchImage } from "../../remotes/copy.ts";
import { RegistryClient } from "../../remotes/client.ts";
import { startRegistry } from "../_helpers/registry.ts";
import { buildLayer, pushAttestation, pushImage, pushIndex } from "../_helpers/images.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { seededBytes } from "../_helpers/bytes.ts";

async function stored(store: Store): Promise<Set<string>> {
  const digests = new Set<string>();
  for await (const info of store.list()) digests.add(info.digest);
  return digests;
}

/** Commits `bytes` to the store and returns its descriptor. */
async function putBlob(store: Store, mediaType: string, bytes: Uint8Array): Promise<Descriptor> {
  const digest = digestOf(bytes);
  await writeBlob(store, `blob-${digest}`, [bytes], { digest, size: bytes.length });
  return { mediaType, digest, size: bytes.length };
}

/** A one-layer image (manifest, config, layer) written straight into the store, unrecorded. */
async function storeImage(store: Store, seed: number) {
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const config = await putBlob(store, MediaType.ociConfig, json({ os: "linux", seed }));
  const layer = await putBlob(store, MediaType.ociLayerGzip, seededBytes(100, seed));
  const manifest = await putBlob(
    store,
    MediaType.ociManifest,
    json({ schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layer] }),
  );
  return { manifest, config, layer };
}

/** Two images sharing a base layer, fetched (all platforms) into a fresh store. */
async function withTwoImages(
  fn: (store: Store, names: { a: string; b: string }, shared: string) => Promise<void>,
): Promise<void> {
  const registry = await startRegistry();
  const client = new RegistryClient();
  try {
    const base = await buildLayer({ "etc/base": "base\n" }, "gzip");
    const a = await pushImage(registry.url, "gc/a", {
      layers: [base, await buildLayer({ "a": "a\n" }, "gzip")],
    });
    const arm = await pushImage(registry.url, "gc/a", {
      layers: [base, await buildLayer({ "a-arm": "a\n" }, "zstd")],
      platform: { os: "linux", architecture: "arm64" },
    });
    const att = await pushAttestation(registry.url, "gc/a", a.manifest);
    await pushIndex(registry.url, "gc/a", "v1", [a.manifest, arm.manifest, att]);
    await pushImage(registry.url, "gc/b", {
      layers: [base, await buildLayer({ "b": "b\n" }, "gzip")],
      tag: "v1",
    });
    await withTempDir(async (dir) => {
      const store = await Store.open(dir);
      const names = { a: `${registry.host}/gc/a:v1`, b: `${registry.host}/gc/b:v1` };
      await fetchImage(client, store, names.a, { allPlatforms: true });
      await fetchImage(client, store, names.b);
      await fn(store, names, a.layers[0].digest);
    });
  } finally {
    client.close();
    await registry.stop();
  }
}

Deno.test("collectGarbage() keeps every blob an image record reaches", async () => {
  await withTwoImages(async (store) => {
    const before = await stored(store);
    const stray = new TextEncoder().encode("stray");
    const writer = await store.writer("stray", { expected: digestOf(stray) });
    await writer.write(stray);
    await writer.commit(stray.length, digestOf(stray));
    const result = await collectGarbage(store);
    assert.deepEqual(result.blobs.map((b) => b.digest), [digestOf(stray)]);
    assert.equal(result.bytes, stray.length);
    assert.deepEqual(await stored(store), before);
    assert.equal(result.kept, before.size);
  });
});

Deno.test("collectGarbage() removes what only a removed record reached", async () => {
  await withTwoImages(async (store, names, shared) => {
    const before = await stored(store);
    await new Images(store.root).remove(names.a);
    const dry = await collectGarbage(store, { dryRun: true });
    // index, 3 manifests (amd64, arm64, attestation), 3 configs, 2 own layers, 1 in-toto layer
    assert.equal(dry.blobs.length, 10);
    assert.deepEqual(await stored(store), before, "a dry run removes nothing");
    const result = await collectGarbage(store);
    assert.deepEqual(
      result.blobs.map((b) => b.digest).sort(),
      dry.blobs.map((b) => b.digest).sort(),
    );
    const after = await stored(store);
    assert.equal(after.size, before.size - 10);
    assert.ok(after.has(shared), "the layer image b shares stays");
    // image b is still complete
    await collectGarbage(store);
    assert.equal((await stored(store)).size, after.size);
  });
});

Deno.test("collectGarbage() removes stale ingests only when asked", async () => {
  await withTempDir(async (dir) => {
    const store = await Store.open(dir);
    const writer = await store.writer("layer-partial");
    await writer.write(new Uint8Array(10));
    await writer.close();
    assert.equal((await collectGarbage(store)).ingests.length, 0);
    assert.equal((await collectGarbage(store, { ingestsOlderThan: 60_000 })).ingests.length, 0);
    await new Promise((r) => setTimeout(r, 20));
    const dry = await collectGarbage(store, { ingestsOlderThan: 1, dryRun: true });
    assert.deepEqual(dry.ingests.map((s) => s.ref), ["layer-partial"]);
    assert.equal((await store.listStatuses()).length, 1);
    const result = await collectGarbage(store, { ingestsOlderThan: 1 });
    assert.deepEqual(result.ingests.map((s) => s.ref), ["layer-partial"]);
    assert.deepEqual(await store.listStatuses(), []);
  });
});

Deno.test("collectGarbage() refuses to run while a fetch holds a lease", async () => {
  await withTempDir(async (dir) => {
    const store = await Store.open(dir);
    const lease = await acquireLease(store.root);
    const other = await acquireLease(store.root); // leases share
    try {
      await assertRejects(() => collectGarbage(store), LockedError, "a fetch is in progress");
    } finally {
      await lease.release();
      await other.release();
    }
    assert.deepEqual((await collectGarbage(store)).blobs, []);
  });
});

Deno.test("collectGarbage() runs beside a lease that lets it, keeping what it protects until then", async () => {
  await withTempDir(async (dir) => {
    const store = await Store.open(dir);
    const kept = await putBlob(store, MediaType.ociLayer, seededBytes(10, 1));
    const expired = await putBlob(store, MediaType.ociLayer, seededBytes(10, 2));
    const stray = await putBlob(store, MediaType.ociLayer, seededBytes(10, 3));
    const forgotten = await putBlob(store, MediaType.ociLayer, seededBytes(10, 4));
    const lease = await acquireLease(store.root, { blocksGc: false });
    try {
      lease.protect(kept.digest, Date.now() + 60_000);
      lease.protect(expired.digest, Date.now() - 1);
      lease.protect(forgotten.digest);
      lease.forget(forgotten.digest);
      const removed = (await collectGarbage(store)).blobs.map((b) => b.digest).sort();
      assert.deepEqual(removed, [expired.digest, stray.digest, forgotten.digest].sort());
      assert.ok(await store.has(kept.digest));
    } finally {
      await lease.release();
    }
    assert.deepEqual((await collectGarbage(store)).blobs.map((b) => b.digest), [kept.digest]);
  });
});

Deno.test("a long-lived lease's file keeps only what still counts", async () => {
  await withTempDir(async (dir) => {
    const lease = await acquireLease(dir, { blocksGc: false });
    try {
      const digest = (i: number) => digestOf(new TextEncoder().encode(String(i)));
      const live = new Set<string>();
      for (let i = 0; i < 5000; i++) {
        const until = i % 500 === 0 ? Date.now() + 60_000 : Date.now() - 1;
        lease.protect(digest(i), until);
        if (i % 500 === 0) live.add(digest(i));
      }
      using _lock = leaseLock(dir);
      assert.deepEqual(leasedDigests(dir), live);
      const [file] = [...Deno.readDirSync(`${dir}/leases`)];
      const lines = Deno.readTextFileSync(`${dir}/leases/${file.name}`).split("\n").length - 1;
      assert.ok(lines < 1000, `${lines} lines`);
    } finally {
      await lease.release();
    }
  });
});

Deno.test("imageUses() names a record for each blob it reaches", async () => {
  await withTempDir(async (dir) => {
    const store = await Store.open(dir);
    const a = await storeImage(store, 1);
    const b = await storeImage(store, 2);
    const stray = await putBlob(store, MediaType.ociLayer, seededBytes(10, 3));
    const images = new Images(store.root);
    await images.put("r/a:v1", a.manifest);
    await images.put("r/b:v1", b.manifest);
    await images.put("r/b:again", b.manifest); // a second name reaches nothing new
    const uses = await imageUses(store);
    assert.deepEqual(
      [...uses.blobs].sort(),
      [
        [a.manifest.digest, "r/a:v1"],
        [a.config.digest, "r/a:v1"],
        [a.layer.digest, "r/a:v1"],
        [b.manifest.digest, "r/b:v1"],
        [b.config.digest, "r/b:v1"],
        [b.layer.digest, "r/b:v1"],
      ].sort(),
    );
    assert.ok(!uses.blobs.has(stray.digest));
    assert.deepEqual(uses.incomplete, []);

    // an unreadable manifest marks its record incomplete, and hides nothing of the others
    const bad = await putBlob(store, MediaType.ociManifest, new TextEncoder().encode("not json"));
    await images.put("r/c:v1", bad);
    const withBad = await imageUses(store);
    assert.equal(withBad.blobs.get(bad.digest), "r/c:v1");
    assert.equal(withBad.blobs.get(b.layer.digest), "r/b:v1");
    assert.deepEqual(withBad.incomplete.map((m) => [m.name, m.digest]), [["r/c:v1", bad.digest]]);
    assert.match(withBad.incomplete[0].why, /not JSON/);
  });
});

Deno.test("collectGarbage() refuses, deleting nothing, while a record's own manifest is missing", async () => {
  await withTempDir(async (dir) => {
    const store = await Store.open(dir);
    const a = await storeImage(store, 1);
    const b = await storeImage(store, 2);
    await putBlob(store, MediaType.ociLayer, seededBytes(10, 3)); // garbage
    const images = new Images(store.root);
    await images.put("r/a:v1", a.manifest);
    await images.put("r/b:v1", b.manifest);
    await store.delete(a.manifest.digest);
    assert.deepEqual((await imageUses(store)).incomplete, [
      { name: "r/a:v1", digest: a.manifest.digest, why: "its own manifest or index is missing" },
    ]);
    const before = await stored(store);
    for (const dryRun of [true, false]) {
      const error = await assertRejects(
        () => collectGarbage(store, { dryRun }),
        CorruptContentError,
        `image r/a:v1 (${a.manifest.digest})`,
      );
      assert.match(error.message, /dist images rm/);
      assert.doesNotMatch(error.message, /r\/b:v1/);
    }
    assert.deepEqual(await stored(store), before, "nothing removed");
    // once the record goes, its config and layer are garbage like any other
    await images.remove("r/a:v1");
    const result = await collectGarbage(store);
    assert.equal(result.blobs.length, 3);
    assert.deepEqual(
      await stored(store),
      new Set([b.manifest, b.config, b.layer].map((d) => d.digest)),
    );
  });
});

Deno.test("collectGarbage() keeps an index record whose other platforms were never fetched", async () => {
  await withTempDir(async (dir) => {
    const store = await Store.open(dir);
    const amd64 = await storeImage(store, 1);
    const arm64 = await storeImage(store, 2);
    await store.delete(arm64.manifest.digest); // the platform a fetch skipped
    const entries = [
      { ...amd64.manifest, platform: { os: "linux", architecture: "amd64" } },
      { ...arm64.manifest, platform: { os: "linux", architecture: "arm64" } },
    ];
    const index = await putBlob(
      store,
      MediaType.ociIndex,
      new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, manifests: entries })),
    );
    await new Images(store.root).put("r/multi:v1", index);
    const result = await collectGarbage(store);
    // arm64's config and layer are there without their manifest: nothing reaches them
    assert.deepEqual(
      result.blobs.map((b) => b.digest).sort(),
      [arm64.config.digest, arm64.layer.digest].sort(),
    );
    assert.deepEqual(
      await stored(store),
      new Set([index, amd64.manifest, amd64.config, amd64.layer].map((d) => d.digest)),
    );
  });
});
