/** Pushing from the store to the real registry: digests kept, nothing uploaded twice, faults. */
import assert from "node:assert/strict";
import { skopeoDigest } from "../_helpers/programs.ts";
import { fetchImage } from "../../remotes/copy.ts";
import { pushImage } from "../../remotes/push.ts";
import { RegistryClient } from "../../remotes/client.ts";
import { Store } from "../../content/store/store.ts";
import { startRegistry, withRegistry } from "../_helpers/registry.ts";
import { compressLayer, pushImage as putImage, pushMultiPlatform } from "../_helpers/images.ts";
import { randomBytes } from "../_helpers/bytes.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { startTokenIssuer } from "../_helpers/token_issuer.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { startServe } from "../_helpers/serve.ts";

Deno.test("pushImage() pushes every stored platform with the same digests, and it fetches back", async () => {
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const client = new RegistryClient();
    try {
      const store = await Store.open(`${dir}/a`);
      const fetched = await fetchImage(client, store, `${registry.host}/src/app:v1`, {
        allPlatforms: true,
      });
      const pushed = await pushImage(client, store, fetched.name, `${registry.host}/copy/app:v2`);
      assert.equal(pushed.descriptor.digest, fetched.descriptor.digest);
      assert.equal(pushed.manifests.length, 3); // two platforms and the attestation
      assert.equal(await skopeoDigest(`${registry.host}/copy/app:v2`), fetched.descriptor.digest);
      const back = await Store.open(`${dir}/b`);
      const again = await fetchImage(client, back, `${registry.host}/copy/app:v2`, {
        allPlatforms: true,
      });
      assert.equal(again.descriptor.digest, fetched.descriptor.digest);
    } finally {
      client.close();
    }
  });
});

Deno.test("pushImage() a second time uploads no blob, and refuses an index it holds in part", async () => {
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const proxy = await startFaultProxy(registry.url);
    const client = new RegistryClient();
    try {
      const store = await Store.open(dir);
      const partial = await fetchImage(client, store, `${registry.host}/src/app:v1`);
      await assert.rejects(
        () => pushImage(client, store, partial.name, `${proxy.host}/dst/app:v1`),
        /cannot push .*--all-platforms/,
      );
      await fetchImage(client, store, `${registry.host}/src/app:v1`, { allPlatforms: true });
      await pushImage(client, store, partial.name, `${proxy.host}/dst/app:v1`);
      const uploads = () => proxy.requests.filter((r) => r.method !== "HEAD" && r.method !== "GET");
      const first = uploads().filter((r) => r.path.includes("/blobs/uploads/")).length;
      assert.ok(first >= 5, `blob uploads of the first push: ${first}`);
      proxy.requests.length = 0;
      const second = await pushImage(client, store, partial.name, `${proxy.host}/dst/app:v1`);
      assert.equal(second.uploaded, partial.descriptor.size); // the index, under its tag
      assert.deepEqual(
        uploads().map((r) => `${r.method} ${r.path.replace(/sha256:\w+/, "DIGEST")}`),
        ["PUT /v2/dst/app/manifests/v1"], // only the tag is put again
      );
    } finally {
      client.close();
      await proxy.stop();
    }
  });
});

Deno.test("pushImage() of a big blob goes on after a cut chunk and after a 5xx", async () => {
  await withRegistry(async (registry, dir) => {
    const layer = compressLayer(randomBytes(12 << 20), "none");
    await putImage(registry.url, "src/big", { layers: [layer], tag: "v1" });
    const proxy = await startFaultProxy(registry.url);
    const client = new RegistryClient({ retry: { baseDelayMs: 10 } });
    try {
      const store = await Store.open(dir);
      const fetched = await fetchImage(client, store, `${registry.host}/src/big:v1`);
      // the first chunk is cut after 1 MiB: distribution 2.8 then drops the upload, which starts over
      proxy.addRule({ method: "PATCH", path: "/dst/", cutRequestAfter: 1 << 20, times: 1 });
      proxy.requests.length = 0;
      await pushImage(client, store, fetched.name, `${proxy.host}/dst/big:v1`, {
        chunkSize: 4 << 20,
      });
      const patches = proxy.requests.filter((r) => r.method === "PATCH");
      assert.ok(patches.some((r) => r.faulted), "the cut happened");
      assert.equal(
        await skopeoDigest(`${registry.host}/dst/big:v1`),
        fetched.descriptor.digest,
      );
      proxy.addRule({ method: "PATCH", path: "/again/", status: 503, times: 1 });
      await pushImage(client, store, fetched.name, `${proxy.host}/again/big:v1`, {
        chunkSize: 4 << 20,
      });
      assert.ok(proxy.requests.some((r) => r.path.includes("/again/") && r.status === 503));
      assert.equal(
        await skopeoDigest(`${registry.host}/again/big:v1`),
        fetched.descriptor.digest,
      );
    } finally {
      client.close();
      await proxy.stop();
    }
  });
});

Deno.test("pushImage() asks a token registry for pull,push scope", async () => {
  const issuer = await startTokenIssuer({ users: { pusher: "push-pw" } });
  const registry = await startRegistry(issuer.auth);
  const source = await startRegistry();
  const client = new RegistryClient({
    credentials: (host) =>
      Promise.resolve(
        host === registry.host ? { username: "pusher", password: "push-pw" } : undefined,
      ),
  });
  try {
    await withTempDir(async (dir) => {
      await pushMultiPlatform(source.url, "src/app");
      const store = await Store.open(dir);
      const fetched = await fetchImage(client, store, `${source.host}/src/app:v1`, {
        allPlatforms: true,
      });
      await pushImage(client, store, fetched.name, `${registry.host}/team/app:v1`);
      const scopes = issuer.requests.flatMap((r) => r.scopes);
      assert.ok(scopes.includes("repository:team/app:pull,push"), scopes.join(" "));
      assert.ok(issuer.requests.every((r) => r.user === "pusher"));
    });
  } finally {
    client.close();
    await registry.stop();
    await source.stop();
    await issuer.stop();
  }
});

Deno.test("pushImage() of a blob changed on disk is refused, not published under its old digest", async () => {
  await withRegistry(async (registry, dir) => {
    const layer = compressLayer(randomBytes(64 * 1024), "none");
    const image = await putImage(registry.url, "src/app", { layers: [layer], tag: "v1" });
    const digest = image.layers[0].digest;
    const client = new RegistryClient({ retry: { baseDelayMs: 10 } });
    try {
      const store = await Store.open(dir);
      const fetched = await fetchImage(client, store, `${registry.host}/src/app:v1`);
      const path = store.blobPath(digest);
      await Deno.chmod(path, 0o644);
      const bytes = await Deno.readFile(path);
      bytes[100] ^= 0xff; // a poisoned cache: same size, other content
      await Deno.writeFile(path, bytes);
      await assert.rejects(
        () => pushImage(client, store, fetched.name, `${registry.host}/dst/app:v1`),
        /DIGEST_INVALID|digest/,
      );
      const head = await fetch(`${registry.url}/v2/dst/app/blobs/${digest}`, {
        method: "HEAD",
      });
      assert.equal(head.status, 404);
    } finally {
      client.close();
    }
  });
});

Deno.test("pushImage() to dist serve goes on where a cut chunk left the upload, without starting over", async () => {
  await withRegistry(async (registry, dir) => {
    const layer = compressLayer(randomBytes(12 << 20), "none");
    await putImage(registry.url, "src/big", { layers: [layer], tag: "v1" });
    const served = await startServe(`${dir}/served`, ["--allow-push"]);
    const proxy = await startFaultProxy(served.url);
    const client = new RegistryClient({ retry: { baseDelayMs: 10 } });
    try {
      const store = await Store.open(`${dir}/store`);
      const fetched = await fetchImage(client, store, `${registry.host}/src/big:v1`);
      proxy.addRule({ method: "PATCH", cutRequestAfter: 3 << 20, times: 1 });
      await pushImage(client, store, fetched.name, `${proxy.host}/dst/big:v1`, {
        chunkSize: 4 << 20,
      });
      const posts = proxy.requests.filter((r) => r.method === "POST").length;
      const statusChecks = proxy.requests.filter((r) =>
        r.method === "GET" && r.path.includes("/uploads/")
      );
      assert.ok(proxy.requests.some((r) => r.faulted), "the cut happened");
      assert.ok(statusChecks.length >= 1, "the upload's status was asked");
      assert.equal(posts, 2, "one upload session for the layer, one for the config: no restart");
      assert.equal(await skopeoDigest(`${served.host}/dst/big:v1`), fetched.descriptor.digest);
    } finally {
      client.close();
      await proxy.stop();
      await served.stop();
    }
  });
});

Deno.test("pushImage() with --insecure streams chunked uploads whole", async () => {
  const { makeCertificates } = await import("../_helpers/tls.ts");
  await withRegistry(async (registry, dir) => {
    const layer = compressLayer(randomBytes(12 << 20), "none");
    await putImage(registry.url, "src/big", { layers: [layer], tag: "v1" });
    const certs = await makeCertificates(dir);
    const tls = await startFaultProxy(registry.url, { tls: { cert: certs.cert, key: certs.key } });
    // the --insecure transport (node:https) sends the PATCH chunks as streams
    const client = new RegistryClient({ insecure: true, plainHttp: false });
    const slow = new RegistryClient();
    try {
      const store = await Store.open(`${dir}/store`);
      const fetched = await fetchImage(slow, store, `${registry.host}/src/big:v1`);
      await pushImage(client, store, fetched.name, `${tls.host}/dst/big:v1`, {
        chunkSize: 4 << 20,
      });
      assert.ok(tls.requests.some((r) => r.method === "PATCH"));
      assert.equal(await skopeoDigest(`${registry.host}/dst/big:v1`), fetched.descriptor.digest);
    } finally {
      client.close();
      slow.close();
      await tls.stop();
    }
  });
});
