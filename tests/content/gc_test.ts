import assert from "node:assert/strict";
import { acquireLease, collectGarbage } from "../../content/gc.ts";
import { Store } from "../../content/store.ts";
import { Images } from "../../content/images.ts";
import { digestOf } from "../../content/digest.ts";
import { LockedError } from "../../content/errors.ts";
import { fetchImage } from "../../remotes/copy.ts";
import { RegistryClient } from "../../remotes/client.ts";
import { startRegistry } from "../_helpers/registry.ts";
import { buildLayer, pushAttestation, pushImage, pushIndex } from "../_helpers/images.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { assertRejects } from "../_helpers/rejects.ts";

async function stored(store: Store): Promise<Set<string>> {
  const digests = new Set<string>();
  for await (const info of store.list()) digests.add(info.digest);
  return digests;
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
