/** Authentication against the real registry: htpasswd Basic auth and the bearer token flow. */
import assert from "node:assert/strict";
import { digestOf } from "../../content/digest.ts";
import { RegistryClient } from "../../remotes/client.ts";
import { UnauthorizedError } from "../../remotes/errors.ts";
import { parseReference } from "../../content/reference.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { pushSimpleImage } from "../_helpers/push.ts";
import { startRegistry } from "../_helpers/registry.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { startTokenIssuer, type TokenIssuerOptions } from "../_helpers/token_issuer.ts";

const LAYER = new TextEncoder().encode("layer bytes for the auth tests");

Deno.test("htpasswd registry: Basic auth with credentials, typed refusal without", async () => {
  const password = "hunter2-basic";
  const registry = await startRegistry({ kind: "htpasswd", user: "bob", password });
  const clients: RegistryClient[] = [];
  const client = (options: ConstructorParameters<typeof RegistryClient>[0]) => {
    const c = new RegistryClient(options);
    clients.push(c);
    return c;
  };
  try {
    const image = await pushSimpleImage(registry.url, "private/app", "v1", [LAYER], {
      headers: { authorization: `Basic ${btoa(`bob:${password}`)}` },
    });
    const ref = parseReference(`${registry.host}/private/app:v1`);

    const ok = client({ credentials: { username: "bob", password } });
    assert.deepEqual(await ok.resolve(ref), image.manifest);
    const { stream } = await ok.fetch(ref, image.layers[0]);
    assert.deepEqual(new Uint8Array(await new Response(stream).arrayBuffer()), LAYER);

    const none = client({ credentials: {} });
    const refused = await assertRejects(
      () => none.resolve(ref),
      UnauthorizedError,
      `cannot resolve ${registry.host}/private/app:v1: registry ${registry.host} refused access ` +
        `(401 Unauthorized); no credentials found for ${registry.host}`,
    ) as UnauthorizedError;
    assert.equal(refused.code, "unauthorized");
    assert.equal(refused.status, 401);

    const wrong = client({ credentials: { username: "bob", password: "not-the-password" } });
    const error = await assertRejects(() => wrong.resolve(ref), UnauthorizedError, "401");
    assert.ok(!error.message.includes("not-the-password"));
  } finally {
    clients.forEach((c) => c.close());
    await registry.stop();
  }
});

/** A token-auth registry and its issuer; `push` is a token for pushing test content. */
async function withTokenRegistry(
  options: TokenIssuerOptions,
  fn: (ctx: {
    host: string;
    issuer: Awaited<ReturnType<typeof startTokenIssuer>>;
    image: Awaited<ReturnType<typeof pushSimpleImage>>;
  }) => Promise<void>,
): Promise<void> {
  const issuer = await startTokenIssuer({
    ...options,
    users: { ...options.users, pusher: "push-pw" },
  });
  const registry = await startRegistry(issuer.auth);
  try {
    const tokenUrl =
      `${issuer.realm}?service=${issuer.service}&scope=repository:team/app:pull,push`;
    const reply = await fetch(tokenUrl, {
      headers: { authorization: `Basic ${btoa("pusher:push-pw")}` },
    });
    const { token } = await reply.json();
    const image = await pushSimpleImage(registry.url, "team/app", "v1", [LAYER], {
      headers: { authorization: `Bearer ${token}` },
    });
    issuer.requests.length = 0; // count only what the client asks for
    await fn({ host: registry.host, issuer, image });
  } finally {
    await registry.stop();
    await issuer.stop();
  }
}

Deno.test("token registry: anonymous pull gets a token without credentials", async () => {
  await withTokenRegistry({ anonymousPull: true }, async ({ host, issuer, image }) => {
    const client = new RegistryClient({ credentials: {} });
    try {
      const ref = parseReference(`${host}/team/app:v1`);
      const desc = await client.resolve(ref);
      assert.deepEqual(desc, image.manifest);
      assert.equal(digestOf(await client.fetchManifest(ref, desc)), desc.digest);
      assert.equal(issuer.requests.length, 1);
      assert.equal(issuer.requests[0].user, undefined);
      assert.equal(issuer.requests[0].service, issuer.service);
      assert.deepEqual(issuer.requests[0].scopes, ["repository:team/app:pull"]);
    } finally {
      client.close();
    }
    // parallel first requests of a fresh client share one token request
    const parallel = new RegistryClient({ credentials: {} });
    try {
      const ref = parseReference(`${host}/team/app:v1`);
      await Promise.all([image.config, ...image.layers, image.config].map(async (blob) => {
        const { stream } = await parallel.fetch(ref, blob);
        await stream.pipeTo(new WritableStream());
      }));
      assert.equal(issuer.requests.length, 2);
    } finally {
      parallel.close();
    }
  });
});

Deno.test("token registry: the bearer flow end to end, one token per scope", async () => {
  await withTokenRegistry(
    { anonymousPull: false, users: { carol: "tok-pw" } },
    async ({ host, issuer, image }) => {
      const client = new RegistryClient({ credentials: { username: "carol", password: "tok-pw" } });
      try {
        const ref = parseReference(`${host}/team/app:v1`);
        const desc = await client.resolve(ref);
        await client.fetchManifest(ref, desc);
        for (const blob of [image.config, ...image.layers]) {
          const { stream } = await client.fetch(ref, blob);
          await stream.pipeTo(new WritableStream());
        }
        // four requests to the registry, one token: cached per registry and scope
        assert.deepEqual(issuer.requests.map((r) => [r.user, r.status]), [["carol", 200]]);

        const anonymous = new RegistryClient({ credentials: {} });
        try {
          await assertRejects(
            () => anonymous.resolve(ref),
            UnauthorizedError,
            `token server ${issuer.realm} refused anonymous access for repository:team/app:pull`,
          );
        } finally {
          anonymous.close();
        }
        const wrong = new RegistryClient({
          credentials: { username: "carol", password: "wrong-pw" },
        });
        try {
          const error = await assertRejects(
            () => wrong.resolve(ref),
            UnauthorizedError,
            `refused user "carol"`,
          );
          assert.ok(!error.message.includes("wrong-pw"));
        } finally {
          wrong.close();
        }
      } finally {
        client.close();
      }
    },
  );
});

Deno.test("token registry: a rejected cached token is refreshed once", async () => {
  // the first token expires (with the registry's 60 s leeway) two seconds after it is issued
  await withTokenRegistry(
    { anonymousPull: true, lifetime: (_user, n) => (n === 0 ? -58 : 300) },
    async ({ host, issuer }) => {
      const client = new RegistryClient({ credentials: {} });
      try {
        const ref = parseReference(`${host}/team/app:v1`);
        await client.resolve(ref);
        assert.equal(issuer.requests.length, 1);
        await new Promise((r) => setTimeout(r, 2600));
        await client.resolve(ref); // the registry refuses token 0; the client gets token 1
        assert.equal(issuer.requests.length, 2);
      } finally {
        client.close();
      }
    },
  );
});

Deno.test("token registry: a token the registry keeps refusing ends in one refusal", async () => {
  await withTokenRegistry(
    { anonymousPull: true, lifetime: (user) => (user === undefined ? -600 : 300) },
    async ({ host, issuer }) => {
      const client = new RegistryClient({ credentials: {} });
      try {
        const error = await assertRejects(
          () => client.resolve(parseReference(`${host}/team/app:v1`)),
          UnauthorizedError,
          "refused access (401 Unauthorized",
        );
        assert.ok(!/Bearer|eyJ/.test(error.message), "no token in the message");
        assert.equal(issuer.requests.length, 1);
      } finally {
        client.close();
      }
    },
  );
});

Deno.test("token registry: Authorization carries the token only to the registry", async () => {
  await withTokenRegistry({ anonymousPull: true }, async ({ host, issuer, image }) => {
    const proxy = await startFaultProxy(`http://${host}`);
    const client = new RegistryClient({ credentials: {} });
    try {
      const ref = parseReference(`${proxy.host}/team/app:v1`);
      await client.resolve(ref);
      const { stream } = await client.fetch(ref, image.layers[0]);
      await stream.pipeTo(new WritableStream());
      const statuses = proxy.requests.map((r) => [r.status, r.headers.has("authorization")]);
      assert.deepEqual(statuses, [[401, false], [200, true], [200, true]]);
      assert.match(proxy.requests[1].headers.get("authorization")!, /^Bearer ey/);
      assert.equal(issuer.requests.length, 1);
    } finally {
      client.close();
      await proxy.stop();
    }
  });
});

Deno.test("token registry: identity tokens are exchanged by POST, registry tokens sent as is", async () => {
  await withTokenRegistry(
    { anonymousPull: false, refreshTokens: { "refresh-abc": "frank" } },
    async ({ host, issuer, image }) => {
      const ref = parseReference(`${host}/team/app:v1`);
      const identity = new RegistryClient({ credentials: { identityToken: "refresh-abc" } });
      try {
        assert.deepEqual(await identity.resolve(ref), image.manifest);
        assert.deepEqual(issuer.requests.map((r) => [r.method, r.user, r.status]), [
          ["POST", "frank", 200],
        ]);
        assert.deepEqual(issuer.requests[0].scopes, ["repository:team/app:pull"]);
      } finally {
        identity.close();
      }

      const reply = await fetch(
        `${issuer.realm}?service=${issuer.service}&scope=repository:team/app:pull`,
        { headers: { authorization: `Basic ${btoa("pusher:push-pw")}` } },
      );
      const { token } = await reply.json();
      issuer.requests.length = 0;
      const direct = new RegistryClient({ credentials: { registryToken: token } });
      try {
        assert.deepEqual(await direct.resolve(ref), image.manifest);
        assert.equal(issuer.requests.length, 0, "a registry token needs no token server");
      } finally {
        direct.close();
      }
    },
  );
});
