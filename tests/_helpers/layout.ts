/**
 * Writes images as OCI image layouts (plain files: `oci-layout`, `index.json`, `blobs/sha256/…`)
 * that `umoci`, `skopeo` and the store (`Store.open(dir)`) read.
 */
import { gzipSync, zstdCompressSync } from "node:zlib";
import { type Digest, digestOf } from "../../content/digest.ts";

/** A layer blob and the digest of its uncompressed tar. */
export interface LayoutLayer {
  bytes: Uint8Array<ArrayBuffer>;
  mediaType: string;
  diffId: string;
}

/** Wraps an uncompressed tar as a layer: gzip, zstd or none. */
export function layerOf(tar: Uint8Array, compression: "gzip" | "zstd" | "none"): LayoutLayer {
  const plain = new Uint8Array(tar);
  const diffId = digestOf(plain);
  if (compression === "gzip") {
    return {
      bytes: new Uint8Array(gzipSync(plain, { level: 1 })),
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      diffId,
    };
  }
  if (compression === "zstd") {
    return {
      bytes: new Uint8Array(zstdCompressSync(plain)),
      mediaType: "application/vnd.oci.image.layer.v1.tar+zstd",
      diffId,
    };
  }
  return { bytes: plain, mediaType: "application/vnd.oci.image.layer.v1.tar", diffId };
}

/** What {@link writeImageLayout} wrote. */
export interface LayoutImage {
  manifest: Digest;
  config: Digest;
}

/** Options for {@link writeImageLayout}. */
export interface LayoutOptions {
  /** The image config's `config` object (User, Env, Cmd…). */
  runtime?: Record<string, unknown>;
  /** Overrides of the config's diff_ids (to test mismatches). */
  diffIds?: string[];
  /** The `org.opencontainers.image.ref.name` of the index entry (default `latest`). */
  tag?: string;
  /** Extra top-level config fields. */
  configExtra?: Record<string, unknown>;
}

/** Writes blobs, config, manifest and an index entry into an OCI layout at `dir`. */
export async function writeImageLayout(
  dir: string,
  layers: LayoutLayer[],
  options: LayoutOptions = {},
): Promise<LayoutImage> {
  await Deno.mkdir(`${dir}/blobs/sha256`, { recursive: true });
  await Deno.writeTextFile(`${dir}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  const put = async (bytes: Uint8Array<ArrayBuffer>): Promise<Digest> => {
    const digest = digestOf(bytes);
    await Deno.writeFile(`${dir}/blobs/sha256/${digest.slice(7)}`, bytes);
    return digest;
  };
  const layerDescriptors = [];
  for (const layer of layers) {
    layerDescriptors.push({
      mediaType: layer.mediaType,
      digest: await put(layer.bytes),
      size: layer.bytes.length,
    });
  }
  const encoder = new TextEncoder();
  const configBytes = encoder.encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    ...options.configExtra,
    config: options.runtime ?? {},
    rootfs: { type: "layers", diff_ids: options.diffIds ?? layers.map((l) => l.diffId) },
  }));
  const config = await put(configBytes);
  const manifestBytes = encoder.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: config,
      size: configBytes.length,
    },
    layers: layerDescriptors,
  }));
  const manifest = await put(manifestBytes);
  let index: { schemaVersion: number; manifests: unknown[] } = { schemaVersion: 2, manifests: [] };
  try {
    index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  } catch {
    // first image in this layout
  }
  index.manifests.push({
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: manifest,
    size: manifestBytes.length,
    annotations: { "org.opencontainers.image.ref.name": options.tag ?? "latest" },
  });
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
  return { manifest, config };
}
