import assert from "node:assert/strict";
import { MediaType } from "../../content/descriptor.ts";
import { digestOf } from "../../content/digest.ts";
import { DigestMismatchError, SizeMismatchError, UnsupportedError } from "../../content/errors.ts";
import { RegistryClient } from "../../remotes/client.ts";
import { RegistryError, RegistryNotFoundError } from "../../remotes/errors.ts";
import { parseReference } from "../../content/reference.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { pushManifest, pushSimpleImage } from "../_helpers/push.ts";
import { startRegistry } from "../_helpers/registry.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { bytesOf, randomBytes } from "../_helpers/bytes.ts";

/** A registry with one image `app:v1` (a 3 MB layer and a small one), behind a fault proxy. */
async function withImage(
  fn: (ctx: {
    client: RegistryClient;
    proxy: Awaited<ReturnType<typeof startFaultProxy>>;
    host: string;
    image: Awaited<ReturnType<typeof pushSimpleImage>>;
    layer: Uint8Array<ArrayBuffer>;
    registryUrl: string;
  }) => Promise<void>,
): Promise<void> {
  const registry = await startRegistry();
  const proxy = await startFaultProxy(registry.url);
  const client = new RegistryClient({ credentials: {}, retry: { baseDelayMs: 10 } });
  try {
    const layer = randomBytes(3_000_000);
    const image = await pushSimpleImage(registry.url, "app", "v1", [layer, randomBytes(100)]);
    await fn({ client, proxy, host: proxy.host, image, layer, registryUrl: registry.url });
  } finally {
    client.close();
    await proxy.stop();
    await registry.stop();
  }
}

Deno.test("client.resolve() answers from a HEAD request", async () => {
  await withImage(async ({ client, proxy, host, image }) => {
    const desc = await client.resolve(parseReference(`${host}/app:v1`));
    assert.deepEqual(desc, image.manifest);
    assert.deepEqual(proxy.requests.map((r) => `${r.method} ${r.path}`), [
      "HEAD /v2/app/manifests/v1",
    ]);
    const accept = proxy.requests[0].headers.get("accept")!;
    for (const type of [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest]) {
      assert.ok(accept.includes(type), accept);
    }
    assert.ok(accept.includes(MediaType.dockerManifestList), accept);
  });
});

Deno.test("client.resolve() falls back to GET when HEAD is refused or has no digest", async () => {
  await withImage(async ({ client, proxy, host, image }) => {
    proxy.addRule({ method: "HEAD", path: "/manifests/", status: 405 });
    assert.deepEqual(await client.resolve(parseReference(`${host}/app:v1`)), image.manifest);
    proxy.addRule({ method: "HEAD", path: "/manifests/", status: 200 }); // no digest, no length
    assert.deepEqual(await client.resolve(parseReference(`${host}/app:v1`)), image.manifest);
    assert.deepEqual(proxy.requests.map((r) => `${r.method} ${r.status}`), [
      "HEAD 405",
      "GET 200",
      "HEAD 200",
      "GET 200",
    ]);
  });
});

Deno.test("client.resolve() uses the digest of name:tag@digest", async () => {
  await withImage(async ({ client, proxy, host, image }) => {
    const ref = parseReference(`${host}/app:no-such-tag@${image.manifest.digest}`);
    assert.deepEqual(await client.resolve(ref), image.manifest);
    assert.equal(proxy.requests[0].path, `/v2/app/manifests/${image.manifest.digest}`);
  });
});

Deno.test("client.resolve() of a missing tag throws RegistryNotFoundError", async () => {
  await withImage(async ({ client, host }) => {
    const error = await assertRejects(
      () => client.resolve(parseReference(`${host}/app:missing`)),
      RegistryNotFoundError,
      `cannot resolve ${host}/app:missing: not found (404`,
    );
    assert.equal((error as RegistryNotFoundError).status, 404);
  });
});

Deno.test("client.fetchManifest() returns verified bytes of a manifest and an index", async () => {
  await withImage(async ({ client, host, image, registryUrl }) => {
    const ref = parseReference(`${host}/app:v1`);
    const bytes = await client.fetchManifest(ref, image.manifest);
    assert.equal(digestOf(bytes), image.manifest.digest);
    assert.equal(JSON.parse(new TextDecoder().decode(bytes)).layers.length, 2);

    const index = await pushManifest(registryUrl, "app", "multi", {
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [{ ...image.manifest, platform: { os: "linux", architecture: "amd64" } }],
    }, MediaType.ociIndex);
    const indexRef = parseReference(`${host}/app:multi`);
    const resolved = await client.resolve(indexRef);
    assert.deepEqual(resolved, index);
    assert.equal(digestOf(await client.fetchManifest(indexRef, resolved)), index.digest);
  });
});

Deno.test("client.fetchManifest() rejects content that does not match the descriptor", async () => {
  await withImage(async ({ client, proxy, host, image }) => {
    const ref = parseReference(`${host}/app:v1`);
    const unknown = { ...image.manifest, digest: digestOf(new Uint8Array([1])) };
    await assertRejects(() => client.fetchManifest(ref, unknown), RegistryNotFoundError);
    const path = `/manifests/${image.manifest.digest}`;
    const same = new Uint8Array(image.manifest.size).fill(32); // right size, wrong bytes
    proxy.addRule({ method: "GET", path, status: 200, body: same });
    await assertRejects(
      () => client.fetchManifest(ref, image.manifest),
      DigestMismatchError,
      `expected digest ${image.manifest.digest}, got ${digestOf(same)}`,
    );
    proxy.addRule({ method: "GET", path, status: 200, body: "{}" });
    await assertRejects(
      () => client.fetchManifest(ref, image.manifest),
      SizeMismatchError,
      `expected size ${image.manifest.size}, got 2`,
    );
  });
});

Deno.test("client.fetchManifest() refuses Docker schema 1 manifests", async () => {
  await withImage(async ({ client, proxy, host }) => {
    const body = JSON.stringify({ schemaVersion: 1, name: "app", tag: "old", fsLayers: [] });
    const digest = digestOf(new TextEncoder().encode(body));
    const headers = {
      "content-type": MediaType.dockerManifestV1Signed,
      "docker-content-digest": digest,
    };
    proxy.addRule({ path: "/manifests/old", status: 200, headers, body, times: 2 });
    proxy.addRule({ path: `/manifests/${digest}`, status: 200, headers, body });
    const ref = parseReference(`${host}/app:old`);
    const desc = await client.resolve(ref);
    assert.equal(desc.mediaType, MediaType.dockerManifestV1Signed);
    await assertRejects(
      () => client.fetchManifest(ref, desc),
      UnsupportedError,
      "Docker schema 1 manifests are not supported",
    );
    // also when the registry labels it plain JSON
    await assertRejects(
      () => client.fetchManifest(ref, { ...desc, mediaType: MediaType.ociManifest }),
      UnsupportedError,
      "schema 1",
    );
  });
});

Deno.test("client.fetch() streams a blob, whole or from an offset with Range", async () => {
  await withImage(async ({ client, proxy, host, image, layer }) => {
    const ref = parseReference(`${host}/app:v1`);
    const whole = await client.fetch(ref, image.layers[0]);
    assert.equal(whole.offset, 0);
    assert.deepEqual(await bytesOf(whole.stream), layer);

    const part = await client.fetch(ref, image.layers[0], { offset: 1_234_567 });
    assert.equal(part.offset, 1_234_567);
    assert.deepEqual(await bytesOf(part.stream), layer.subarray(1_234_567));
    const last = proxy.requests.at(-1)!;
    assert.equal(last.path, `/v2/app/blobs/${image.layers[0].digest}`);
    assert.equal(last.headers.get("range"), "bytes=1234567-");
    assert.equal(last.status, 206);

    const end = await client.fetch(ref, image.layers[0], { offset: layer.length });
    assert.equal(end.offset, layer.length);
    assert.equal((await bytesOf(end.stream)).length, 0);
  });
});

Deno.test("client.fetch() starts from 0 when the registry ignores or misreads Range", async () => {
  await withImage(async ({ client, proxy, host, image, layer }) => {
    const ref = parseReference(`${host}/app:v1`);
    const path = `/blobs/${image.layers[0].digest}`;
    proxy.addRule({ method: "GET", path, status: 200, body: layer });
    const ignored = await client.fetch(ref, image.layers[0], { offset: 1000 });
    assert.equal(ignored.offset, 0);
    assert.deepEqual(await bytesOf(ignored.stream), layer);

    // a 206 for another range than asked for: not used, the client asks again without Range
    proxy.addRule({
      method: "GET",
      path,
      status: 206,
      headers: { "content-range": `bytes 0-9/${layer.length}` },
      body: layer.slice(0, 10),
    });
    const wrong = await client.fetch(ref, image.layers[0], { offset: 1000 });
    assert.equal(wrong.offset, 0);
    assert.deepEqual(await bytesOf(wrong.stream), layer);
    const [asked, again] = proxy.requests.slice(-2);
    assert.equal(asked.headers.get("range"), "bytes=1000-");
    assert.equal(again.headers.get("range"), null);
  });
});

Deno.test("client.resolveObject() finds blobs and manifests by bare digest", async () => {
  await withImage(async ({ client, host, image }) => {
    const layer = await client.resolveObject(
      parseReference(`${host}/app@${image.layers[1].digest}`),
    );
    assert.equal(layer.digest, image.layers[1].digest);
    assert.equal(layer.size, image.layers[1].size);
    const manifest = await client.resolveObject(
      parseReference(`${host}/app@${image.manifest.digest}`),
    );
    assert.deepEqual(manifest, image.manifest);
    const hinted = await client.resolveObject(
      parseReference(`${host}/app@${image.config.digest}`),
      { mediaType: MediaType.ociConfig, size: image.config.size },
    );
    assert.deepEqual(hinted, image.config);
    await assertRejects(
      () =>
        client.resolveObject(parseReference(`${host}/app:v1`), { mediaType: MediaType.ociConfig }),
      Error,
      "a blob is named by its digest",
    );
  });
});

Deno.test("client.resolve() reports a digest mismatch of a GET fallback", async () => {
  await withImage(async ({ client, proxy, host, image }) => {
    proxy.addRule({ method: "HEAD", path: "/manifests/", status: 405 });
    proxy.addRule({
      method: "GET",
      path: "/manifests/",
      status: 200,
      headers: { "content-type": MediaType.ociManifest },
      body: '{"schemaVersion":2}',
    });
    await assertRejects(
      () => client.resolve(parseReference(`${host}/app@${image.manifest.digest}`)),
      DigestMismatchError,
      `expected digest ${image.manifest.digest}`,
    );
  });
});

Deno.test("client errors carry the registry's codes and messages", async () => {
  await withImage(async ({ client, proxy, host }) => {
    proxy.addRule({
      path: "/manifests/",
      status: 400,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ errors: [{ code: "NAME_INVALID", message: "invalid name" }] }),
      times: 2,
    });
    const error = await assertRejects(
      () => client.resolve(parseReference(`${host}/app:v1`)),
      RegistryError,
      "400 Bad Request: NAME_INVALID: invalid name",
    ) as RegistryError;
    assert.deepEqual(error.codes, ["NAME_INVALID"]);
    assert.equal(error.status, 400);
    assert.equal(error.retryable, false);
  });
});
