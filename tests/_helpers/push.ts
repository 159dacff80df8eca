/**
 * Puts test content into a real registry with the distribution API's plain HTTP uploads
 * (POST a session, PUT with the digest), so tests build exactly the images they need.
 */
import { digestOf } from "../../content/digest.ts";
import type { Descriptor } from "../../content/descriptor.ts";

/** Extra headers (e.g. Authorization) for registries that need them. */
export interface PushOptions {
  headers?: Record<string, string>;
}

/** Uploads one blob and returns its descriptor. */
export async function pushBlob(
  registryUrl: string,
  repository: string,
  bytes: Uint8Array<ArrayBuffer>,
  mediaType = "application/octet-stream",
  options: PushOptions = {},
): Promise<Descriptor> {
  const digest = digestOf(bytes);
  const start = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, {
    method: "POST",
    headers: options.headers,
  });
  await start.body?.cancel();
  if (start.status !== 202) throw new Error(`upload start for ${repository}: ${start.status}`);
  const location = new URL(start.headers.get("location")!, registryUrl);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, {
    method: "PUT",
    headers: { ...options.headers, "content-type": "application/octet-stream" },
    body: bytes,
  });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`upload of ${digest}: ${put.status} ${text}`);
  return { mediaType, digest, size: bytes.length };
}

/** Uploads a manifest (or index) under a tag or digest reference and returns its descriptor. */
export async function pushManifest(
  registryUrl: string,
  repository: string,
  reference: string,
  manifest: unknown,
  mediaType: string,
  options: PushOptions = {},
): Promise<Descriptor> {
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  const res = await fetch(`${registryUrl}/v2/${repository}/manifests/${reference}`, {
    method: "PUT",
    headers: { ...options.headers, "content-type": mediaType },
    body: bytes,
  });
  const text = await res.text();
  if (res.status !== 201) {
    throw new Error(`manifest put ${repository}:${reference}: ${res.status} ${text}`);
  }
  return { mediaType, digest: digestOf(bytes), size: bytes.length };
}

/** Pushes a single-layer OCI image made of the given layer bytes (content is not unpacked). */
export async function pushSimpleImage(
  registryUrl: string,
  repository: string,
  tag: string,
  layers: Uint8Array<ArrayBuffer>[],
  options: PushOptions = {},
): Promise<{ manifest: Descriptor; layers: Descriptor[]; config: Descriptor }> {
  const layerDescs: Descriptor[] = [];
  for (const layer of layers) {
    layerDescs.push(
      await pushBlob(
        registryUrl,
        repository,
        layer,
        "application/vnd.oci.image.layer.v1.tar",
        options,
      ),
    );
  }
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: layerDescs.map((d) => d.digest) },
    config: {},
  }));
  const configDesc = await pushBlob(
    registryUrl,
    repository,
    config,
    "application/vnd.oci.image.config.v1+json",
    options,
  );
  const manifest = await pushManifest(
    registryUrl,
    repository,
    tag,
    {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: configDesc,
      layers: layerDescs,
    },
    "application/vnd.oci.image.manifest.v1+json",
    options,
  );
  return { manifest, layers: layerDescs, config: configDesc };
}
