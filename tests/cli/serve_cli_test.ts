/** `dist serve` with real clients: skopeo, dist itself, and raw requests around crashes. */
import assert from "node:assert/strict";
import { run, skopeoDigest } from "../_helpers/programs.ts";
import { runDist } from "../_helpers/cli.ts";
import { pushMultiPlatform } from "../_helpers/images.ts";
import { withRegistry } from "../_helpers/registry.ts";
import { startServe } from "../_helpers/serve.ts";
import { requireTool } from "../_helpers/temp.ts";
import { digestOf } from "../../content/digest.ts";
import { seededBytes } from "../_helpers/bytes.ts";

const decoder = new TextDecoder();

Deno.test("skopeo copies to and from dist serve with digests kept; dist fetches from it", async () => {
  await requireTool("skopeo");
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const source = `${registry.host}/src/app:v1`;
    const digest = await skopeoDigest(source);
    const served = await startServe(`${dir}/served`, ["--allow-push"]);
    try {
      await run("skopeo", [
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        `docker://${source}`,
        `docker://${served.host}/team/app:v1`,
      ]);
      assert.equal(await skopeoDigest(`${served.host}/team/app:v1`), digest);
      await run("skopeo", [
        "copy",
        "--all",
        "--src-tls-verify=false",
        `docker://${served.host}/team/app:v1`,
        `oci:${dir}/layout:v1`,
      ]);
      const fetched = await runDist([
        "fetch",
        "--root",
        `${dir}/client`,
        "--all-platforms",
        "-q",
        `${served.host}/team/app:v1`,
      ]);
      assert.equal(fetched.code, 0, fetched.stderr);
      assert.equal(JSON.parse(fetched.stdout).digest, digest);
      const images = await runDist(["images", "--root", `${dir}/served`, "-q"]);
      // the tag, and the platform manifests skopeo pushed by digest before the index
      const names = images.stdout.trim().split("\n");
      assert.ok(names.includes(`${served.host}/team/app:v1`), images.stdout);
      assert.ok(names.every((n) => n === `${served.host}/team/app:v1` || n.includes("@sha256:")));
      const tags = await (await fetch(`${served.url}/v2/team/app/tags/list`)).json();
      assert.deepEqual(tags, { name: "team/app", tags: ["v1"] });
      // dist copy and push go there too
      const copied = await runDist([
        "copy",
        "-q",
        "--all-platforms",
        source,
        `${served.host}/other/app:v2`,
      ]);
      assert.equal(copied.code, 0, copied.stderr);
      assert.equal(await skopeoDigest(`${served.host}/other/app:v2`), digest);
      assert.match(served.log(), /GET \/v2\/team\/app\/manifests\/v1 200 \d+ [\d.]+ms/);
    } finally {
      assert.equal(await served.stop(), 0);
    }
  });
});

Deno.test("dist serve --htpasswd: skopeo with --dest-creds pushes, without is refused; read-only refuses pushes", async () => {
  await requireTool("skopeo");
  await requireTool("htpasswd");
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    await run("htpasswd", ["-cbB", `${dir}/htpasswd`, "alice", "s3cret"]);
    const served = await startServe(`${dir}/served`, [
      "--allow-push",
      "--htpasswd",
      `${dir}/htpasswd`,
    ]);
    const copy = (extra: string[]) =>
      new Deno.Command("skopeo", {
        args: [
          "copy",
          "--src-tls-verify=false",
          "--dest-tls-verify=false",
          ...extra,
          `docker://${registry.host}/src/app:v1`,
          `docker://${served.host}/team/app:v1`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
    try {
      assert.equal((await copy([])).success, false);
      const ok = await copy(["--dest-creds", "alice:s3cret"]);
      assert.ok(ok.success, decoder.decode(ok.stderr));
      const anonymous = await fetch(`${served.url}/v2/`);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Basic/);
      await anonymous.body?.cancel();
      assert.doesNotMatch(served.log(), /s3cret|YWxpY2U6czNjcmV0/);
    } finally {
      await served.stop();
    }
    const readOnly = await startServe(`${dir}/served`);
    try {
      const refused = await fetch(`${readOnly.url}/v2/team/app/blobs/uploads/`, { method: "POST" });
      assert.equal(refused.status, 405);
      assert.equal((await refused.json()).errors[0].code, "UNSUPPORTED");
    } finally {
      await readOnly.stop();
    }
  });
});

Deno.test("an upload shows in dist active, survives kill -9 of the server and resumes where it stood", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-serve-" });
  const root = `${dir}/served`;
  let served = await startServe(root, ["--allow-push"]);
  try {
    const blob = seededBytes(3 << 20, 7);
    const digest = digestOf(blob);
    const started = await fetch(`${served.url}/v2/up/app/blobs/uploads/`, { method: "POST" });
    assert.equal(started.status, 202);
    const location = started.headers.get("location")!;
    // opened, not a byte yet: already in `dist active`
    const opened = await runDist(["active", "--root", root]);
    assert.match(opened.stdout, /upload-[0-9a-f-]{36}\s+0 B/, opened.stdout);
    const first = await fetch(`${served.url}${location}`, {
      method: "PATCH",
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `0-${(1 << 20) - 1}`,
      },
      body: blob.subarray(0, 1 << 20),
    });
    assert.equal(first.status, 202);
    assert.equal(first.headers.get("range"), `0-${(1 << 20) - 1}`);
    const active = await runDist(["active", "--root", root]);
    assert.match(active.stdout, /upload-[0-9a-f-]{36}\s+1.0 MiB/, active.stderr);
    await served.kill();
    served = await startServe(root, ["--allow-push"]);
    const status = await fetch(`${served.url}${location}`);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("range"), `0-${(1 << 20) - 1}`);
    const rest = await fetch(`${served.url}${location}`, {
      method: "PATCH",
      headers: { "content-range": `${1 << 20}-${blob.length - 1}` },
      body: blob.subarray(1 << 20),
    });
    assert.equal(rest.status, 202);
    // the wrong digest is refused and the blob never appears
    const wrong = await fetch(`${served.url}${location}?digest=sha256:${"0".repeat(64)}`, {
      method: "PUT",
    });
    assert.equal(wrong.status, 400);
    assert.equal((await wrong.json()).errors[0].code, "DIGEST_INVALID");
    const again = await fetch(`${served.url}/v2/up/app/blobs/uploads/`, { method: "POST" });
    const loc = again.headers.get("location")!;
    await (await fetch(`${served.url}${loc}`, { method: "PATCH", body: blob })).body?.cancel();
    const done = await fetch(`${served.url}${loc}?digest=${digest}`, { method: "PUT" });
    assert.equal(done.status, 201);
    const back = new Uint8Array(
      await (await fetch(`${served.url}/v2/up/app/blobs/${digest}`)).arrayBuffer(),
    );
    assert.equal(digestOf(back), digest);
  } finally {
    await served.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("dist serve under 20 pullers and 5 pushers: no 5xx, no corrupt blob, no lost upload", async () => {
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const served = await startServe(`${dir}/served`, ["--allow-push"]);
    try {
      const seeded = await runDist([
        "copy",
        "--all-platforms",
        `${registry.host}/src/app:v1`,
        `${served.host}/team/app:v1`,
      ]);
      assert.equal(seeded.code, 0, seeded.stderr);
      const index = await (await fetch(`${served.url}/v2/team/app/manifests/v1`, {
        headers: { accept: "application/vnd.oci.image.index.v1+json" },
      })).json();
      const manifest =
        await (await fetch(`${served.url}/v2/team/app/manifests/${index.manifests[0].digest}`, {
          headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
        })).json();
      const blobs: string[] = [
        manifest.config.digest,
        ...manifest.layers.map((l: { digest: string }) => l.digest),
      ];
      const statuses: number[] = [];
      const deadline = Date.now() + 3000;
      const puller = async () => {
        for (let i = 0; Date.now() < deadline; i++) {
          const digest = blobs[i % blobs.length];
          const reply = await fetch(`${served.url}/v2/team/app/blobs/${digest}`);
          statuses.push(reply.status);
          assert.equal(digestOf(new Uint8Array(await reply.arrayBuffer())), digest);
        }
      };
      const pushed: string[] = [];
      const pusher = async (n: number) => {
        for (let i = 0; Date.now() < deadline; i++) {
          const bytes = seededBytes(64 * 1024 + i, n * 1000 + i);
          const digest = digestOf(bytes);
          const start = await fetch(`${served.url}/v2/push${n}/app/blobs/uploads/`, {
            method: "POST",
          });
          statuses.push(start.status);
          const put = await fetch(
            `${served.url}${start.headers.get("location")}?digest=${digest}`,
            {
              method: "PUT",
              body: bytes,
            },
          );
          statuses.push(put.status);
          await put.body?.cancel();
          pushed.push(digest);
        }
      };
      await Promise.all([
        ...Array.from({ length: 20 }, puller),
        ...Array.from({ length: 5 }, (_, n) => pusher(n)),
      ]);
      assert.ok(statuses.every((s) => s < 500), `statuses ${[...new Set(statuses)]}`);
      assert.ok(pushed.length >= 5);
      for (const digest of pushed) {
        const head = await fetch(`${served.url}/v2/any/blobs/${digest}`, { method: "HEAD" });
        assert.equal(head.status, 200, digest);
      }
      const active = await runDist(["active", "--root", `${dir}/served`]);
      assert.equal(active.stdout.trim().split("\n").length, 1, active.stdout); // header only
    } finally {
      await served.stop();
    }
  });
});

Deno.test("dist prune keeps what clients uploaded to dist serve until its manifest comes, and collects the rest", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-serve-" });
  const root = `${dir}/served`;
  const served = await startServe(root, ["--allow-push"]);
  let stopped = false;
  try {
    // a layer pushed, its manifest not yet: prune meanwhile must not take the layer
    const layer = seededBytes(100_000, 11);
    const digest = digestOf(layer);
    const put = await fetch(`${served.url}/v2/wip/app/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: layer,
    });
    assert.equal(put.status, 201);
    // garbage of the store's own: a blob ingested with no image and no upload behind it
    const stray = seededBytes(5_000, 12);
    const ingested = await runDist([
      "ingest",
      "--root",
      root,
      "--expected-digest",
      digestOf(stray),
      "--expected-size",
      String(stray.length),
      "stray",
    ], { stdin: stray });
    assert.equal(ingested.code, 0, ingested.stderr);
    const pruned = await runDist(["prune", "--root", root]);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, new RegExp(`removed blob ${digestOf(stray)}`));
    assert.doesNotMatch(pruned.stdout, new RegExp(digest));
    assert.equal(
      (await fetch(`${served.url}/v2/wip/app/blobs/${digest}`, { method: "HEAD" })).status,
      200,
    );
    // once the server is gone, nothing keeps the unused layer
    await served.stop();
    stopped = true;
    const later = await runDist(["prune", "--root", root]);
    assert.match(later.stdout, new RegExp(`removed blob ${digest}`), later.stdout);
  } finally {
    if (!stopped) await served.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("dist serve answers deletes and uploads at once (both take the lease lock)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-serve-" });
  const served = await startServe(`${dir}/served`, ["--allow-push", "--allow-delete"]);
  try {
    // a server stuck on its own lock answers nothing: the test fails at the deadline, not hangs
    const deadline = AbortSignal.timeout(20_000);
    const upload = async (i: number) => {
      const blob = seededBytes(20_000, 100 + i);
      const digest = digestOf(blob);
      const reply = await fetch(`${served.url}/v2/race/app/blobs/uploads/?digest=${digest}`, {
        method: "POST",
        body: blob,
        signal: deadline,
      });
      await reply.body?.cancel();
      assert.equal(reply.status, 201);
      return digest;
    };
    const first = await Promise.all(Array.from({ length: 10 }, (_, i) => upload(i)));
    const statuses = await Promise.all([
      ...first.map(async (digest) => {
        const reply = await fetch(`${served.url}/v2/race/app/blobs/${digest}`, {
          method: "DELETE",
          signal: deadline,
        });
        await reply.body?.cancel();
        return reply.status;
      }),
      ...Array.from({ length: 10 }, (_, i) => upload(10 + i).then(() => 201)),
    ]);
    assert.deepEqual(statuses, [...Array(10).fill(202), ...Array(10).fill(201)]);
  } finally {
    await served.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
