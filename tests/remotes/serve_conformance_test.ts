/**
 * The requests and expectations of the OCI distribution-spec conformance suite (its pull, push,
 * content-discovery and content-management categories), walked against `dist serve` AND the
 * reference registry, so that every expectation is checked on distribution too. Steps the
 * reference does not implement (2.8 has no referrers API and opens a session for a monolithic
 * POST) say so and run against dist only.
 */
import assert from "node:assert/strict";
import { digestOf } from "../../content/digest.ts";
import { seededBytes } from "../_helpers/bytes.ts";
import { startRegistry } from "../_helpers/registry.ts";
import { startServe } from "../_helpers/serve.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const encoder = new TextEncoder();

interface Walk {
  base: string;
  /** What the server under test is. */
  kind: "dist" | "distribution";
}

/** One request and what the spec says of its answer. */
async function expect(
  w: Walk,
  method: string,
  path: string,
  status: number | number[],
  init: RequestInit = {},
): Promise<Response> {
  const reply = await fetch(path.startsWith("http") ? path : `${w.base}${path}`, {
    ...init,
    method,
    redirect: "manual",
  });
  const wanted = Array.isArray(status) ? status : [status];
  const text = reply.status >= 400 ? await reply.clone().text() : "";
  assert.ok(
    wanted.includes(reply.status),
    `${w.kind}: ${method} ${path} answered ${reply.status}, want ${wanted.join(" or ")} ${text}`,
  );
  return reply;
}

async function errorCode(reply: Response): Promise<string> {
  return (await reply.json()).errors?.[0]?.code;
}

/** Uploads `bytes` to `repo` with POST then PUT, as the suite's push tests do. */
async function pushBlob(w: Walk, repo: string, bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = digestOf(bytes);
  const start = await expect(w, "POST", `/v2/${repo}/blobs/uploads/`, 202);
  const location = new URL(start.headers.get("location")!, w.base);
  location.searchParams.set("digest", digest);
  const put = await expect(w, "PUT", location.href, 201, {
    headers: { "content-type": "application/octet-stream", "content-length": String(bytes.length) },
    body: bytes,
  });
  assert.ok(put.headers.get("location"), `${w.kind}: no Location after the upload`);
  await put.body?.cancel();
  return digest;
}

async function walk(w: Walk): Promise<void> {
  const repo = "conformance/app";
  // ---- push: blobs, monolithic and chunked ----
  const config = encoder.encode('{"architecture":"amd64","os":"linux"}');
  const layer = seededBytes(300 * 1024, 3);
  const configDigest = await pushBlob(w, repo, config);
  const chunked = seededBytes(200 * 1024, 4);
  const chunkedDigest = digestOf(chunked);
  {
    const start = await expect(w, "POST", `/v2/${repo}/blobs/uploads/`, 202);
    let location = new URL(start.headers.get("location")!, w.base).href;
    const half = 100 * 1024;
    const first = await expect(w, "PATCH", location, 202, {
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `0-${half - 1}`,
        "content-length": String(half),
      },
      body: chunked.subarray(0, half),
    });
    assert.equal(first.headers.get("range"), `0-${half - 1}`, `${w.kind}: Range after a chunk`);
    location = new URL(first.headers.get("location")!, w.base).href;
    // the status of the upload
    const status = await expect(w, "GET", location, 204);
    assert.equal(status.headers.get("range"), `0-${half - 1}`);
    if (w.kind === "dist") {
      // a chunk out of order is refused (2.8 takes it, appended: dist only)
      const wrong = await expect(w, "PATCH", location, 416, {
        headers: { "content-type": "application/octet-stream", "content-range": `0-9` },
        body: chunked.subarray(0, 10),
      });
      await wrong.body?.cancel();
      location = new URL(wrong.headers.get("location") ?? location, w.base).href;
    }
    const second = await expect(w, "PATCH", location, 202, {
      headers: {
        "content-type": "application/octet-stream",
        "content-range": `${half}-${chunked.length - 1}`,
        "content-length": String(chunked.length - half),
      },
      body: chunked.subarray(half),
    });
    location = new URL(second.headers.get("location")!, w.base).href;
    const done = new URL(location);
    done.searchParams.set("digest", chunkedDigest);
    await (await expect(w, "PUT", done.href, 201)).body?.cancel();
  }
  const layerDigest = await pushBlob(w, repo, layer);
  // a cancelled upload is gone
  {
    const start = await expect(w, "POST", `/v2/${repo}/blobs/uploads/`, 202);
    const location = new URL(start.headers.get("location")!, w.base).href;
    await (await expect(w, "DELETE", location, 204)).body?.cancel();
    await (await expect(w, "GET", location, 404)).body?.cancel();
  }
  // a cross-repository mount of a blob the registry has
  const mounted = await expect(
    w,
    "POST",
    `/v2/other/app/blobs/uploads/?mount=${layerDigest}&from=${repo}`,
    201,
  );
  assert.equal(mounted.headers.get("docker-content-digest"), layerDigest);
  // ---- push: manifests ----
  const manifest = encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: configDigest,
      size: config.length,
    },
    layers: [
      {
        mediaType: "application/vnd.oci.image.layer.v1.tar",
        digest: layerDigest,
        size: layer.length,
      },
    ],
  }));
  const manifestDigest = digestOf(manifest);
  const put = await expect(w, "PUT", `/v2/${repo}/manifests/v1`, 201, {
    headers: { "content-type": OCI_MANIFEST },
    body: manifest,
  });
  assert.equal(put.headers.get("docker-content-digest"), manifestDigest);
  assert.ok(put.headers.get("location"));
  // the mounted repository gets the image too (its config mounted as well)
  await (await expect(
    w,
    "POST",
    `/v2/other/app/blobs/uploads/?mount=${configDigest}&from=${repo}`,
    201,
  )).body?.cancel();
  await (await expect(w, "PUT", `/v2/other/app/manifests/v1`, 201, {
    headers: { "content-type": OCI_MANIFEST },
    body: manifest,
  })).body?.cancel();
  // a manifest naming a blob that is not there is refused
  const dangling = encoder.encode(
    new TextDecoder().decode(manifest).replace(layerDigest, `sha256:${"1".repeat(64)}`),
  );
  const refused = await expect(w, "PUT", `/v2/${repo}/manifests/broken`, 400, {
    headers: { "content-type": OCI_MANIFEST },
    body: dangling,
  });
  assert.equal(await errorCode(refused), "MANIFEST_BLOB_UNKNOWN");
  // ---- pull ----
  await (await expect(w, "GET", "/v2/", 200)).body?.cancel();
  const head = await expect(w, "HEAD", `/v2/${repo}/manifests/v1`, 200, {
    headers: { accept: OCI_MANIFEST },
  });
  assert.equal(head.headers.get("docker-content-digest"), manifestDigest);
  const byDigest = await expect(w, "GET", `/v2/${repo}/manifests/${manifestDigest}`, 200, {
    headers: { accept: OCI_MANIFEST },
  });
  assert.deepEqual(new Uint8Array(await byDigest.arrayBuffer()), manifest);
  assert.equal(
    await errorCode(
      await expect(w, "GET", `/v2/${repo}/manifests/nope`, 404, {
        headers: { accept: OCI_MANIFEST },
      }),
    ),
    "MANIFEST_UNKNOWN",
  );
  const blob = await expect(w, "GET", `/v2/${repo}/blobs/${layerDigest}`, 200);
  assert.equal(digestOf(new Uint8Array(await blob.arrayBuffer())), layerDigest);
  const blobHead = await expect(w, "HEAD", `/v2/${repo}/blobs/${chunkedDigest}`, 200);
  assert.equal(blobHead.headers.get("content-length"), String(chunked.length));
  const range = await expect(w, "GET", `/v2/${repo}/blobs/${layerDigest}`, 206, {
    headers: { range: "bytes=10-19" },
  });
  assert.equal(range.headers.get("content-range"), `bytes 10-19/${layer.length}`);
  assert.deepEqual(new Uint8Array(await range.arrayBuffer()), layer.subarray(10, 20));
  const missing = await expect(w, "GET", `/v2/${repo}/blobs/sha256:${"2".repeat(64)}`, 404);
  assert.equal(await errorCode(missing), "BLOB_UNKNOWN");
  // ---- content discovery ----
  for (const tag of ["v2", "v3"]) {
    await (await expect(w, "PUT", `/v2/${repo}/manifests/${tag}`, 201, {
      headers: { "content-type": OCI_MANIFEST },
      body: manifest,
    })).body?.cancel();
  }
  const tags = await (await expect(w, "GET", `/v2/${repo}/tags/list`, 200)).json();
  assert.deepEqual({ ...tags, tags: [...tags.tags].sort() }, {
    name: repo,
    tags: ["v1", "v2", "v3"],
  });
  if (w.kind === "dist") {
    // 2.8 pages only the catalog, not tag lists: dist only
    const page = await expect(w, "GET", `/v2/${repo}/tags/list?n=2`, 200);
    assert.deepEqual((await page.json()).tags, ["v1", "v2"]);
    assert.match(page.headers.get("link") ?? "", /rel="next"/);
    const rest = await (await expect(w, "GET", `/v2/${repo}/tags/list?n=2&last=v2`, 200)).json();
    assert.deepEqual(rest.tags, ["v3"]);
  }
  const first = await expect(w, "GET", "/v2/_catalog?n=1", 200);
  assert.deepEqual((await first.json()).repositories, [repo]);
  assert.match(first.headers.get("link") ?? "", /rel="next"/);
  const after = await (await expect(w, "GET", `/v2/_catalog?n=1&last=${repo}`, 200)).json();
  assert.deepEqual(after.repositories, ["other/app"]);
  if (w.kind === "dist") {
    // distribution 2.8 has no referrers API (it answers 404): dist only
    const signature = encoder.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: "application/example.sig",
      config: {
        mediaType: "application/vnd.oci.empty.v1+json",
        digest: configDigest,
        size: config.length,
      },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: manifestDigest, size: manifest.length },
    }));
    const sig = await expect(w, "PUT", `/v2/${repo}/manifests/${digestOf(signature)}`, 201, {
      headers: { "content-type": OCI_MANIFEST },
      body: signature,
    });
    assert.equal(sig.headers.get("oci-subject"), manifestDigest);
    const referrers = await expect(w, "GET", `/v2/${repo}/referrers/${manifestDigest}`, 200);
    assert.equal(referrers.headers.get("content-type"), OCI_INDEX);
    const listed = (await referrers.json()).manifests;
    assert.deepEqual(listed.map((m: { digest: string }) => m.digest), [digestOf(signature)]);
    assert.equal(listed[0].artifactType, "application/example.sig");
    const filtered = await expect(
      w,
      "GET",
      `/v2/${repo}/referrers/${manifestDigest}?artifactType=x/y`,
      200,
    );
    assert.deepEqual((await filtered.json()).manifests, []);
    // a monolithic POST with ?digest= completes at once (2.8 opens a session instead)
    const one = seededBytes(1000, 9);
    const monolithic = await expect(
      w,
      "POST",
      `/v2/${repo}/blobs/uploads/?digest=${digestOf(one)}`,
      201,
      {
        headers: { "content-type": "application/octet-stream" },
        body: one,
      },
    );
    assert.equal(monolithic.headers.get("docker-content-digest"), digestOf(one));
  }
  // ---- content management ----
  await (await expect(w, "DELETE", `/v2/${repo}/manifests/${manifestDigest}`, 202)).body?.cancel();
  await (await expect(w, "GET", `/v2/${repo}/manifests/${manifestDigest}`, 404, {
    headers: { accept: OCI_MANIFEST },
  })).body?.cancel();
  await (await expect(w, "DELETE", `/v2/${repo}/blobs/${chunkedDigest}`, 202)).body?.cancel();
  await (await expect(w, "GET", `/v2/${repo}/blobs/${chunkedDigest}`, 404)).body?.cancel();
}

Deno.test("the conformance walk passes on the reference registry", async () => {
  const registry = await startRegistry();
  try {
    await walk({ base: registry.url, kind: "distribution" });
  } finally {
    await registry.stop();
  }
});

Deno.test("the conformance walk passes on dist serve", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-conformance-" });
  const served = await startServe(dir, ["--allow-push", "--allow-delete"]);
  try {
    await walk({ base: served.url, kind: "dist" });
  } finally {
    await served.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
