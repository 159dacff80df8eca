/**
 * A hostile front in front of the real registry: redirects and realms to any URL, plain-HTTP
 * realms behind HTTPS, endless bodies, silence. Each case is refused or survived, never obeyed.
 */
import assert from "node:assert/strict";
import { fetchImage } from "../../remotes/copy.ts";
import { RegistryClient } from "../../remotes/client.ts";
import { Store } from "../../content/store/store.ts";
import { buildLayer, compressLayer, pushImage } from "../_helpers/images.ts";
import { randomBytes } from "../_helpers/bytes.ts";
import { withRegistry } from "../_helpers/registry.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { makeCertificates } from "../_helpers/tls.ts";
import { assertRejects } from "../_helpers/rejects.ts";

/** A loopback server that answers with `handler`, or forwards to `upstream` when it returns undefined. */
function startFront(
  upstream: string,
  handler: (req: Request, path: string) => Response | undefined | Promise<Response | undefined>,
): Promise<{ host: string; url: string; requests: string[]; stop(): Promise<void> }> {
  const requests: string[] = [];
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen({ port }) {
        resolve({
          host: `127.0.0.1:${port}`,
          url: `http://127.0.0.1:${port}`,
          requests,
          stop: () => server.shutdown(),
        });
      },
      onError: () => new Response(null, { status: 500 }),
    }, async (req) => {
      const url = new URL(req.url);
      const path = url.pathname + url.search;
      requests.push(`${req.method} ${path} ${req.headers.get("range") ?? ""}`.trim());
      const answer = await handler(req, path);
      if (answer) return answer;
      const headers = new Headers(req.headers);
      headers.delete("host");
      return await fetch(`${upstream}${path}`, { method: req.method, headers, redirect: "manual" });
    });
  });
}

const quick = { retry: { attempts: 2, baseDelayMs: 10 } };

Deno.test("a redirect or a token realm to file:, data: or ftp: is refused, naming the URL", async () => {
  await withRegistry(async (registry, dir) => {
    const image = await pushImage(registry.url, "hostile/app", {
      layers: [await buildLayer({ "etc/x": "x\n" }, "gzip")],
      tag: "v1",
    });
    const secret = `${dir}/config.json`;
    await Deno.writeTextFile(secret, '{"auths":{"x":{"auth":"c2VjcmV0"}}}');
    for (const target of [`file://${secret}`, "data:text/plain,hello", "ftp://127.0.0.1/x"]) {
      const front = await startFront(
        registry.url,
        (_req, path) =>
          path.includes(`/blobs/${image.layers[0].digest}`)
            ? new Response(null, { status: 307, headers: { location: target } })
            : undefined,
      );
      const client = new RegistryClient(quick);
      try {
        const store = await Store.open(`${dir}/store-${front.host.split(":")[1]}`);
        await assertRejects(
          () => fetchImage(client, store, `${front.host}/hostile/app:v1`),
          Error,
          `refusing a redirect of fetch ${front.host}/hostile/app@${
            image.layers[0].digest
          } to ${target}`,
        );
        assert.equal(await store.has(image.layers[0].digest), false);
      } finally {
        client.close();
        await front.stop();
      }
    }
    // a realm that names a file is refused before anything is read or sent
    const front = await startFront(registry.url, () =>
      new Response(null, {
        status: 401,
        headers: { "www-authenticate": `Bearer realm="file://${secret}",service="x"` },
      }));
    const client = new RegistryClient({ ...quick, credentials: { username: "u", password: "p" } });
    try {
      await assertRejects(
        () => client.resolve({ registry: front.host, repository: "hostile/app", tag: "v1" }),
        Error,
        `refusing the token realm to file://${secret}`,
      );
    } finally {
      client.close();
      await front.stop();
    }
  });
});

Deno.test("an HTTPS registry's plain-HTTP realm gets no credentials, and https never drops to http", async () => {
  await withRegistry(async (registry, dir) => {
    const realmHits: string[] = [];
    const realm = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      realmHits.push(req.headers.get("authorization") ?? "none");
      return Response.json({ token: "t" });
    });
    const { cert, key, caPath: caFile } = await makeCertificates(dir);
    const proxy = await startFaultProxy(registry.url, { tls: { cert, key } });
    proxy.addRule({
      path: "/v2/",
      status: 401,
      times: Infinity,
      headers: {
        "www-authenticate": `Bearer realm="http://127.0.0.1:${realm.addr.port}/token",service="x"`,
      },
    });
    const client = new RegistryClient({
      ...quick,
      caFile,
      plainHttp: false,
      credentials: { username: "alice", password: "hunter2" },
    });
    try {
      const error = await assertRejects(
        () => client.resolve({ registry: proxy.host, repository: "hostile/app", tag: "v1" }),
        Error,
        "plain HTTP from the HTTPS registry",
      );
      assert.ok(!error.message.includes("hunter2"));
      assert.deepEqual(realmHits, []);
    } finally {
      client.close();
      await proxy.stop();
      await realm.shutdown();
    }
  });
});

Deno.test("a blob body longer than its descriptor stops at size + 1, and the store keeps nothing", async () => {
  await withRegistry(async (registry, dir) => {
    const layer = compressLayer(randomBytes(256 * 1024), "none");
    const image = await pushImage(registry.url, "hostile/app", { layers: [layer], tag: "v1" });
    const digest = image.layers[0].digest;
    // an endless body for the layer, with no Content-Length
    let sent = 0;
    const front = await startFront(registry.url, (req, path) => {
      if (req.method !== "GET" || !path.includes(`/blobs/${digest}`)) return undefined;
      const chunk = new Uint8Array(64 * 1024);
      return new Response(
        new ReadableStream({
          pull(controller) {
            sent += chunk.length;
            controller.enqueue(chunk);
          },
        }),
        { status: 200 },
      );
    });
    const client = new RegistryClient(quick);
    try {
      const store = await Store.open(dir);
      await assertRejects(
        () => fetchImage(client, store, `${front.host}/hostile/app:v1`),
        Error,
        "more than its 262144 bytes",
      );
      assert.ok(sent < 16 << 20, `the server got to send ${sent} bytes`);
      assert.equal(await store.has(digest), false);
      for (const status of await store.listStatuses()) assert.ok(status.offset <= 256 * 1024);
    } finally {
      client.close();
      await front.stop();
    }
  });
});

Deno.test("a silent registry fails with the first-byte timeout; a stalled blob resumes with Range", async () => {
  await withRegistry(async (registry, dir) => {
    const layer = compressLayer(randomBytes(512 * 1024), "none");
    const image = await pushImage(registry.url, "hostile/app", { layers: [layer], tag: "v1" });
    const digest = image.layers[0].digest;
    const hold: (() => void)[] = [];
    // silent: accepts, never answers
    const silent = await startFront(
      registry.url,
      () =>
        new Promise<Response>((resolve) =>
          hold.push(() => resolve(new Response(null, { status: 503 })))
        ),
    );
    const client = new RegistryClient({ ...quick, timeoutMs: 300 });
    try {
      await assertRejects(
        () => client.resolve({ registry: silent.host, repository: "hostile/app", tag: "v1" }),
        Error,
        `no response from ${silent.host} within 0.3s (first-byte timeout)`,
      );
    } finally {
      hold.forEach((release) => release());
      await silent.stop();
    }
    // the first blob GET sends half, then nothing: the download resumes where it stalled
    let stalled = false;
    const front = await startFront(registry.url, async (req, path) => {
      if (stalled || req.method !== "GET" || !path.includes(`/blobs/${digest}`)) return undefined;
      stalled = true;
      const whole = new Uint8Array(await (await fetch(`${registry.url}${path}`)).arrayBuffer());
      let step = 0;
      return new Response(
        new ReadableStream({
          async pull(controller) {
            if (step++ === 0) return controller.enqueue(whole.subarray(0, whole.length / 2));
            await new Promise((resolve) => setTimeout(resolve, 5000)); // silence
            controller.close();
          },
        }),
        { status: 200, headers: { "content-length": String(whole.length) } },
      );
    });
    try {
      const store = await Store.open(dir);
      await fetchImage(client, store, `${front.host}/hostile/app:v1`);
      assert.equal(await store.has(digest), true);
      assert.ok(
        front.requests.some((r) =>
          r.includes(`/blobs/${digest}`) && r.endsWith(`bytes=${256 * 1024}-`)
        ),
        front.requests.join("\n"),
      );
    } finally {
      client.close();
      await front.stop();
    }
  });
});
