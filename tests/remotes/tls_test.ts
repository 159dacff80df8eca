/** HTTPS to a registry: the system CA bundle, an extra CA file, and --insecure. */
import assert from "node:assert/strict";
import { RegistryClient } from "../../remotes/client.ts";
import { RegistryError } from "../../remotes/errors.ts";
import { parseReference } from "../../content/reference.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { pushSimpleImage } from "../_helpers/push.ts";
import { startRegistry } from "../_helpers/registry.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { makeCertificates } from "../_helpers/tls.ts";

Deno.test("client talks HTTPS: untrusted CA refused, --ca-file, SSL_CERT_FILE, insecure", async () => {
  await withTempDir(async (dir) => {
    const certs = await makeCertificates(dir);
    const registry = await startRegistry();
    // TLS in front of the plain registry
    const front = await startFaultProxy(registry.url, {
      tls: { cert: certs.cert, key: certs.key },
    });
    try {
      const image = await pushSimpleImage(registry.url, "app", "v1", [new Uint8Array([1, 2, 3])]);
      const ref = parseReference(`${front.host}/app:v1`);
      const resolveWith = async (options: ConstructorParameters<typeof RegistryClient>[0]) => {
        const client = new RegistryClient({ credentials: {}, plainHttp: false, ...options });
        try {
          return await client.resolve(ref);
        } finally {
          client.close();
        }
      };

      const refused = await assertRejects(
        () => resolveWith({}),
        RegistryError,
        `cannot resolve ${front.host}/app:v1: `,
      );
      assert.match(refused.message, /invalid peer certificate: UnknownIssuer$/);
      assert.equal(front.requests.length, 0, "no request got through the handshake");

      assert.deepEqual(await resolveWith({ caFile: certs.caPath }), image.manifest);
      assert.deepEqual(await resolveWith({ insecure: true }), image.manifest);

      // the "system" bundle: $SSL_CERT_FILE stands in for /etc/ssl/certs/ca-certificates.crt
      Deno.env.set("SSL_CERT_FILE", certs.caPath);
      try {
        assert.deepEqual(await resolveWith({}), image.manifest);
      } finally {
        Deno.env.delete("SSL_CERT_FILE");
      }
      assert.equal(front.requests.length, 3);
      assert.ok(front.requests.every((r) => r.method === "HEAD"));
    } finally {
      await front.stop();
      await registry.stop();
    }
  });
});
