/** `dist push` and `dist copy` against real registries, checked with skopeo. */
import assert from "node:assert/strict";
import { run, skopeoDigest } from "../_helpers/programs.ts";
import { runDist } from "../_helpers/cli.ts";
import { buildLayer, pushMultiPlatform } from "../_helpers/images.ts";
import { pushImage as putImage } from "../_helpers/images.ts";
import { startRegistry, withRegistry } from "../_helpers/registry.ts";
import { requireTool } from "../_helpers/temp.ts";
import { startTokenIssuer } from "../_helpers/token_issuer.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { pushBlob, pushManifest } from "../_helpers/push.ts";
import { digestOf } from "../../content/digest.ts";

async function dist(args: string[]): Promise<string> {
  const result = await runDist(args);
  assert.equal(result.code, 0, `dist ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

Deno.test("dist push sends a fetched image to another repository; skopeo copies it back unchanged", async () => {
  await requireTool("skopeo");
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const root = `${dir}/root`;
    const src = `${registry.host}/src/app:v1`;
    const fetched = JSON.parse(await dist(["fetch", "--root", root, "--all-platforms", "-q", src]));
    const pushed = await dist(["push", "--root", root, src, `${registry.host}/dst/app:v2`]);
    assert.match(pushed, new RegExp(`^pushed ${registry.host}/dst/app:v2 ${fetched.digest} `));
    assert.equal(await skopeoDigest(`${registry.host}/dst/app:v2`), fetched.digest);
    await run("skopeo", [
      "copy",
      "--all",
      "--src-tls-verify=false",
      "--dest-tls-verify=false",
      `docker://${registry.host}/dst/app:v2`,
      `docker://${registry.host}/back/app:v3`,
    ]);
    assert.equal(await skopeoDigest(`${registry.host}/back/app:v3`), fetched.digest);
    // a second push moves no blob: only the index goes again, under its tag
    const again = await runDist([
      "push",
      "--root",
      root,
      "--json",
      src,
      `${registry.host}/dst/app:v2`,
    ]);
    assert.equal(again.code, 0, again.stderr);
    const events = again.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(events.every((e) => e.kind === "index" || e.status === "exists"), again.stdout);
    const missing = await runDist(["push", "--root", root, "nothing/here:v1"]);
    assert.equal(missing.code, 3, missing.stderr);
  });
});

Deno.test("dist import then push then fetch elsewhere unpacks the same files", async () => {
  await withRegistry(async (registry, dir) => {
    await putImage(registry.url, "src/tool", {
      layers: [await buildLayer({ "etc/hello": "hello from the archive\n" }, "gzip")],
      tag: "v1",
    });
    const src = `${registry.host}/src/tool:v1`;
    await dist(["copy", src, `docker-archive:${dir}/tool.tar:${src}`]);
    await dist(["import", "--root", `${dir}/a`, `${dir}/tool.tar`]);
    await dist(["push", "--root", `${dir}/a`, src, `${registry.host}/pushed/tool:v1`]);
    await dist(["pull", "--root", `${dir}/b`, `${registry.host}/pushed/tool:v1`, `${dir}/bundle`]);
    assert.equal(
      await Deno.readTextFile(`${dir}/bundle/rootfs/etc/hello`),
      "hello from the archive\n",
    );
  });
});

Deno.test("dist copy between two registries, token auth on the destination, digests kept", async () => {
  await requireTool("skopeo");
  const issuer = await startTokenIssuer({ users: { pusher: "push-pw" } });
  const destination = await startRegistry(issuer.auth);
  try {
    await withRegistry(async (registry) => {
      await pushMultiPlatform(registry.url, "src/app");
      const src = `${registry.host}/src/app:v1`;
      const whole = JSON.parse(
        await dist([
          "copy",
          "--all-platforms",
          "-q",
          "-u",
          "pusher:push-pw",
          src,
          `${destination.host}/team/app:v1`,
        ]),
      );
      assert.equal(await skopeoDigest(src), whole.digest);
      // skopeo reads it with the same credentials
      const raw = await run("skopeo", [
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "pusher:push-pw",
        `docker://${destination.host}/team/app:v1`,
      ]);
      assert.equal(JSON.parse(raw).manifests.length, 3);
      assert.ok(issuer.requests.some((r) => r.scopes.includes("repository:team/app:pull,push")));
      // one platform: its manifest alone
      const arm = JSON.parse(
        await dist(["copy", "--platform", "linux/arm64", "-q", src, `${registry.host}/arm/app:v1`]),
      );
      assert.equal(arm.mediaType, "application/vnd.oci.image.manifest.v1+json");
      assert.equal(await skopeoDigest(`${registry.host}/arm/app:v1`), arm.digest);
    });
  } finally {
    await destination.stop();
    await issuer.stop();
  }
});

Deno.test("dist copy mounts blobs between repositories of one registry", async () => {
  await withRegistry(async (registry) => {
    await pushMultiPlatform(registry.url, "src/app");
    const proxy = await startFaultProxy(registry.url);
    try {
      await dist([
        "copy",
        "--all-platforms",
        `${proxy.host}/src/app:v1`,
        `${proxy.host}/other/app:v1`,
      ]);
      const posts = proxy.requests.filter((r) => r.method === "POST");
      assert.ok(
        posts.length > 0 && posts.every((r) => r.path.includes("mount=")),
        posts.map((r) => r.path).join("\n"),
      );
      assert.ok(
        !proxy.requests.some((r) =>
          r.method === "PATCH" || r.method === "PUT" && r.path.includes("/blobs/")
        ),
      );
    } finally {
      await proxy.stop();
    }
  });
});

Deno.test("dist copy writes and reads OCI layouts and archives that skopeo reads", async () => {
  await requireTool("skopeo");
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const src = `${registry.host}/src/app:v1`;
    const digest = await skopeoDigest(src);
    await dist(["copy", "--all-platforms", src, `oci:${dir}/layout:v1`]);
    await run("skopeo", ["inspect", "--raw", `oci:${dir}/layout:v1`]);
    await dist([
      "copy",
      "--all-platforms",
      `oci:${dir}/layout:v1`,
      `${registry.host}/from-oci/app:v1`,
    ]);
    assert.equal(await skopeoDigest(`${registry.host}/from-oci/app:v1`), digest);
    await dist(["copy", "--all-platforms", src, `oci-archive:${dir}/app.tar`]);
    await dist([
      "copy",
      "--all-platforms",
      `oci-archive:${dir}/app.tar`,
      `${registry.host}/from-tar/app:v1`,
    ]);
    assert.equal(await skopeoDigest(`${registry.host}/from-tar/app:v1`), digest);
    // an archive into a layout whose folder is yet to be made
    await dist([
      "copy",
      "--all-platforms",
      `oci-archive:${dir}/app.tar`,
      `oci:${dir}/new/sub/layout:v1`,
    ]);
    await run("skopeo", ["inspect", "--raw", `oci:${dir}/new/sub/layout:v1`]);
    await dist(["copy", src, `docker-archive:${dir}/docker.tar`]);
    await run("skopeo", ["inspect", `docker-archive:${dir}/docker.tar`]);
    // with write access to the destination's folder only: the scratch store goes there, and goes
    await Deno.mkdir(`${dir}/out`);
    const scoped = await runDist(["copy", src, `docker-archive:${dir}/out/docker.tar`], {
      permissions: ["--allow-net", "--allow-read", "--allow-env", `--allow-write=${dir}/out`],
    });
    assert.equal(scoped.code, 0, scoped.stderr);
    assert.deepEqual([...Deno.readDirSync(`${dir}/out`)].map((e) => e.name), ["docker.tar"]);
    const none = await runDist(["copy", `oci:${dir}/none:v1`, `${registry.host}/x/y:v1`]);
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, /it is no OCI image layout/);
    const bad = await runDist(["copy", src, "oci:"]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /invalid location "oci:"/);
  });
});

Deno.test("dist copy --referrers brings a signature along through the tag schema fallback", async () => {
  await withRegistry(async (registry) => {
    const image = await putImage(registry.url, "src/signed", {
      layers: [await buildLayer({ "etc/x": "x\n" }, "gzip")],
      tag: "v1",
    });
    // a signature artifact whose subject is the image, listed in the fallback index as cosign does
    const payload = await pushBlob(registry.url, "src/signed", new TextEncoder().encode("sig"));
    const empty = await pushBlob(registry.url, "src/signed", new TextEncoder().encode("{}"));
    const signatureBody = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
      config: { ...empty, mediaType: "application/vnd.oci.empty.v1+json" },
      layers: [{ ...payload, mediaType: "application/vnd.dev.cosign.simplesigning.v1+json" }],
      subject: {
        mediaType: image.manifest.mediaType,
        digest: image.manifest.digest,
        size: image.manifest.size,
      },
    };
    const signatureDigest = digestOf(new TextEncoder().encode(JSON.stringify(signatureBody)));
    const signature = await pushManifest(
      registry.url,
      "src/signed",
      signatureDigest,
      signatureBody,
      "application/vnd.oci.image.manifest.v1+json",
    );
    const fallbackTag = image.manifest.digest.replace(":", "-");
    const entry = { ...signature, artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json" };
    await pushManifest(registry.url, "src/signed", fallbackTag, {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [entry],
    }, "application/vnd.oci.image.index.v1+json");

    const out = await dist([
      "copy",
      "--referrers",
      `${registry.host}/src/signed:v1`,
      `${registry.host}/dst/signed:v1`,
    ]);
    assert.match(out, /1 referrers\)/);
    const index = await fetch(`${registry.url}/v2/dst/signed/manifests/${fallbackTag}`, {
      headers: { accept: "application/vnd.oci.image.index.v1+json" },
    });
    assert.equal(index.status, 200);
    const listed = (await index.json()).manifests;
    assert.deepEqual(listed.map((m: { digest: string }) => m.digest), [signature.digest]);
    const copied = await fetch(`${registry.url}/v2/dst/signed/manifests/${signature.digest}`, {
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    assert.equal(copied.status, 200);
    await copied.body?.cancel();
  });
});
