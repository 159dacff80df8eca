/**
 * Pulling through mirrors: each blob and manifest is asked of the mirrors in order and then of
 * the upstream, the first that answers serves it; a mirror that is down, refuses or lacks the
 * content costs one failed request, not the pull. Tags are resolved by mirrors that may
 * (`resolve`), as containerd does.
 *
 * @module
 */
import type { Descriptor } from "../content/descriptor.ts";
import type { CopySource } from "../content/images/copy.ts";
import type { Reference } from "../content/reference.ts";
import { RegistryClient, type RegistryClientOptions } from "./client.ts";
import { RegistryError } from "./errors.ts";
import type { HostCapability, RegistryHost } from "./hosts.ts";

/** A registry host to pull from, with the client that talks to it. */
export interface Mirror {
  /** `host[:port]`, the registry part of references to it. */
  host: string;
  /** The client for that host (its TLS settings and API root). */
  client: RegistryClient;
  /** What it is asked for (default: pull and resolve). */
  capabilities?: HostCapability[];
}

/** Clients for the mirrors among `hosts` (those that are not `upstream`), sharing `options`. */
export function mirrorsOf(
  hosts: RegistryHost[],
  upstream: string,
  options: RegistryClientOptions = {},
): Mirror[] {
  return hosts.filter((h) => h.host !== upstream).map((h) => ({
    host: h.host,
    capabilities: h.capabilities,
    client: new RegistryClient({
      // a mirror that fails is passed over for the upstream: it gets one more try, not five
      retry: { attempts: 2, baseDelayMs: 100 },
      ...options,
      plainHttp: h.scheme === "http",
      insecure: h.skipVerify || options.insecure,
      caFile: h.ca ?? options.caFile,
      apiRoot: h.apiRoot,
    }),
  }));
}

/** The endpoints to try for `ref`: the mirrors that may `capability`, then the upstream. */
function endpoints(
  client: RegistryClient,
  ref: Reference,
  mirrors: Mirror[],
  capability: HostCapability,
): { client: RegistryClient; ref: Reference; host: string }[] {
  const wanted = mirrors.filter((m) =>
    (m.capabilities ?? ["pull", "resolve"]).includes(capability)
  );
  return [
    ...wanted.map((m) => ({ client: m.client, ref: { ...ref, registry: m.host }, host: m.host })),
    { client, ref, host: ref.registry },
  ];
}

/**
 * Runs `attempt` on each endpoint in turn until one succeeds; throws the upstream's failure. A
 * mirror that could not be reached at all goes into `down` and is passed over from then on.
 */
async function firstOf<T>(
  list: { client: RegistryClient; ref: Reference; host: string }[],
  attempt: (client: RegistryClient, ref: Reference, host: string) => Promise<T>,
  signal?: AbortSignal,
  down: Set<string> = new Set(),
): Promise<T> {
  const last = list.length - 1;
  for (const [i, endpoint] of list.entries()) {
    if (i < last && down.has(endpoint.host)) continue;
    try {
      return await attempt(endpoint.client, endpoint.ref, endpoint.host);
    } catch (error) {
      if (signal?.aborted || i === last) throw error;
      if (error instanceof RegistryError && error.status === undefined) down.add(endpoint.host);
    }
  }
  throw new Error("unreachable: no endpoint");
}

/**
 * Resolves `ref` through the mirrors that may resolve, then the upstream; `withContent` has the
 * content come along (see {@link RegistryClient.resolveWithContent}).
 */
export function resolveThrough(
  client: RegistryClient,
  ref: Reference,
  mirrors: Mirror[],
  options: { signal?: AbortSignal; withContent?: boolean } = {},
): Promise<{ descriptor: Descriptor; bytes?: Uint8Array<ArrayBuffer> }> {
  const { signal } = options;
  return firstOf(
    endpoints(client, ref, mirrors, "resolve"),
    async (c, r) =>
      options.withContent
        ? await c.resolveWithContent(r, { signal })
        : { descriptor: await c.resolve(r, { signal }) },
    signal,
  );
}

/** The repository of `ref` as a copy source that reads through `mirrors` first. */
export function mirroredSource(
  client: RegistryClient,
  ref: Reference,
  mirrors: Mirror[],
): CopySource {
  const list = endpoints(client, ref, mirrors, "pull");
  const down = new Set<string>();
  return {
    readManifest: (descriptor, options) =>
      firstOf(list, (c, r) => c.fetchManifest(r, descriptor, options), options.signal, down),
    open: (descriptor, options) =>
      firstOf(
        list,
        async (c, r, host) => ({ ...(await c.fetch(r, descriptor, options)), host }),
        options.signal,
        down,
      ),
  };
}
