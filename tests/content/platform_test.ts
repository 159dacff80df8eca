import assert from "node:assert/strict";
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  platformMatches,
  platformRank,
} from "../../content/platform.ts";
import { InvalidArgumentError } from "../../content/errors.ts";

Deno.test("hostPlatform() maps Deno.build names to OCI names", () => {
  const host = hostPlatform();
  assert.deepEqual(host.os, Deno.build.os);
  const expected = { x86_64: "amd64", aarch64: "arm64" }[Deno.build.arch as string];
  assert.deepEqual(host.architecture, expected ?? Deno.build.arch);
});

Deno.test("parsePlatform() reads os/arch[/variant] and normalizes it", () => {
  assert.deepEqual(parsePlatform("linux/amd64"), { os: "linux", architecture: "amd64" });
  assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64" });
  assert.deepEqual(parsePlatform("Linux/AArch64"), { os: "linux", architecture: "arm64" });
  assert.deepEqual(parsePlatform("linux/arm"), { os: "linux", architecture: "arm", variant: "v7" });
  assert.deepEqual(parsePlatform("linux/arm/6"), {
    os: "linux",
    architecture: "arm",
    variant: "v6",
  });
  assert.deepEqual(parsePlatform("linux/x86_64"), { os: "linux", architecture: "amd64" });
  assert.deepEqual(parsePlatform("linux/i386"), { os: "linux", architecture: "386" });
  assert.deepEqual(parsePlatform("arm64"), { os: hostPlatform().os, architecture: "arm64" });
  assert.deepEqual(parsePlatform("windows"), {
    os: "windows",
    architecture: hostPlatform().architecture,
  });
});

Deno.test("parsePlatform() rejects malformed specifiers naming them", () => {
  for (const bad of ["", "linux/", "linux/amd64/v1/x", "linux amd64", "../x"]) {
    assert.throws(
      () => parsePlatform(bad),
      (e) => e instanceof InvalidArgumentError && e.message.includes(JSON.stringify(bad)),
    );
  }
});

Deno.test("normalizePlatform() treats armhf, armel and arm64/v8 as containerd does", () => {
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "armhf" }), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "armel" }).variant, "v6");
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "arm64", variant: "v8" }), {
    os: "linux",
    architecture: "arm64",
  });
  assert.deepEqual(
    formatPlatform({ os: "linux", architecture: "arm", variant: "v7" }),
    "linux/arm/v7",
  );
  assert.deepEqual(
    formatPlatform({ os: "linux", architecture: "aarch64", variant: "8" }),
    "linux/arm64",
  );
});

Deno.test("platformRank() prefers the exact platform, then compatible older ones", () => {
  const arm64 = parsePlatform("linux/arm64");
  assert.deepEqual(platformRank(arm64, { os: "linux", architecture: "arm64", variant: "v8" }), 0);
  assert.deepEqual(platformRank(arm64, { os: "linux", architecture: "arm64" }), 0);
  const armv7Rank = platformRank(arm64, { os: "linux", architecture: "arm", variant: "v7" });
  assert.deepEqual(armv7Rank > 0, true);
  assert.deepEqual(platformRank(arm64, { os: "linux", architecture: "amd64" }), -1);

  const armv7 = parsePlatform("linux/arm/v7");
  assert.deepEqual(platformRank(armv7, { os: "linux", architecture: "arm" }), 0);
  assert.deepEqual(
    platformMatches(armv7, { os: "linux", architecture: "arm", variant: "v6" }),
    true,
  );
  assert.deepEqual(
    platformMatches(armv7, { os: "linux", architecture: "arm", variant: "v8" }),
    false,
  );
  assert.deepEqual(platformMatches(armv7, { os: "linux", architecture: "arm64" }), false);

  const amd64 = parsePlatform("linux/amd64");
  assert.deepEqual(platformRank(amd64, { os: "linux", architecture: "amd64" }), 0);
  assert.deepEqual(platformRank(amd64, { os: "linux", architecture: "386" }) > 0, true);
  assert.deepEqual(platformMatches(amd64, { os: "windows", architecture: "amd64" }), false);
  assert.deepEqual(platformMatches(amd64, { os: "unknown", architecture: "unknown" }), false);
});
