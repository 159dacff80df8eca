/** Credential lookup from docker's config.json and the containers auth.json files. */
import assert from "node:assert/strict";
import { CorruptContentError } from "../../content/errors.ts";
import { lookupCredentials } from "../../remotes/credentials.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { withTempDir } from "../_helpers/temp.ts";

const b64 = (text: string) => btoa(text);

/** An environment reader over a fixed map: the test process's own environment stays out. */
function envOf(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(value));
}

Deno.test("lookupCredentials() reads docker config.json auths, base64 or split", async () => {
  await withTempDir(async (dir) => {
    await writeJson(`${dir}/docker/config.json`, {
      auths: {
        "https://index.docker.io/v1/": { auth: b64("hubuser:hub:pass") },
        "registry.example.com": { username: "u2", password: "p2" },
        "https://other.example.com/v2/": { auth: b64("u3:p3") },
        "tokens.example.com": { identitytoken: "refresh-me" },
      },
    });
    const env = envOf({ DOCKER_CONFIG: `${dir}/docker`, HOME: `${dir}/home` });
    assert.deepEqual(await lookupCredentials("docker.io", { env }), {
      username: "hubuser",
      password: "hub:pass",
    });
    assert.deepEqual(await lookupCredentials("registry.example.com", { env }), {
      username: "u2",
      password: "p2",
    });
    assert.deepEqual(await lookupCredentials("other.example.com", { env }), {
      username: "u3",
      password: "p3",
    });
    assert.deepEqual(await lookupCredentials("tokens.example.com", { env }), {
      identityToken: "refresh-me",
    });
    assert.equal(await lookupCredentials("unknown.example.com", { env }), undefined);
  });
});

Deno.test("lookupCredentials() uses ~/.docker/config.json without DOCKER_CONFIG", async () => {
  await withTempDir(async (dir) => {
    await writeJson(`${dir}/.docker/config.json`, {
      auths: { "127.0.0.1:5000": { auth: b64("local:pw") } },
    });
    const env = envOf({ HOME: dir });
    assert.deepEqual(await lookupCredentials("127.0.0.1:5000", { env }), {
      username: "local",
      password: "pw",
    });
  });
});

Deno.test("lookupCredentials() falls back to the containers auth.json files in order", async () => {
  await withTempDir(async (dir) => {
    await writeJson(`${dir}/home/.docker/config.json`, { auths: {} });
    await writeJson(`${dir}/run/containers/auth.json`, {
      auths: { "quay.example.com": { auth: b64("runtime:r") } },
    });
    await writeJson(`${dir}/home/.config/containers/auth.json`, {
      auths: {
        "quay.example.com": { auth: b64("config:c") },
        "ghcr.example.com": { auth: b64("config:g") },
        "ghcr.example.com/team": { auth: b64("team:t") },
      },
    });
    const env = envOf({ HOME: `${dir}/home`, XDG_RUNTIME_DIR: `${dir}/run` });
    assert.deepEqual(await lookupCredentials("quay.example.com", { env }), {
      username: "runtime",
      password: "r",
    });
    assert.deepEqual(await lookupCredentials("ghcr.example.com", { env, repository: "x/y" }), {
      username: "config",
      password: "g",
    });
    // the most specific key wins
    assert.deepEqual(
      await lookupCredentials("ghcr.example.com", { env, repository: "team/app" }),
      { username: "team", password: "t" },
    );

    await writeJson(`${dir}/explicit.json`, {
      auths: { "quay.example.com": { auth: b64("explicit:e") } },
    });
    const explicit = envOf({
      HOME: `${dir}/home`,
      XDG_RUNTIME_DIR: `${dir}/run`,
      REGISTRY_AUTH_FILE: `${dir}/explicit.json`,
    });
    assert.deepEqual(await lookupCredentials("quay.example.com", { env: explicit }), {
      username: "explicit",
      password: "e",
    });
  });
});

Deno.test("lookupCredentials() keeps secrets out of errors about broken files", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/docker`);
    await Deno.writeTextFile(`${dir}/docker/config.json`, '{"auths": {"x": {"auth": "c2VjcmV0"} ');
    const env = envOf({ DOCKER_CONFIG: `${dir}/docker` });
    const error = await assertRejects(
      () => lookupCredentials("x", { env }),
      CorruptContentError,
      `cannot parse credentials file ${dir}/docker/config.json: not valid JSON`,
    );
    assert.ok(!error.message.includes("c2VjcmV0"));

    await writeJson(`${dir}/docker/config.json`, {
      auths: { x: { auth: b64("no-colon-secret") } },
    });
    const bad = await assertRejects(
      () => lookupCredentials("x", { env }),
      CorruptContentError,
      'the "auth" field of credentials for x has no ":"',
    );
    assert.ok(!bad.message.includes("no-colon-secret"));
  });
});
