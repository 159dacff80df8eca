import assert from "node:assert/strict";
import {
  childrenOf,
  type ImageIndex,
  isAttestation,
  selectManifests,
} from "../../content/images/graph.ts";
import { type Descriptor, MediaType, type Platform } from "../../content/descriptor.ts";
import { digestOf } from "../../content/digest.ts";
import { CorruptContentError, NotFoundError, UnsupportedError } from "../../content/errors.ts";
import { hostPlatform, parsePlatform } from "../../content/platform.ts";

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

function blob(text: string, mediaType: string, platform?: Platform): Descriptor {
  const bytes = new TextEncoder().encode(text);
  return { mediaType, digest: digestOf(bytes), size: bytes.length, ...(platform && { platform }) };
}

function described(value: unknown, mediaType: string): [Descriptor, Uint8Array] {
  const bytes = encode(value);
  return [{ mediaType, digest: digestOf(bytes), size: bytes.length }, bytes];
}

const amd64 = blob("amd64", MediaType.ociManifest, { os: "linux", architecture: "amd64" });
const arm64 = blob("arm64", MediaType.ociManifest, {
  os: "linux",
  architecture: "arm64",
  variant: "v8",
});
const armv7 = blob("armv7", MediaType.ociManifest, { os: "linux", architecture: "arm" });
const armv6 = blob("armv6", MediaType.ociManifest, {
  os: "linux",
  architecture: "arm",
  variant: "v6",
});
const attestation: Descriptor = {
  ...blob("att", MediaType.ociManifest, { os: "unknown", architecture: "unknown" }),
  annotations: {
    "vnd.docker.reference.type": "attestation-manifest",
    "vnd.docker.reference.digest": amd64.digest,
  },
};
const index: ImageIndex = {
  schemaVersion: 2,
  mediaType: MediaType.ociIndex,
  manifests: [amd64, attestation, arm64, armv6, armv7],
};

Deno.test("selectManifests() picks the host platform by default", () => {
  const chosen = selectManifests(index);
  assert.equal(chosen.length, 1);
  assert.equal(chosen[0].platform?.architecture, hostPlatform().architecture);
});

Deno.test("selectManifests() matches arm64 to arm64/v8 and arm to arm/v7", () => {
  assert.deepEqual(selectManifests(index, { platforms: [parsePlatform("linux/arm64")] }), [arm64]);
  assert.deepEqual(selectManifests(index, { platforms: [parsePlatform("linux/arm")] }), [armv7]);
  assert.deepEqual(selectManifests(index, { platforms: [parsePlatform("linux/arm/v6")] }), [
    armv6,
  ]);
  // a v7 machine falls back to v6 when the index has no v7 entry
  const noV7: ImageIndex = { ...index, manifests: [amd64, armv6] };
  assert.deepEqual(selectManifests(noV7, { platforms: [parsePlatform("linux/arm/v7")] }), [armv6]);
});

Deno.test("selectManifests() takes one entry per wanted platform, in order", () => {
  const chosen = selectManifests(index, {
    platforms: [parsePlatform("linux/arm64"), parsePlatform("linux/amd64")],
  });
  assert.deepEqual(chosen, [arm64, amd64]);
});

Deno.test("selectManifests() leaves attestations out unless all platforms are asked for", () => {
  assert.equal(isAttestation(attestation), true);
  assert.equal(isAttestation(amd64), false);
  assert.throws(
    () => selectManifests(index, { platforms: [{ os: "unknown", architecture: "unknown" }] }),
    NotFoundError,
  );
  assert.deepEqual(selectManifests(index, { allPlatforms: true }), index.manifests);
});

Deno.test("selectManifests() names the offered platforms when none matches", () => {
  assert.throws(
    () => selectManifests(index, { platforms: [parsePlatform("linux/s390x")] }),
    (e) =>
      e instanceof NotFoundError &&
      e.message === "no manifest for platform linux/s390x " +
          "(the index has linux/amd64, linux/arm64, linux/arm/v6, linux/arm/v7)",
  );
});

Deno.test("childrenOf() lists an index's chosen manifests", () => {
  const [desc, bytes] = described(index, MediaType.ociIndex);
  const { children, skipped } = childrenOf(desc, bytes, {
    platforms: [parsePlatform("linux/arm64")],
  });
  assert.deepEqual(children, [{ descriptor: arm64, kind: "manifest" }]);
  assert.deepEqual(skipped, []);
});

Deno.test("childrenOf() lists config and layers, skipping foreign layers", () => {
  const config = blob("{}", MediaType.dockerConfig);
  const layer = blob("layer", MediaType.dockerLayerGzip);
  const foreign: Descriptor = {
    ...blob("foreign", MediaType.dockerLayerForeignGzip),
    urls: ["https://example.com/layer"],
  };
  const nondist = blob("nd", MediaType.ociLayerNondistributableZstd);
  const [desc, bytes] = described(
    {
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config,
      layers: [foreign, layer, nondist],
    },
    MediaType.dockerManifest,
  );
  const { children, skipped } = childrenOf(desc, bytes);
  assert.deepEqual(children, [
    { descriptor: config, kind: "config" },
    { descriptor: layer, kind: "layer" },
  ]);
  assert.deepEqual(skipped, [foreign, nondist]);
});

Deno.test("childrenOf() fetches artifact layers of unknown media types as blobs", () => {
  const config = blob("{}", "application/vnd.oci.empty.v1+json");
  const chart = blob("chart", "application/vnd.cncf.helm.chart.content.v1.tar+gzip");
  const [desc, bytes] = described(
    {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType: "x",
      config,
      layers: [chart],
    },
    MediaType.ociManifest,
  );
  assert.deepEqual(childrenOf(desc, bytes).children.map((c) => c.descriptor), [config, chart]);
  // an unknown top-level type has no children: it is stored as an opaque blob
  const opaque = blob("opaque", "application/vnd.example.thing");
  assert.deepEqual(childrenOf(opaque, encode("opaque")).children, []);
});

Deno.test("childrenOf() refuses Docker schema 1 manifests", () => {
  const [desc, bytes] = described(
    { schemaVersion: 1, name: "x", tag: "latest", fsLayers: [] },
    MediaType.dockerManifestV1Signed,
  );
  assert.throws(() => childrenOf(desc, bytes), UnsupportedError);
  // also when the registry labels it with a schema 2 type
  assert.throws(
    () => childrenOf({ ...desc, mediaType: MediaType.ociManifest }, bytes),
    (e) => e instanceof UnsupportedError && e.message.includes("schema 1"),
  );
});

Deno.test("childrenOf() rejects a manifest with an invalid child digest", () => {
  const [desc, bytes] = described(
    {
      schemaVersion: 2,
      config: { mediaType: MediaType.ociConfig, digest: "sha256:../../etc/passwd", size: 2 },
      layers: [],
    },
    MediaType.ociManifest,
  );
  assert.throws(
    () => childrenOf(desc, bytes),
    (e) => e instanceof CorruptContentError && e.message.includes("invalid digest"),
  );
});
