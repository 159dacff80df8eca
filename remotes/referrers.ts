/**
 * OCI 1.1 referrers: the artifacts (signatures, SBOMs, attestations) whose `subject` is a
 * manifest. Found through the referrers API (`GET /v2/<name>/referrers/<digest>`) where the
 * registry has it, else through the tag schema fallback: an index tagged `sha256-<hex>` that lists
 * them (distribution 2.8 has only the fallback).
 *
 * @module
 */
import { type Descriptor, MediaType } from "../content/descriptor.ts";
import { type Digest, digestAlgorithm, digestHex, digestOf } from "../content/digest.ts";
import { MAX_MANIFEST_SIZE, parseIndex } from "../content/images/graph.ts";
import type { Reference } from "../content/reference.ts";
import type { RegistryClient } from "./client.ts";
import { readCapped } from "./_body.ts";
import { RegistryError } from "./errors.ts";

/** The tag the referrers fallback keeps the referrers of `digest` under: `sha256-<hex>`. */
export function referrersTag(digest: Digest): string {
  return `${digestAlgorithm(digest)}-${digestHex(digest)}`;
}

/** The referrers of `digest` in the repository of `ref`: the API's answer, else the fallback's. */
export async function listReferrers(
  client: RegistryClient,
  ref: Reference,
  digest: Digest,
  signal?: AbortSignal,
): Promise<Descriptor[]> {
  return (await apiReferrers(client, ref, digest, signal)) ??
    (await fallbackIndex(client, ref, digest, signal)) ?? [];
}

/**
 * Records `referrer` as a referrer of `digest` in the fallback index of the repository of `ref`,
 * for registries without the referrers API: the index tagged `sha256-<hex>` gets it added.
 */
export async function addFallbackReferrer(
  client: RegistryClient,
  ref: Reference,
  digest: Digest,
  referrer: Descriptor,
  signal?: AbortSignal,
): Promise<void> {
  const manifests = (await fallbackIndex(client, ref, digest, signal)) ?? [];
  if (manifests.some((m) => m.digest === referrer.digest)) return;
  const body = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [...manifests, referrer],
  }));
  const reply = await client.request(ref, {
    method: "PUT",
    path: `manifests/${referrersTag(digest)}`,
    headers: { "content-type": MediaType.ociIndex },
    body: () => body,
    scope: `repository:${ref.repository}:pull,push`,
    action: `record a referrer of ${digest}`,
    signal,
  });
  await reply.body?.cancel();
}

/** Whether the registry of `ref` answers the referrers API. */
export async function hasReferrersApi(
  client: RegistryClient,
  ref: Reference,
  digest: Digest,
  signal?: AbortSignal,
): Promise<boolean> {
  return (await apiReferrers(client, ref, digest, signal)) !== undefined;
}

/** The referrers API's answer, or undefined where the registry has no such API. */
async function apiReferrers(
  client: RegistryClient,
  ref: Reference,
  digest: Digest,
  signal?: AbortSignal,
): Promise<Descriptor[] | undefined> {
  const reply = await client.request(ref, {
    method: "GET",
    path: `referrers/${digest}`,
    headers: { accept: MediaType.ociIndex },
    action: `list the referrers of ${digest}`,
    pass: [400, 404, 405],
    signal,
  });
  if (!reply.ok || !(reply.headers.get("content-type") ?? "").startsWith(MediaType.ociIndex)) {
    await reply.body?.cancel();
    return undefined;
  }
  return await indexEntries(reply, `referrers of ${digest}`);
}

/** The entries of the fallback index of `digest`, or undefined when there is none. */
async function fallbackIndex(
  client: RegistryClient,
  ref: Reference,
  digest: Digest,
  signal?: AbortSignal,
): Promise<Descriptor[] | undefined> {
  const reply = await client.request(ref, {
    method: "GET",
    path: `manifests/${referrersTag(digest)}`,
    headers: { accept: MediaType.ociIndex },
    action: `list the referrers of ${digest}`,
    pass: [404],
    signal,
  });
  if (!reply.ok) {
    await reply.body?.cancel();
    return undefined;
  }
  return await indexEntries(reply, `referrers of ${digest}`);
}

async function indexEntries(reply: Response, what: string): Promise<Descriptor[]> {
  if (!reply.body) return [];
  const bytes = await readCapped(
    reply.body,
    MAX_MANIFEST_SIZE,
    () => new RegistryError(`cannot read the ${what}: over ${MAX_MANIFEST_SIZE} bytes`),
  );
  const descriptor = { mediaType: MediaType.ociIndex, digest: digestOf(bytes), size: bytes.length };
  return parseIndex(bytes, descriptor).manifests;
}
