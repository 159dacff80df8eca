/**
 * Fetching a whole image from a registry into the store: resolve the reference, then the one
 * graph copy ({@link copyImage}) from the registry into the store for the chosen platforms (a
 * bounded number of blobs at once, resuming partial ingests), then record the image in
 * `index.json`.
 *
 * Ingests are keyed by digest (`layer-sha256:…`, `manifest-sha256:…`, `config-sha256:…`), so
 * concurrent processes fetching the same image share one download per blob: the second waits on
 * the first's lock and then finds the blob committed.
 *
 * @example
 * ```ts ignore
 * import { Store } from "../content/store/store.ts";
 * import { RegistryClient } from "./client.ts";
 * import { fetchImage } from "./copy.ts";
 * const store = await Store.open("/tmp/dist-store");
 * const result = await fetchImage(new RegistryClient(), store, "localhost:5000/app:v1", {
 *   onProgress: (event) => console.log(event.status, event.digest),
 * });
 * console.log(result.name, result.descriptor.digest);
 * ```
 *
 * @module
 */
import {
  type Descriptor,
  isIndexType,
  isManifestType,
  type Platform,
} from "../content/descriptor.ts";
import { acquireLease } from "../content/images/lease.ts";
import {
  copyImage,
  type CopySource,
  DEFAULT_MAX_CONCURRENCY,
  type ProgressEvent,
  StoreTarget,
} from "../content/images/copy.ts";
import { kindOf } from "../content/images/graph.ts";
import { Images } from "../content/images/records.ts";
import type { Store } from "../content/store/store.ts";
import { formatReference, parseReference, type Reference } from "../content/reference.ts";
import type { RegistryClient } from "./client.ts";
import { type Mirror, mirroredSource, resolveThrough } from "./mirrors.ts";

/** The default number of blobs downloaded at once (see {@link DEFAULT_MAX_CONCURRENCY}). */
export const DEFAULT_MAX_CONCURRENT_DOWNLOADS: number = DEFAULT_MAX_CONCURRENCY;

/** Options of {@link fetchImage}. */
export interface FetchImageOptions {
  /** Wanted platforms; default: the host's. Each gets its best-matching manifest. */
  platforms?: Platform[];
  /** Fetch every manifest of an index, attestations included. */
  allPlatforms?: boolean;
  /**
   * Blobs downloaded at once (default {@link DEFAULT_MAX_CONCURRENT_DOWNLOADS}); one over 16 MiB
   * counts as two.
   */
  maxConcurrentDownloads?: number;
  /** Stops the fetch; partial ingests stay behind to resume, never a partial blob. */
  signal?: AbortSignal;
  /** Receives progress events. */
  onProgress?: (event: ProgressEvent) => void;
  /** Record the image in `index.json` under its full reference (default true). */
  record?: boolean;
  /** Registry hosts tried before the upstream, in order (see {@link mirrorsOf}). */
  mirrors?: Mirror[];
}

/** What {@link fetchImage} fetched. */
export interface FetchImageResult {
  /** The full reference, the record's name. */
  name: string;
  /** The top descriptor (index or manifest). */
  descriptor: Descriptor;
  /** The single-platform manifests that were fetched. */
  manifests: Descriptor[];
  /** Non-distributable layers that were not fetched. */
  skipped: Descriptor[];
  /** Bytes downloaded by this run. */
  downloaded: number;
}

/**
 * Fetches the image `reference` from the registry into `store` for the chosen platforms and
 * records it. Blobs already in the store are not fetched again; partial ingests are continued.
 */
export async function fetchImage(
  client: RegistryClient,
  store: Store,
  reference: string | Reference,
  options: FetchImageOptions = {},
): Promise<FetchImageResult> {
  const ref = typeof reference === "string" ? parseReference(reference) : reference;
  const name = formatReference(ref);
  // garbage collection must not sweep blobs committed before the record points at them
  const lease = await acquireLease(store.root);
  try {
    const mirrors = options.mirrors ?? [];
    // A name the store has no record of is fetched whole next: its manifest comes along with
    // resolving, one request instead of two. A known name is checked with a HEAD, which moves
    // nothing when the image has not changed (and Docker Hub does not count it as a pull).
    const known = await new Images(store.root).get(name).then(() => true, () => false);
    const { descriptor, bytes } = await resolveThrough(client, ref, mirrors, {
      signal: options.signal,
      withContent: !known,
    });
    lease.protect(descriptor.digest);
    const event = (status: "resolved" | "recorded") =>
      options.onProgress?.({
        status,
        name,
        digest: descriptor.digest,
        mediaType: descriptor.mediaType,
        kind: kindOf(descriptor),
        size: descriptor.size,
      });
    event("resolved");
    const source = mirrors.length
      ? mirroredSource(client, ref, mirrors)
      : registrySource(client, ref);
    const { manifests, skipped, copied } = await copyImage(
      bytes ? holding(source, descriptor, bytes) : source,
      new StoreTarget(store, (digests) => lease.protectAll(digests)),
      [descriptor],
      {
        name,
        action: "fetch",
        platforms: options.platforms,
        allPlatforms: options.allPlatforms,
        maxConcurrency: options.maxConcurrentDownloads,
        signal: options.signal,
        onProgress: options.onProgress,
      },
    );
    if (options.record !== false) {
      await new Images(store.root).put(name, descriptor);
      event("recorded");
    }
    return { name, descriptor, manifests, skipped, downloaded: copied };
  } finally {
    await lease.release();
  }
}

/**
 * `source`, answering for the manifest or index `root` with its bytes already in hand (anything
 * else, schema 1 included, is read, and refused, as usual).
 */
function holding(source: CopySource, root: Descriptor, bytes: Uint8Array<ArrayBuffer>): CopySource {
  const held = (d: Descriptor) =>
    d.digest === root.digest && (isManifestType(d.mediaType) || isIndexType(d.mediaType));
  return {
    ...source,
    readManifest: (d, options) =>
      held(d) ? Promise.resolve(bytes) : source.readManifest(d, options),
  };
}

/** The repository `ref` names on a registry, as a copy source. */
export function registrySource(client: RegistryClient, ref: Reference): CopySource {
  return {
    readManifest: (descriptor, options) => client.fetchManifest(ref, descriptor, options),
    open: (descriptor, options) => client.fetch(ref, descriptor, options),
  };
}
