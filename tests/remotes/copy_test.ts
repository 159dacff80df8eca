import assert from "node:assert/strict";
import { fetchImage, registrySource } from "../../remotes/copy.ts";
import {
  copyImage,
  type CopySource,
  type ProgressEvent,
  StoreTarget,
} from "../../content/images/copy.ts";
import { parseReference } from "../../content/reference.ts";
import { RegistryClient } from "../../remotes/client.ts";
import { Store } from "../../content/store/store.ts";
import { Images } from "../../content/images/records.ts";
import type { Descriptor } from "../../content/descriptor.ts";
import { NotFoundError } from "../../content/errors.ts";
import { parsePlatform } from "../../content/platform.ts";
import { type Registry, withRegistry } from "../_helpers/registry.ts";
import {
  buildLayer,
  compressLayer,
  type PushedImage,
  pushImage,
  pushIndex,
  pushMultiPlatform,
} from "../_helpers/images.ts";
import { randomBytes } from "../_helpers/bytes.ts";
import { pushBlob, pushManifest } from "../_helpers/push.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { assertRejects } from "../_helpers/rejects.ts";

/** Runs `fn` with a fresh registry, store and client, all cleaned up afterwards. */
async function withSetup(
  fn: (registry: Registry, store: Store, client: RegistryClient) => Promise<void>,
): Promise<void> {
  const client = new RegistryClient();
  try {
    await withRegistry(async (registry, dir) => fn(registry, await Store.open(dir), client));
  } finally {
    client.close();
  }
}

async function stored(store: Store): Promise<Set<string>> {
  const digests = new Set<string>();
  for await (const info of store.list()) digests.add(info.digest);
  return digests;
}

function digests(image: PushedImage): string[] {
  return [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)];
}

Deno.test("fetchImage() fetches the host platform of an index, not attestations", async () => {
  await withSetup(async (registry, store, client) => {
    const { amd64, arm64, attestation } = await pushMultiPlatform(registry.url, "multi/app");
    const events: ProgressEvent[] = [];
    const result = await fetchImage(client, store, `${registry.host}/multi/app:v1`, {
      platforms: [parsePlatform("linux/amd64")],
      onProgress: (e) => events.push(e),
    });
    const have = await stored(store);
    assert.ok(have.has(result.descriptor.digest), "the index itself is stored");
    for (const d of digests(amd64)) assert.ok(have.has(d), `amd64 blob ${d}`);
    assert.ok(!have.has(arm64.manifest.digest), "arm64 manifest not fetched");
    assert.ok(!have.has(arm64.layers[1].digest), "arm64 layer not fetched");
    assert.ok(!have.has(attestation.digest), "attestation not fetched");
    assert.equal(have.size, 1 + 4);
    assert.deepEqual(result.manifests.map((m) => m.digest), [amd64.manifest.digest]);
    assert.equal(result.name, `${registry.host}/multi/app:v1`);
    // every blob ends as done, in the event stream, and the image is recorded last
    const done = events.filter((e) => e.status === "done").map((e) => e.digest);
    assert.deepEqual(new Set(done), have);
    assert.equal(events.at(-1)?.status, "recorded");
    const records = await new Images(store.root).list();
    assert.deepEqual(records, [{ name: result.name, target: result.descriptor }]);
  });
});

Deno.test("fetchImage() matches arm64 to an arm64/v8 entry and takes several platforms", async () => {
  await withSetup(async (registry, store, client) => {
    const { amd64, arm64, attestation } = await pushMultiPlatform(registry.url, "multi/app");
    const ref = `${registry.host}/multi/app:v1`;
    const result = await fetchImage(client, store, ref, {
      platforms: [parsePlatform("linux/arm64"), parsePlatform("linux/amd64")],
    });
    assert.deepEqual(
      result.manifests.map((m) => m.digest).sort(),
      [amd64.manifest.digest, arm64.manifest.digest].sort(),
    );
    const have = await stored(store);
    for (const d of [...digests(amd64), ...digests(arm64)]) assert.ok(have.has(d));
    assert.ok(!have.has(attestation.digest));
    await assertRejects(
      () => fetchImage(client, store, ref, { platforms: [parsePlatform("linux/s390x")] }),
      NotFoundError,
      "no manifest for platform linux/s390x",
    );
  });
});

Deno.test("fetchImage() with allPlatforms fetches attestations too", async () => {
  await withSetup(async (registry, store, client) => {
    const { amd64, arm64, attestation } = await pushMultiPlatform(registry.url, "multi/app");
    await fetchImage(client, store, `${registry.host}/multi/app:v1`, { allPlatforms: true });
    const have = await stored(store);
    for (const d of [...digests(amd64), ...digests(arm64), attestation.digest]) {
      assert.ok(have.has(d), d);
    }
  });
});

Deno.test("fetchImage() fetches a Docker manifest list with gzip layers", async () => {
  await withSetup(async (registry, store, client) => {
    const images: PushedImage[] = [];
    for (const architecture of ["amd64", "arm64"]) {
      images.push(
        await pushImage(registry.url, "docker/app", {
          docker: true,
          layers: [await buildLayer({ [`bin/${architecture}`]: "x\n" }, "gzip", { docker: true })],
          platform: { os: "linux", architecture },
        }),
      );
    }
    const list = await pushIndex(
      registry.url,
      "docker/app",
      "latest",
      images.map((i) => i.manifest),
      {
        docker: true,
      },
    );
    const result = await fetchImage(client, store, `${registry.host}/docker/app`, {
      platforms: [parsePlatform("linux/arm64")],
    });
    assert.equal(result.descriptor.digest, list.digest);
    assert.equal(result.descriptor.mediaType, list.mediaType);
    const have = await stored(store);
    for (const d of digests(images[1])) assert.ok(have.has(d));
    assert.ok(!have.has(images[0].manifest.digest));
    assert.equal(result.name, `${registry.host}/docker/app:latest`);
  });
});

Deno.test("fetchImage() stores zstd and uncompressed layers byte for byte", async () => {
  await withSetup(async (registry, store, client) => {
    const zstd = await buildLayer({ "a/zstd.txt": "zstd\n" }, "zstd");
    const plain = compressLayer(randomBytes(3 * 1024 * 1024 + 17), "none");
    const image = await pushImage(registry.url, "mixed/app", {
      layers: [zstd, plain],
      tag: "v1",
    });
    await fetchImage(client, store, `${registry.host}/mixed/app:v1`);
    assert.deepEqual(await store.readBytes(image.layers[0].digest), zstd.bytes);
    const info = await store.info(image.layers[1].digest);
    assert.equal(info.size, plain.bytes.length);
    assert.equal(image.layers[1].mediaType, "application/vnd.oci.image.layer.v1.tar");
  });
});

Deno.test("fetchImage() skips non-distributable layers and says so", async () => {
  await withSetup(async (registry, store, client) => {
    // the registry keeps the blob too (it insists on it): dist must still leave it alone
    const bytes = new TextEncoder().encode("foreign blob");
    const foreign: Descriptor = {
      ...(await pushBlob(registry.url, "foreign/app", bytes)),
      mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
      urls: ["https://example.invalid/layer.tar.gz"],
    };
    const image = await pushImage(registry.url, "foreign/app", {
      docker: true,
      layers: [await buildLayer({ "etc/x": "x\n" }, "gzip", { docker: true })],
      foreign: [foreign],
      tag: "v1",
    });
    const events: ProgressEvent[] = [];
    const result = await fetchImage(client, store, `${registry.host}/foreign/app:v1`, {
      onProgress: (e) => events.push(e),
    });
    assert.deepEqual(result.skipped.map((d) => d.digest), [foreign.digest]);
    const skipped = events.filter((e) => e.status === "skipped");
    assert.deepEqual(skipped.map((e) => [e.digest, e.reason]), [
      [foreign.digest, "non-distributable"],
    ]);
    assert.equal(await store.has(foreign.digest), false);
    for (const d of digests(image)) assert.ok(await store.has(d as never));
  });
});

Deno.test("fetchImage() fetches artifacts of unknown media types as opaque blobs", async () => {
  await withSetup(async (registry, store, client) => {
    const empty = new TextEncoder().encode("{}");
    const config = await pushBlob(
      registry.url,
      "art/x",
      empty,
      "application/vnd.oci.empty.v1+json",
    );
    const payload = await pushBlob(
      registry.url,
      "art/x",
      new TextEncoder().encode('{"chart":true}'),
      "application/vnd.example.chart.v1+json",
    );
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.example.chart",
      config,
      layers: [payload],
    };
    await pushManifest(registry.url, "art/x", "v1", manifest, manifest.mediaType);
    const result = await fetchImage(client, store, `${registry.host}/art/x:v1`);
    assert.equal(await store.has(payload.digest), true);
    assert.equal(await store.has(config.digest), true);
    assert.equal(result.manifests.length, 1);
  });
});

Deno.test("fetchImage() fetches nothing again that the store has", async () => {
  await withSetup(async (registry, store, client) => {
    const layers = [
      compressLayer(randomBytes(256 * 1024), "none"),
      await buildLayer({ "x": "x" }, "gzip"),
    ];
    await pushImage(registry.url, "again/app", { layers, tag: "v1" });
    const ref = `${registry.host}/again/app:v1`;
    const first = await fetchImage(client, store, ref);
    assert.ok(first.downloaded > 256 * 1024);
    const events: ProgressEvent[] = [];
    const second = await fetchImage(client, store, ref, { onProgress: (e) => events.push(e) });
    assert.equal(second.downloaded, 0);
    const statuses = new Set(events.map((e) => e.status));
    assert.deepEqual([...statuses].sort(), ["exists", "recorded", "resolved"]);
    assert.equal((await new Images(store.root).list()).length, 1);
    assert.deepEqual(await store.listStatuses(), []);
  });
});

Deno.test("copyImage() keeps at most maxConcurrency blobs in flight", async () => {
  await withSetup(async (registry, store, client) => {
    const layers = [];
    for (let i = 0; i < 8; i++) layers.push(compressLayer(randomBytes(256 * 1024 + i), "none"));
    await pushImage(registry.url, "many/app", { layers, tag: "v1" });
    // transfers slowed down so that they overlap whenever the limit lets them
    const proxy = await startFaultProxy(registry.url, { bytesPerSecond: 8 << 20 });
    try {
      const ref = parseReference(`${proxy.host}/many/app:v1`);
      const registry = registrySource(client, ref);
      // the real registry source, counting the transfers open at once
      let open = 0;
      let peak = 0;
      let transfers = 0;
      const source: CopySource = {
        ...registry,
        async open(desc, options) {
          const result = await registry.open(desc, options);
          transfers++;
          peak = Math.max(peak, ++open);
          const counted = result.stream.pipeThrough(
            new TransformStream<Uint8Array, Uint8Array>({ flush: () => void open-- }),
          );
          return { ...result, stream: counted };
        },
      };
      const root = await client.resolve(ref);
      await copyImage(source, new StoreTarget(store), [root], { maxConcurrency: 2 });
      assert.equal(transfers, 9); // 8 layers and the config
      assert.equal(peak, 2);
    } finally {
      await proxy.stop();
    }
  });
});

Deno.test("fetchImage() stops on abort and leaves no partial blob", async () => {
  await withSetup(async (registry, store, client) => {
    const big = compressLayer(randomBytes(8 * 1024 * 1024), "none");
    const image = await pushImage(registry.url, "abort/app", { layers: [big], tag: "v1" });
    const controller = new AbortController();
    await assertRejects(
      () =>
        fetchImage(client, store, `${registry.host}/abort/app:v1`, {
          signal: controller.signal,
          onProgress: (e) => {
            if (e.kind === "layer" && e.status === "downloading") controller.abort();
          },
        }),
      Error,
    );
    assert.equal(await store.has(image.layers[0].digest), false);
    assert.deepEqual(await new Images(store.root).list(), []);
    // the ingest is unlocked: a new fetch completes it
    await fetchImage(client, store, `${registry.host}/abort/app:v1`);
    assert.equal(await store.has(image.layers[0].digest), true);
  });
});

Deno.test("fetchImage() stops mid-blob on abort, seconds into the download", async () => {
  await withSetup(async (registry, store, client) => {
    const big = compressLayer(randomBytes(20 << 20), "none");
    const image = await pushImage(registry.url, "abort/slow", { layers: [big], tag: "v1" });
    const proxy = await startFaultProxy(registry.url, { bytesPerSecond: 4 << 20 });
    const controller = new AbortController();
    let offsetAtAbort = 0;
    try {
      await assertRejects(
        () =>
          fetchImage(client, store, `${proxy.host}/abort/slow:v1`, {
            signal: controller.signal,
            onProgress: (e) => {
              if (e.kind !== "layer" || e.status !== "downloading") return;
              // garbage, as a busy process makes: the collector runs and takes the Response
              for (let i = 0; i < 16; i++) new Uint8Array(1 << 20);
              if ((e.offset ?? 0) >= 6 << 20 && !controller.signal.aborted) {
                offsetAtAbort = e.offset!;
                controller.abort(new Error("stop"));
              }
            },
          }),
        Error,
        "stop",
      );
    } finally {
      await proxy.stop();
    }
    assert.ok(offsetAtAbort > 0);
    assert.equal(await store.has(image.layers[0].digest), false);
    const [ingest] = await store.listStatuses();
    assert.ok(ingest.offset < 20 << 20, `stopped at ${ingest.offset}, not at the end`);
  });
});

Deno.test("fetchImage(): a first fetch GETs the manifest once, with no HEAD; a refetch only HEADs it", async () => {
  await withSetup(async (registry, store, client) => {
    await pushImage(registry.url, "once/app", {
      layers: [compressLayer(randomBytes(1024), "none")],
      tag: "v1",
    });
    const proxy = await startFaultProxy(registry.url);
    try {
      const manifestRequests = () =>
        proxy.requests.filter((r) => r.path.includes("/manifests/")).map((r) => r.method);
      const ref = `${proxy.host}/once/app:v1`;
      await fetchImage(client, store, ref);
      assert.deepEqual(manifestRequests(), ["GET"]);
      proxy.requests.length = 0;
      await fetchImage(client, store, ref);
      assert.deepEqual(manifestRequests(), ["HEAD"]);
      assert.ok(!proxy.requests.some((r) => r.path.includes("/blobs/")), "nothing fetched again");
    } finally {
      await proxy.stop();
    }
  });
});
