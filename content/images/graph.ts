/**
 * An image's descriptor graph: an index (or Docker manifest list) points at manifests, a manifest
 * at its config and layers. This module parses manifests and indexes, decides which children of a
 * descriptor are needed for the chosen platforms, and walks the graph over content in a store.
 *
 * @example
 * ```ts
 * import { childrenOf } from "./graph.ts";
 * import { digestOf } from "../digest.ts";
 * const bytes = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, manifests: [] }));
 * const index = {
 *   mediaType: "application/vnd.oci.image.index.v1+json",
 *   digest: digestOf(bytes),
 *   size: bytes.length,
 * };
 * const { children } = childrenOf(index, bytes, { allPlatforms: true });
 * console.assert(children.length === 0);
 * ```
 *
 * @module
 */
import {
  type Descriptor,
  isIndexType,
  isManifestType,
  isSchema1Type,
  MediaType,
  type Platform,
} from "../descriptor.ts";
import { type Digest, digestOf, isDigest, shortDigest } from "../digest.ts";
import type { Provider } from "../store/capabilities.ts";
import {
  CorruptContentError,
  DigestMismatchError,
  NotFoundError,
  UnsupportedError,
} from "../errors.ts";
import { formatPlatform, hostPlatform, normalizePlatform, platformRank } from "../platform.ts";

/** The largest manifest or index `dist` reads into memory (the registries' common limit). */
export const MAX_MANIFEST_SIZE: number = 4 * 1024 * 1024;

/** The withdrawn OCI artifact manifest: its `blobs` are fetched as opaque content. */
const ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json";

/** An OCI image manifest or Docker schema 2 manifest. */
export interface ImageManifest {
  /** Always 2. */
  schemaVersion: 2;
  /** The manifest's own media type, when it names it. */
  mediaType?: string;
  /** The artifact type of an artifact manifest. */
  artifactType?: string;
  /** The image config (or an artifact's config blob). */
  config: Descriptor;
  /** The layers, lowest first. */
  layers: Descriptor[];
  /** The manifest this one refers to (referrers API). */
  subject?: Descriptor;
  /** Arbitrary metadata. */
  annotations?: Record<string, string>;
}

/** An OCI image index or Docker manifest list. */
export interface ImageIndex {
  /** Always 2. */
  schemaVersion: 2;
  /** The index's own media type, when it names it. */
  mediaType?: string;
  /** The artifact type of an artifact index. */
  artifactType?: string;
  /** The entries: manifests (with platforms) or nested indexes. */
  manifests: Descriptor[];
  /** The manifest this one refers to (referrers API). */
  subject?: Descriptor;
  /** Arbitrary metadata. */
  annotations?: Record<string, string>;
}

/** The role a descriptor plays in an image; it names the ingest (`layer-sha256:…`). */
export type NodeKind = "index" | "manifest" | "config" | "layer" | "blob";

/** A child descriptor and its role. */
export interface GraphNode {
  /** The child. */
  descriptor: Descriptor;
  /** Its role. */
  kind: NodeKind;
}

/** Which manifests of an index are wanted. */
export interface PlatformSelection {
  /**
   * Wanted platforms (each gets its best match, as containerd's pull picks one).
   * Default: the host platform.
   */
  platforms?: Platform[];
  /** Every entry, attestations included. */
  allPlatforms?: boolean;
}

/** The children of one descriptor: those to fetch, and layers left out because of their type. */
export interface Children {
  /** The children to fetch, in order (config first, then layers lowest first). */
  children: GraphNode[];
  /** Non-distributable (foreign) layers, which are never fetched. */
  skipped: Descriptor[];
}

/** The kind of a descriptor that is not a manifest's child: index, manifest or opaque blob. */
export function kindOf(descriptor: Descriptor): NodeKind {
  if (isIndexType(descriptor.mediaType)) return "index";
  if (isManifestType(descriptor.mediaType) || descriptor.mediaType === ARTIFACT_MANIFEST) {
    return "manifest";
  }
  return "blob";
}

/** Reports whether an index entry is a build attestation rather than a runnable image. */
export function isAttestation(descriptor: Descriptor): boolean {
  if (descriptor.annotations?.["vnd.docker.reference.type"] === "attestation-manifest") return true;
  const p = descriptor.platform;
  return p !== undefined && p.os === "unknown" && p.architecture === "unknown";
}

/** Reports whether a layer may not be redistributed (a foreign layer), so is never fetched. */
export function isNonDistributable(descriptor: Descriptor): boolean {
  return descriptor.mediaType === MediaType.dockerLayerForeignGzip ||
    descriptor.mediaType.startsWith("application/vnd.oci.image.layer.nondistributable.");
}

/** Parses manifest bytes, checking the shape; throws {@link UnsupportedError} on schema 1. */
export function parseManifest(bytes: Uint8Array, descriptor: Descriptor): ImageManifest {
  const value = parseJson(bytes, descriptor);
  const where = `manifest ${shortDigest(descriptor.digest)}`;
  if (!Array.isArray(value.layers)) throw invalid(where, "has no layers array");
  return {
    ...value,
    config: checkDescriptor(value.config, `${where} config`),
    layers: value.layers.map((l: unknown, i: number) =>
      checkDescriptor(l, `${where} layers[${i}]`)
    ),
  } as ImageManifest;
}

/** Parses index bytes, checking the shape of every entry. */
export function parseIndex(bytes: Uint8Array, descriptor: Descriptor): ImageIndex {
  const value = parseJson(bytes, descriptor);
  const where = `index ${shortDigest(descriptor.digest)}`;
  if (!Array.isArray(value.manifests)) throw invalid(where, "has no manifests array");
  return {
    ...value,
    manifests: value.manifests.map((m: unknown, i: number) =>
      checkDescriptor(m, `${where} manifests[${i}]`)
    ),
  } as ImageIndex;
}

/**
 * Chooses the entries of an index to fetch: with `allPlatforms` every entry; otherwise, for each
 * wanted platform (default: the host's), the best-matching entry, never an attestation. Entries
 * without a platform rank after every matching one. Throws {@link NotFoundError} when a wanted
 * platform has no match, listing the platforms the index offers.
 */
export function selectManifests(
  index: ImageIndex,
  selection: PlatformSelection = {},
): Descriptor[] {
  if (selection.allPlatforms) return [...index.manifests];
  const wanted = selection.platforms?.length ? selection.platforms : [hostPlatform()];
  const chosen: Descriptor[] = [];
  for (const want of wanted) {
    let best: Descriptor | undefined;
    let bestRank = Infinity;
    for (const entry of index.manifests) {
      if (isAttestation(entry)) continue;
      // an entry without a platform (a nested index, an artifact) is a last resort
      const rank = entry.platform ? platformRank(want, entry.platform) : Number.MAX_SAFE_INTEGER;
      if (rank >= 0 && rank < bestRank) {
        best = entry;
        bestRank = rank;
      }
    }
    if (!best) {
      const offered = index.manifests.filter((m) => m.platform && !isAttestation(m))
        .map((m) => formatPlatform(m.platform!));
      throw new NotFoundError(
        `no manifest for platform ${formatPlatform(want)}` +
          (offered.length ? ` (the index has ${[...new Set(offered)].join(", ")})` : ""),
      );
    }
    if (!chosen.some((d) => d.digest === best!.digest)) chosen.push(best);
  }
  return chosen;
}

/**
 * The children of `descriptor` whose content is `bytes`: for an index, the manifests chosen by
 * `selection`; for a manifest, its config and layers (foreign layers go to `skipped`); for
 * anything else, nothing. Throws {@link UnsupportedError} for Docker schema 1 manifests.
 */
export function childrenOf(
  descriptor: Descriptor,
  bytes: Uint8Array,
  selection: PlatformSelection = {},
): Children {
  if (isSchema1Type(descriptor.mediaType)) throw schema1(descriptor);
  const kind = kindOf(descriptor);
  if (kind === "index") {
    const index = parseIndex(bytes, descriptor);
    const children = selectManifests(index, selection).map((d) => ({
      descriptor: d,
      kind: kindOf(d),
    }));
    return { children, skipped: [] };
  }
  if (kind !== "manifest") return { children: [], skipped: [] };
  if (descriptor.mediaType === ARTIFACT_MANIFEST) return artifactChildren(bytes, descriptor);
  const manifest = parseManifest(bytes, descriptor);
  const children: GraphNode[] = [{ descriptor: manifest.config, kind: "config" }];
  const skipped: Descriptor[] = [];
  for (const layer of manifest.layers) {
    if (isNonDistributable(layer)) skipped.push(layer);
    else children.push({ descriptor: layer, kind: "layer" });
  }
  return { children, skipped };
}

/** One node met by {@link walkImage}. */
export interface WalkEntry extends GraphNode {
  /** Whether the content is in the store (children of absent content are not visited). */
  present: boolean;
}

/**
 * Walks the graph below `roots` over content already in a store, depth first, each digest once.
 * Indexes follow `selection` (default: every entry, for garbage collection and listing);
 * absent manifests are reported but not descended into.
 */
export async function* walkImage(
  reader: Provider,
  roots: Descriptor | Descriptor[],
  selection: PlatformSelection = { allPlatforms: true },
): AsyncGenerator<WalkEntry> {
  const seen = new Set<string>();
  const stack: GraphNode[] = (Array.isArray(roots) ? roots : [roots]).map((d) => ({
    descriptor: d,
    kind: kindOf(d),
  })).reverse();
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (seen.has(node.descriptor.digest)) continue;
    seen.add(node.descriptor.digest);
    const present = await reader.has(node.descriptor.digest);
    yield { ...node, present };
    if (!present || (node.kind !== "index" && node.kind !== "manifest")) continue;
    const bytes = await reader.readBytes(node.descriptor.digest, { maxSize: MAX_MANIFEST_SIZE });
    const { children, skipped } = childrenOf(node.descriptor, bytes, selection);
    for (const layer of skipped) stack.push({ descriptor: layer, kind: "layer" });
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
}

/**
 * Finds the single-platform manifest of an image for `platform` (default: the host's) among the
 * content in the store: the descriptor itself when it is a manifest, else the best-matching
 * entry of the index whose manifest was fetched. Throws {@link NotFoundError} naming the
 * platforms that are there.
 */
export async function resolveManifest(
  reader: Provider,
  descriptor: Descriptor,
  options: { platform?: Platform } = {},
): Promise<Descriptor> {
  if (isSchema1Type(descriptor.mediaType)) throw schema1(descriptor);
  if (kindOf(descriptor) === "manifest") return descriptor;
  if (kindOf(descriptor) !== "index") {
    throw new UnsupportedError(
      `${shortDigest(descriptor.digest)} is not an image (media type ${descriptor.mediaType})`,
    );
  }
  const want = normalizePlatform(options.platform ?? hostPlatform());
  const bytes = await reader.readBytes(descriptor.digest, { maxSize: MAX_MANIFEST_SIZE });
  // a store changed on disk must not choose another manifest than the index names
  const actual = digestOf(bytes);
  if (actual !== descriptor.digest) {
    throw new DigestMismatchError(
      `cannot read index ${descriptor.digest}: the stored blob has digest ${actual}`,
    );
  }
  const index = parseIndex(bytes, descriptor);
  const present: ImageIndex = { ...index, manifests: [] };
  for (const entry of index.manifests) {
    if (await reader.has(entry.digest)) present.manifests.push(entry);
  }
  let chosen: Descriptor;
  try {
    [chosen] = selectManifests(present, { platforms: [want] });
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    throw new NotFoundError(
      `no manifest for platform ${formatPlatform(want)} in the store for index ` +
        `${shortDigest(descriptor.digest)}` + error.message.replace(/^[^(]*/, " "),
    );
  }
  return isIndexType(chosen.mediaType)
    ? await resolveManifest(reader, chosen, { platform: want })
    : chosen;
}

function artifactChildren(bytes: Uint8Array, descriptor: Descriptor): Children {
  const value = parseJson(bytes, descriptor, false); // the artifact manifest had no schemaVersion
  const where = `artifact manifest ${shortDigest(descriptor.digest)}`;
  const blobs: unknown[] = Array.isArray(value.blobs) ? value.blobs : [];
  const children = blobs.map((b, i) => ({
    descriptor: checkDescriptor(b, `${where} blobs[${i}]`),
    kind: "blob" as const,
  }));
  return { children, skipped: [] };
}

/** What {@link summarizeImage} reports about an image in the store. */
export interface ImageSummary {
  /** Bytes of the image's content present in the store (index, manifests, configs, layers). */
  size: number;
  /** The platforms whose manifest and config are present, formatted `os/arch[/variant]`. */
  platforms: string[];
}

/** Sums the stored content of an image and lists the platforms it can run on from the store. */
export async function summarizeImage(
  reader: Provider,
  descriptor: Descriptor,
): Promise<ImageSummary> {
  let size = 0;
  const platforms = new Set<string>();
  for await (const entry of walkImage(reader, descriptor)) {
    if (!entry.present) continue;
    size += entry.descriptor.size;
    if (entry.kind !== "config") continue;
    try {
      const bytes = await reader.readBytes(entry.descriptor.digest, { maxSize: MAX_MANIFEST_SIZE });
      const config = JSON.parse(new TextDecoder().decode(bytes));
      // attestation and artifact configs name no platform
      if (typeof config?.os === "string" && typeof config?.architecture === "string") {
        if (config.os !== "unknown") platforms.add(formatPlatform(config));
      }
    } catch {
      // not an image config (an artifact): it names no platform
    }
  }
  return { size, platforms: [...platforms].sort() };
}

/**
 * The descriptor of a manifest or index stored under `digest`, its media type taken from the
 * content (`mediaType`, else `manifests` means an index). Throws {@link NotFoundError} when the
 * store lacks it.
 */
export async function storedDescriptor(reader: Provider, digest: Digest): Promise<Descriptor> {
  if (!(await reader.has(digest))) throw new NotFoundError(`content ${digest} not found`);
  const bytes = await reader.readBytes(digest, { maxSize: MAX_MANIFEST_SIZE });
  const draft: Descriptor = { mediaType: MediaType.ociManifest, digest, size: bytes.length };
  const value = parseJson(bytes, draft);
  const mediaType = typeof value.mediaType === "string"
    ? value.mediaType
    : Array.isArray(value.manifests)
    ? MediaType.ociIndex
    : MediaType.ociManifest;
  return { ...draft, mediaType };
}

function schema1(descriptor: Descriptor): UnsupportedError {
  return new UnsupportedError(
    `${shortDigest(descriptor.digest)} is a Docker schema 1 manifest, which dist does not support`,
  );
}

function invalid(where: string, problem: string): CorruptContentError {
  return new CorruptContentError(`invalid ${where}: ${problem}`);
}

function parseJson(
  bytes: Uint8Array,
  descriptor: Descriptor,
  checkSchema = true,
): Record<string, unknown> {
  const where = `${kindOf(descriptor)} ${shortDigest(descriptor.digest)}`;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw invalid(where, "is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(where, "is not a JSON object");
  }
  const object = value as Record<string, unknown>;
  if (object.schemaVersion === 1) throw schema1(descriptor);
  if (checkSchema && object.schemaVersion !== 2) {
    throw new UnsupportedError(
      `${where} has schemaVersion ${JSON.stringify(object.schemaVersion)}, dist reads 2`,
    );
  }
  return object;
}

/** Validates a descriptor from remote content before anything uses its digest or size. */
/**
 * Checks that `value` is a descriptor (media type, digest, size; a platform with os and
 * architecture; annotations of strings) and returns it; {@link CorruptContentError} naming
 * `where` otherwise.
 */
export function checkDescriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== "object" || value === null) throw invalid(where, "is not a descriptor");
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== "string" || d.mediaType === "") {
    throw invalid(where, "has no mediaType");
  }
  if (typeof d.digest !== "string" || !isDigest(d.digest)) {
    throw invalid(where, `has an invalid digest ${JSON.stringify(d.digest)}`);
  }
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw invalid(where, `has an invalid size ${JSON.stringify(d.size)}`);
  }
  const p = d.platform as Record<string, unknown> | undefined;
  if (p !== undefined && (typeof p?.os !== "string" || typeof p?.architecture !== "string")) {
    throw invalid(where, "has a platform without os and architecture");
  }
  const a = d.annotations;
  if (
    a !== undefined &&
    (typeof a !== "object" || a === null || Object.values(a).some((v) => typeof v !== "string"))
  ) {
    throw invalid(where, "has annotations that are not strings");
  }
  return value as Descriptor;
}
