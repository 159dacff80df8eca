/**
 * One object (manifest, index, config or layer) from a registry, raw and verified: what the
 * `dist fetch-object` command streams to stdout.
 *
 * @example
 * ```ts ignore
 * import { RegistryClient } from "./client.ts";
 * import { fetchObject } from "./fetch_object.ts";
 * import { parseReference } from "../content/reference.ts";
 * const client = new RegistryClient();
 * await fetchObject(client, parseReference("localhost:5000/app@sha256:…"), {
 *   write: (chunk) => void Deno.stdout.writeSync(chunk),
 * });
 * client.close();
 * ```
 *
 * @module
 */
import {
  type Descriptor,
  isIndexType,
  isManifestType,
  isSchema1Type,
} from "../content/descriptor.ts";
import { Verifier } from "../content/verify.ts";
import { ChunkReader } from "../content/internal/mod.ts";
import type { RegistryClient } from "./client.ts";
import { formatReference, type Reference } from "../content/reference.ts";

/** Options of {@link fetchObject}. */
export interface FetchObjectOptions {
  /** The object's media type if known (the seed's `mediatype:` hint). */
  mediaType?: string;
  /** The object's size if known (a `size:` hint). */
  size?: number;
  /**
   * Receives the bytes in order. A chunk is only valid during the call (its buffer is reused);
   * a returned promise is awaited before the next chunk.
   */
  write(chunk: Uint8Array): void | Promise<void>;
  /** Aborts the requests. */
  signal?: AbortSignal;
}

/**
 * Resolves `ref` (a tag, or a digest of a manifest or a blob) and hands its bytes to `write`,
 * verifying size and digest as they pass. Manifests are fetched whole (capped, schema 1 refused);
 * blobs are streamed. A mismatch throws after the last byte was written, so callers that must not
 * keep bad bytes (a store ingest) verify on their side too. Returns the descriptor.
 */
export async function fetchObject(
  client: RegistryClient,
  ref: Reference,
  options: FetchObjectOptions,
): Promise<Descriptor> {
  const { signal } = options;
  const desc = await client.resolveObject(ref, {
    mediaType: options.mediaType,
    size: options.size,
    signal,
  });
  if (
    isManifestType(desc.mediaType) || isIndexType(desc.mediaType) || isSchema1Type(desc.mediaType)
  ) {
    await options.write(await client.fetchManifest(ref, desc, { signal }));
    return desc;
  }
  const { stream } = await client.fetch(ref, desc, { signal });
  const verifier = new Verifier({ ...desc, label: formatReference(ref) });
  const chunks = new ChunkReader(stream);
  try {
    for (let chunk; (chunk = await chunks.read()) !== undefined;) {
      verifier.update(chunk);
      await options.write(chunk); // the chunk's buffer is reused by the next read
    }
  } catch (error) {
    await chunks.cancel(error);
    throw error;
  }
  await verifier.finish();
  return desc;
}
