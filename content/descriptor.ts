/**
 * Descriptors, platforms and the media types of OCI and Docker images.
 *
 * @module
 */
import type { Digest } from "./digest.ts";

/** An OCI/Docker platform, as found in image indexes and image configs. */
export interface Platform {
  /** Operating system, e.g. `linux`. */
  os: string;
  /** CPU architecture, e.g. `amd64`, `arm64`. */
  architecture: string;
  /** CPU variant, e.g. `v7`, `v8`. */
  variant?: string;
  /** Operating system version (Windows). */
  "os.version"?: string;
  /** Required operating system features. */
  "os.features"?: string[];
}

/** Points at content by media type, digest and size (OCI image spec `descriptor`). */
export interface Descriptor {
  /** The media type of the referenced content. */
  mediaType: string;
  /** The digest of the referenced content. */
  digest: Digest;
  /** The size in bytes of the referenced content. */
  size: number;
  /** Alternative locations (foreign layers). */
  urls?: string[];
  /** Arbitrary metadata. */
  annotations?: Record<string, string>;
  /** The platform of an index entry. */
  platform?: Platform;
  /** The artifact type of an artifact manifest entry. */
  artifactType?: string;
}

/** Media types `dist` knows by name. */
export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  ociLayerNondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  ociLayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  ociLayerNondistributableZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestV1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerManifestV1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerForeignGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
} as const;

/** Reports whether a media type names an image index or a Docker manifest list. */
export function isIndexType(mediaType: string): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

/** Reports whether a media type names a single-platform image manifest. */
export function isManifestType(mediaType: string): boolean {
  return mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest;
}

/** Reports whether a media type names a Docker schema 1 manifest, which `dist` does not support. */
export function isSchema1Type(mediaType: string): boolean {
  return mediaType === MediaType.dockerManifestV1 ||
    mediaType === MediaType.dockerManifestV1Signed ||
    mediaType === "application/json"; // schema 1 registries answer with this too
}
