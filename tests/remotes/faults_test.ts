/** The registry client against a real registry behind a fault-injecting proxy. */
import assert from "node:assert/strict";
import { MediaType } from "../../content/descriptor.ts";
import { digestOf } from "../../content/digest.ts";
import { DigestMismatchError } from "../../content/errors.ts";
import { VerifyStream } from "../../content/verify.ts";
import { RegistryClient, type RetryEvent } from "../../remotes/client.ts";
import { RegistryError } from "../../remotes/errors.ts";
import { parseReference } from "../../content/reference.ts";
import { type FaultProxy, startFaultProxy } from "../_helpers/fault_proxy.ts";
import { pushSimpleImage } from "../_helpers/push.ts";
import { type Registry, startRegistry } from "../_helpers/registry.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { bytesOf, randomBytes } from "../_helpers/bytes.ts";

const MiB = 1024 * 1024;

interface Setup {
  registry: Registry;
  proxy: FaultProxy;
  layer: Uint8Array<ArrayBuffer>;
  image: Awaited<ReturnType<typeof pushSimpleImage>>;
}

/** A registry with `app:v1` (one 3 MiB layer) behind a fault proxy. */
async function withFaults(fn: (setup: Setup) => Promise<void>): Promise<void> {
  const registry = await startRegistry();
  const proxy = await startFaultProxy(registry.url);
  try {
    const layer = randomBytes(3 * MiB);
    const image = await pushSimpleImage(registry.url, "app", "v1", [layer]);
    await fn({ registry, proxy, layer, image });
  } finally {
    await proxy.stop();
    await registry.stop();
  }
}

Deno.test("client.fetch() resumes a blob with Range after the connection is cut", async () => {
  await withFaults(async ({ proxy, layer, image }) => {
    const client = new RegistryClient({ credentials: {}, retry: { baseDelayMs: 10 } });
    try {
      const blobPath = `/blobs/${image.layers[0].digest}`;
      proxy.addRule({ method: "GET", path: blobPath, cutAfter: 1.5 * MiB });
      const ref = parseReference(`${proxy.host}/app:v1`);
      const { stream } = await client.fetch(ref, image.layers[0]);
      assert.deepEqual(await bytesOf(stream), layer);
      const gets = proxy.requests.filter((r) => r.path.endsWith(blobPath));
      assert.equal(gets.length, 2);
      assert.equal(gets[0].headers.get("range"), null);
      const range = /^bytes=(\d+)-$/.exec(gets[1].headers.get("range") ?? "");
      assert.ok(range, `second request asks for a range: ${gets[1].headers.get("range")}`);
      const start = Number(range[1]);
      assert.ok(start > 0 && start <= 1.5 * MiB, `resumed at ${start}`);
      assert.equal(gets[1].status, 206);
    } finally {
      client.close();
    }
  });
});

Deno.test("client.fetch() gives up on a blob whose every transfer breaks", async () => {
  await withFaults(async ({ proxy, image }) => {
    const client = new RegistryClient({
      credentials: {},
      retry: { attempts: 3, baseDelayMs: 10 },
    });
    try {
      // the first transfer breaks after 1.5 MiB, every later one before its first byte
      proxy.addRule({ method: "GET", path: "/blobs/", cutAfter: 1.5 * MiB });
      proxy.addRule({ method: "GET", path: "/blobs/", cutAfter: 0, times: Infinity });
      const { stream } = await client.fetch(
        parseReference(`${proxy.host}/app:v1`),
        image.layers[0],
      );
      const error = await assertRejects(
        () => bytesOf(stream),
        RegistryError,
        "the transfer failed 3 times: at byte ",
      ) as RegistryError;
      // each failure names where it happened: past the first mebibyte, which did arrive
      const positions = [...error.message.matchAll(/at byte (\d+)/g)].map((m) => Number(m[1]));
      assert.equal(positions.length, 3);
      assert.ok(positions.every((p) => p >= MiB && p <= 1.5 * MiB), String(positions));
      assert.equal(proxy.requests.filter((r) => r.path.includes("/blobs/")).length, 3);
      assert.equal(error.retryable, true);
    } finally {
      client.close();
    }
  });
});

Deno.test("client honours Retry-After on 429, capped by maxDelayMs", async () => {
  await withFaults(async ({ proxy, layer, image }) => {
    const events: RetryEvent[] = [];
    const client = new RegistryClient({
      credentials: {},
      retry: { baseDelayMs: 10, maxDelayMs: 1500 },
      onRetry: (e) => events.push(e),
    });
    try {
      const ref = parseReference(`${proxy.host}/app:v1`);
      proxy.addRule({
        method: "GET",
        path: "/blobs/",
        status: 429,
        headers: { "retry-after": "1" },
      });
      const started = Date.now();
      const { stream } = await client.fetch(ref, image.layers[0]);
      assert.deepEqual(await bytesOf(stream), layer);
      assert.ok(Date.now() - started >= 950, "waited for Retry-After");
      assert.equal(events.length, 1);
      assert.equal(events[0].delayMs, 1000);
      assert.match(events[0].reason, /^429 Too Many Requests/);

      // an hour-long Retry-After is capped at maxDelayMs (1.5 s here)
      proxy.addRule({ method: "HEAD", status: 429, headers: { "retry-after": "3600" } });
      await client.resolve(ref);
      assert.equal(events[1].delayMs, 1500);
    } finally {
      client.close();
    }
  });
});

Deno.test("client retries two 503s and then succeeds; the final error lists every try", async () => {
  await withFaults(async ({ proxy, image }) => {
    const events: RetryEvent[] = [];
    const client = new RegistryClient({
      credentials: {},
      retry: { attempts: 3, baseDelayMs: 10 },
      onRetry: (e) => events.push(e),
    });
    try {
      const ref = parseReference(`${proxy.host}/app:v1`);
      proxy.addRule({ method: "HEAD", path: "/manifests/v1", status: 503, times: 2 });
      assert.deepEqual(await client.resolve(ref), image.manifest);
      assert.deepEqual(proxy.requests.map((r) => r.status), [503, 503, 200]);
      assert.deepEqual(events.map((e) => e.attempt), [1, 2]);

      proxy.addRule({
        method: "HEAD",
        status: 503,
        times: 2,
      });
      proxy.addRule({
        method: "HEAD",
        status: 502,
        headers: { "content-type": "application/json" },
      });
      const error = await assertRejects(
        () => client.resolve(ref),
        RegistryError,
        `cannot resolve ${proxy.host}/app:v1: gave up after 3 tries: ` +
          "tries 1-2: 503 Service Unavailable; try 3: 502 Bad Gateway",
      ) as RegistryError;
      assert.equal(error.status, 502);
      assert.equal(error.retryable, true);
    } finally {
      client.close();
    }
  });
});

Deno.test("client retries network errors and says what happened on each try", async () => {
  const client = new RegistryClient({ credentials: {}, retry: { attempts: 2, baseDelayMs: 10 } });
  try {
    // nothing listens on this port
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const error = await assertRejects(
      () => client.resolve(parseReference(`127.0.0.1:${port}/app:v1`)),
      RegistryError,
      `cannot resolve 127.0.0.1:${port}/app:v1: gave up after 2 tries: tries 1-2: `,
    ) as RegistryError;
    assert.match(error.message, /tries 1-2: error sending request: .*connection refused/i);
    assert.ok(!error.message.includes("http://"), "no URL in the message");
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
  } finally {
    client.close();
  }
});

Deno.test("one flipped byte fails verification of the fetched blob", async () => {
  await withFaults(async ({ proxy, image }) => {
    const client = new RegistryClient({ credentials: {} });
    try {
      proxy.addRule({ method: "GET", path: "/blobs/", flipByteAt: 2 * MiB + 7 });
      const { stream } = await client.fetch(
        parseReference(`${proxy.host}/app:v1`),
        image.layers[0],
      );
      await assertRejects(
        () => bytesOf(stream.pipeThrough(new VerifyStream(image.layers[0]))),
        DigestMismatchError,
        `expected digest ${image.layers[0].digest}`,
      );
    } finally {
      client.close();
    }
  });
});

Deno.test("redirects are followed without sending Authorization to the other host", async () => {
  const user = "alice";
  const password = "s3cret-redirect";
  const registry = await startRegistry({ kind: "htpasswd", user, password });
  const basic = `Basic ${btoa(`${user}:${password}`)}`;
  // the "storage" host: serves blobs to whoever is sent there (as a signed URL would)
  const storage = await startFaultProxy(registry.url, {
    upstreamHeaders: { authorization: basic },
  });
  const front = await startFaultProxy(registry.url);
  const client = new RegistryClient({ credentials: { username: user, password } });
  try {
    const layer = randomBytes(MiB + 5);
    const image = await pushSimpleImage(registry.url, "app", "v1", [layer], {
      headers: { authorization: basic },
    });
    front.addRule({ method: "GET", path: "/blobs/", redirectTo: storage.url, times: Infinity });
    const ref = parseReference(`${front.host}/app:v1`);
    await client.resolve(ref); // the registry challenges; the client learns to send Basic auth
    const { stream } = await client.fetch(ref, image.layers[0]);
    assert.deepEqual(await bytesOf(stream), layer);
    const toFront = front.requests.filter((r) => r.path.includes("/blobs/"));
    assert.deepEqual(toFront.map((r) => r.status), [307]);
    assert.equal(toFront[0].headers.get("authorization"), basic);
    assert.equal(storage.requests.length, 1);
    assert.equal(storage.requests[0].headers.get("authorization"), null);
    assert.equal(storage.requests[0].status, 200);
  } finally {
    client.close();
    await front.stop();
    await storage.stop();
    await registry.stop();
  }
});

Deno.test("client.fetchManifest() refuses a manifest over 4 MiB", async () => {
  await withFaults(async ({ proxy, image }) => {
    const client = new RegistryClient({ credentials: {} });
    try {
      const ref = parseReference(`${proxy.host}/app:v1`);
      const huge = new Uint8Array(4 * MiB + 1).fill(32);
      const hugeDesc = {
        mediaType: MediaType.ociManifest,
        digest: digestOf(huge),
        size: huge.length,
      };
      // refused from the descriptor alone, before any request
      await assertRejects(
        () => client.fetchManifest(ref, hugeDesc),
        RegistryError,
        "over the 4194304-byte limit",
      );
      assert.equal(proxy.requests.length, 0);
      // a registry that sends more than the descriptor said: by Content-Length, and chunked
      const path = `/manifests/${image.manifest.digest}`;
      proxy.addRule({ method: "GET", path, status: 200, body: huge });
      await assertRejects(
        () => client.fetchManifest(ref, image.manifest),
        RegistryError,
        "over the 4194304-byte limit",
      );
      proxy.addRule({ method: "GET", path, status: 200, body: huge, chunked: true });
      await assertRejects(
        () => client.fetchManifest(ref, image.manifest),
        RegistryError,
        "over the 4194304-byte limit",
      );
    } finally {
      client.close();
    }
  });
});

Deno.test("client.fetchManifest() tries again when the connection breaks mid-manifest", async () => {
  await withFaults(async ({ proxy, image }) => {
    const client = new RegistryClient({ credentials: {}, retry: { baseDelayMs: 10 } });
    try {
      proxy.addRule({ method: "GET", path: "/manifests/", cutAfter: 100 });
      const ref = parseReference(`${proxy.host}/app:v1`);
      const bytes = await client.fetchManifest(ref, image.manifest);
      assert.equal(digestOf(bytes), image.manifest.digest);
      assert.equal(proxy.requests.filter((r) => r.path.includes("/manifests/")).length, 2);
    } finally {
      client.close();
    }
  });
});
