/**
 * Builds real images for tests and pushes them to the test registry: layers are tar archives made
 * by the system `tar` from files the test names, compressed with node:zlib (gzip, zstd) or left
 * plain; configs carry diff_ids and a runtime config; manifests and indexes come in OCI and Docker
 * flavours, indexes optionally with a BuildKit-style attestation entry.
 */
import { gzipSync, zstdCompressSync } from "node:zlib";
import { digestOf } from "../../content/digest.ts";
import type { Descriptor, Platform } from "../../content/descriptor.ts";
import { pushBlob, pushManifest, type PushOptions } from "./push.ts";
import { removeTree } from "./temp.ts";

// bench/fetch.ts imports randomBytes from here
export { randomBytes } from "./bytes.ts";

/** How a layer is compressed. */
export type Compression = "gzip" | "zstd" | "none";

/** A file in a layer: text/bytes, or an object giving mode and content. */
export type FileSpec = string | Uint8Array | { content: string | Uint8Array; mode?: number };

/** A built layer. */
export interface Layer {
  bytes: Uint8Array<ArrayBuffer>;
  /** Digest of the uncompressed tar (the config's diff_id). */
  diffId: string;
  mediaType: string;
}

const OCI = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  index: "application/vnd.oci.image.index.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
};
const DOCKER = {
  manifest: "application/vnd.docker.distribution.manifest.v2+json",
  index: "application/vnd.docker.distribution.manifest.list.v2+json",
  config: "application/vnd.docker.container.image.v1+json",
};

/** Makes a layer from `files` (paths relative to the layer root; parents are created). */
export async function buildLayer(
  files: Record<string, FileSpec>,
  compression: Compression = "gzip",
  options: { docker?: boolean } = {},
): Promise<Layer> {
  const dir = await Deno.makeTempDir({ prefix: "dist-layer-" });
  try {
    for (const [path, spec] of Object.entries(files)) {
      const full = `${dir}/${path}`;
      await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      const content = typeof spec === "string" || spec instanceof Uint8Array ? spec : spec.content;
      if (typeof content === "string") await Deno.writeTextFile(full, content);
      else await Deno.writeFile(full, content);
      if (typeof spec === "object" && !(spec instanceof Uint8Array) && spec.mode !== undefined) {
        await Deno.chmod(full, spec.mode);
      }
    }
    const tar = await new Deno.Command("tar", {
      args: [
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@1700000000",
        "-C",
        dir,
        "-cf",
        "-",
        ".",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!tar.success) throw new Error(`tar failed: ${new TextDecoder().decode(tar.stderr)}`);
    return compressLayer(tar.stdout as Uint8Array<ArrayBuffer>, compression, options);
  } finally {
    await removeTree(dir);
  }
}

/** Wraps an uncompressed tar as a layer with the given compression. */
export function compressLayer(
  tar: Uint8Array<ArrayBuffer>,
  compression: Compression,
  options: { docker?: boolean } = {},
): Layer {
  const diffId = digestOf(tar);
  if (compression === "gzip") {
    return {
      bytes: new Uint8Array(gzipSync(tar)),
      diffId,
      mediaType: options.docker
        ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
        : "application/vnd.oci.image.layer.v1.tar+gzip",
    };
  }
  if (compression === "zstd") {
    return {
      bytes: new Uint8Array(zstdCompressSync(tar)),
      diffId,
      mediaType: "application/vnd.oci.image.layer.v1.tar+zstd",
    };
  }
  return { bytes: tar, diffId, mediaType: "application/vnd.oci.image.layer.v1.tar" };
}

/** The runtime part of an image config. */
export interface RuntimeConfig {
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  User?: string;
}

/** What {@link pushImage} builds. */
export interface ImageSpec {
  layers: Layer[];
  /** Default linux/amd64. */
  platform?: Platform;
  config?: RuntimeConfig;
  /** Docker schema 2 media types instead of OCI. */
  docker?: boolean;
  /** Layers referenced by the manifest but never pushed (foreign / non-distributable). */
  foreign?: Descriptor[];
  /** Tag to push the manifest under; default: by digest only. */
  tag?: string;
}

/** A pushed single-platform image. */
export interface PushedImage {
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
}

/** Pushes layers, config and manifest; returns their descriptors (the manifest's with platform). */
export async function pushImage(
  registryUrl: string,
  repository: string,
  spec: ImageSpec,
  options: PushOptions = {},
): Promise<PushedImage> {
  const types = spec.docker ? DOCKER : OCI;
  const platform = spec.platform ?? { os: "linux", architecture: "amd64" };
  const layers: Descriptor[] = [];
  for (const layer of spec.layers) {
    layers.push(await pushBlob(registryUrl, repository, layer.bytes, layer.mediaType, options));
  }
  const all = [...layers, ...(spec.foreign ?? [])];
  const diffIds = [
    ...spec.layers.map((l) => l.diffId),
    ...(spec.foreign ?? []).map((d) => d.digest),
  ];
  const configBytes = new TextEncoder().encode(JSON.stringify({
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: spec.config ?? {},
    rootfs: { type: "layers", diff_ids: diffIds },
    history: all.map(() => ({ created_by: "dist test" })),
  }));
  const config = await pushBlob(registryUrl, repository, configBytes, types.config, options);
  const body = { schemaVersion: 2, mediaType: types.manifest, config, layers: all };
  const reference = spec.tag ?? digestOf(new TextEncoder().encode(JSON.stringify(body)));
  const manifest = await pushManifest(
    registryUrl,
    repository,
    reference,
    body,
    types.manifest,
    options,
  );
  return { manifest: { ...manifest, platform }, config, layers };
}

/** Pushes an attestation manifest (in-toto layer) for `subject`; returns its index entry. */
export async function pushAttestation(
  registryUrl: string,
  repository: string,
  subject: Descriptor,
  options: PushOptions = {},
): Promise<Descriptor> {
  const statement = new TextEncoder().encode(JSON.stringify({
    _type: "https://in-toto.io/Statement/v0.1",
    subject: [{ name: "image", digest: { sha256: subject.digest.slice(7) } }],
    predicateType: "https://spdx.dev/Document",
    predicate: {},
  }));
  const layer = await pushBlob(
    registryUrl,
    repository,
    statement,
    "application/vnd.in-toto+json",
    options,
  );
  const configBytes = new TextEncoder().encode("{}");
  const config = await pushBlob(registryUrl, repository, configBytes, OCI.config, options);
  const body = { schemaVersion: 2, mediaType: OCI.manifest, config, layers: [layer] };
  const digest = digestOf(new TextEncoder().encode(JSON.stringify(body)));
  const manifest = await pushManifest(registryUrl, repository, digest, body, OCI.manifest, options);
  return {
    ...manifest,
    platform: { os: "unknown", architecture: "unknown" },
    annotations: {
      "vnd.docker.reference.type": "attestation-manifest",
      "vnd.docker.reference.digest": subject.digest,
    },
  };
}

/** Pushes an index (OCI) or manifest list (Docker) of `manifests` under `tag`. */
export function pushIndex(
  registryUrl: string,
  repository: string,
  tag: string,
  manifests: Descriptor[],
  options: PushOptions & { docker?: boolean } = {},
): Promise<Descriptor> {
  const types = options.docker ? DOCKER : OCI;
  return pushManifest(
    registryUrl,
    repository,
    tag,
    { schemaVersion: 2, mediaType: types.index, manifests },
    types.index,
    options,
  );
}

/** What {@link pushMultiPlatform} pushed. */
export interface MultiPlatformImage {
  amd64: PushedImage;
  arm64: PushedImage;
  /** The attestation's index entry (for amd64). */
  attestation: Descriptor;
}

/**
 * Pushes `repository:tag` as an OCI index of linux/amd64 and linux/arm64/v8 (sharing a gzip base
 * layer; the amd64 top layer is zstd, the arm64 one gzip) plus an attestation for amd64.
 */
export async function pushMultiPlatform(
  registryUrl: string,
  repository: string,
  tag = "v1",
): Promise<MultiPlatformImage> {
  const base = await buildLayer({ "etc/os-release": "ID=test\n" }, "gzip");
  const amd64 = await pushImage(registryUrl, repository, {
    layers: [base, await buildLayer({ "bin/tool": "amd64\n" }, "zstd")],
    config: { Cmd: ["/bin/tool"] },
  });
  const arm64 = await pushImage(registryUrl, repository, {
    layers: [base, await buildLayer({ "bin/tool": "arm64\n" }, "gzip")],
    platform: { os: "linux", architecture: "arm64", variant: "v8" },
  });
  const attestation = await pushAttestation(registryUrl, repository, amd64.manifest);
  await pushIndex(registryUrl, repository, tag, [amd64.manifest, arm64.manifest, attestation]);
  return { amd64, arm64, attestation };
}
