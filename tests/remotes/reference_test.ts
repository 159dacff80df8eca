import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../content/errors.ts";
import {
  formatReference,
  isLoopbackHost,
  parseObjectReference,
  parseReference,
  registryHost,
} from "../../content/reference.ts";

const DIGEST = "sha256:" + "ab".repeat(32);

Deno.test("parseReference() normalizes references like docker and containerd", () => {
  const table: [string, string, string, string | undefined, string | undefined][] = [
    // input, registry, repository, tag, digest
    ["redis", "docker.io", "library/redis", "latest", undefined],
    ["redis:7", "docker.io", "library/redis", "7", undefined],
    ["library/redis", "docker.io", "library/redis", "latest", undefined],
    ["docker.io/redis", "docker.io", "library/redis", "latest", undefined],
    ["index.docker.io/library/redis:6", "docker.io", "library/redis", "6", undefined],
    ["bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", undefined],
    ["ghcr.io/org/team/app:v1.0-rc_1", "ghcr.io", "org/team/app", "v1.0-rc_1", undefined],
    ["localhost/app", "localhost", "app", "latest", undefined],
    ["localhost:5000/app:v1", "localhost:5000", "app", "v1", undefined],
    ["127.0.0.1:5000/ns/app", "127.0.0.1:5000", "ns/app", "latest", undefined],
    ["[::1]:5000/app:v2", "[::1]:5000", "app", "v2", undefined],
    ["Registry/app", "Registry", "app", "latest", undefined], // upper case: a host
    ["localhost:5000", "docker.io", "library/localhost", "5000", undefined], // no slash: a tag
    [`redis@${DIGEST}`, "docker.io", "library/redis", undefined, DIGEST],
    [`host:5000/app:v1@${DIGEST}`, "host:5000", "app", "v1", DIGEST],
    ["a/b__c/d-e.f--g:x", "docker.io", "a/b__c/d-e.f--g", "x", undefined],
  ];
  for (const [input, registry, repository, tag, digest] of table) {
    const ref = parseReference(input);
    assert.deepEqual(
      ref,
      {
        registry,
        repository,
        ...(tag !== undefined ? { tag } : {}),
        ...(digest !== undefined ? { digest } : {}),
      },
      input,
    );
  }
});

Deno.test("parseReference() names the bad part of an invalid reference", () => {
  const table: [string, string][] = [
    ["", "empty"],
    ["Redis", 'repository name "library/Redis" must be lowercase'],
    ["ghcr.io/Org/app", 'repository name "Org/app" must be lowercase'],
    ["app:", 'invalid tag ""'],
    ["app:-x", 'invalid tag "-x"'],
    [`app:${"t".repeat(129)}`, "invalid tag"],
    ["app@sha256:1234", 'invalid digest "sha256:1234"'],
    ["app@md5:" + "a".repeat(32), "invalid digest"],
    ["a//b", 'invalid path component "" in "a//b"'],
    ["ns/-app", 'invalid path component "-app"'],
    ["ns/app_", 'invalid path component "app_"'],
    ["exa mple.com/app", 'invalid registry host "exa mple.com"'],
    ["-bad.com/app", 'invalid registry host "-bad.com"'],
    [":tag", "missing repository name"],
    [`x/${"a".repeat(260)}`, "longer than 255"],
  ];
  for (const [input, part] of table) {
    assert.throws(
      () => parseReference(input),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError, `${input}: ${error}`);
        assert.ok(error.message.includes(part), `${input}: ${error.message}`);
        assert.ok(error.message.startsWith(`invalid reference ${JSON.stringify(input)}`));
        return true;
      },
    );
  }
});

Deno.test("formatReference() writes the full name, tag and digest", () => {
  assert.equal(formatReference(parseReference("redis")), "docker.io/library/redis:latest");
  assert.equal(
    formatReference(parseReference(`localhost:5000/app@${DIGEST}`)),
    `localhost:5000/app@${DIGEST}`,
  );
  assert.equal(
    formatReference(parseReference(`app:v1@${DIGEST}`)),
    `docker.io/library/app:v1@${DIGEST}`,
  );
  for (const input of ["ghcr.io/o/a:1", "[::1]:5000/x/y:z", `q.io/r@${DIGEST}`]) {
    assert.equal(formatReference(parseReference(input)), input);
  }
});

Deno.test("parseObjectReference() joins the seed's locator and object", () => {
  assert.deepEqual(parseObjectReference("docker.io/library/redis", "latest"), {
    registry: "docker.io",
    repository: "library/redis",
    tag: "latest",
  });
  assert.deepEqual(parseObjectReference("localhost:5000/app", DIGEST), {
    registry: "localhost:5000",
    repository: "app",
    digest: DIGEST,
  });
  assert.throws(() => parseObjectReference("localhost:5000/app:v1", "v2"), InvalidArgumentError);
  // an object with ":" can only be a digest: a broken one is reported as a digest
  assert.throws(
    () => parseObjectReference("localhost:5000/app", "sha256:zz"),
    (e) => e instanceof InvalidArgumentError && e.message.endsWith('invalid digest "sha256:zz"'),
  );
});

Deno.test("registryHost() and isLoopbackHost() pick the endpoint and plain HTTP", () => {
  assert.equal(registryHost("docker.io"), "registry-1.docker.io");
  assert.equal(registryHost("ghcr.io"), "ghcr.io");
  for (const host of ["localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000"]) {
    assert.ok(isLoopbackHost(host), host);
  }
  for (const host of ["docker.io", "10.0.0.1:5000", "localhost.example.com", "[::2]:5000"]) {
    assert.ok(!isLoopbackHost(host), host);
  }
});
