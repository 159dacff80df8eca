/**
 * `dist serve`: the store as an OCI distribution registry, over `Deno.serve`, while the other
 * commands keep working on it (uploads are ingests, records are `index.json`, deletes follow the
 * in-use rules and leases of `dist delete`).
 *
 * @example
 * ```ts ignore
 * import { Store } from "../../content/store/store.ts";
 * import { serveStore } from "./server.ts";
 * const server = await serveStore(await Store.open("/var/lib/dist"), {
 *   hostname: "127.0.0.1",
 *   port: 5000,
 * });
 * await server.finished;
 * ```
 *
 * @module
 */
import { isLoopbackHost } from "../../content/reference.ts";
import { InvalidArgumentError } from "../../content/errors.ts";
import { acquireLease } from "../../content/images/lease.ts";
import type { Store } from "../../content/store/store.ts";
import { Htpasswd } from "./auth.ts";
import { ServeContext, type ServeSettings } from "./context.ts";
import { API_HEADERS, errorResponse, ServeError } from "./errors.ts";
import { catalog, getBlob, getManifest, listReferrers, listTags } from "./pull.ts";
import {
  cancelUpload,
  deleteBlob,
  deleteManifest,
  getUpload,
  patchUpload,
  putManifest,
  putUpload,
  startUpload,
} from "./push.ts";

/** One line of the access log. */
export interface AccessEntry {
  /** The request's method. */
  method: string;
  /** The request's path (no query: upload states and digests stay out of logs). */
  path: string;
  /** The reply's status. */
  status: number;
  /** Response body bytes, when known from `Content-Length`. */
  bytes: number;
  /** Milliseconds until the reply's headers. */
  ms: number;
}

/** Options of {@link serveStore}. */
export interface ServeOptions extends Partial<ServeSettings> {
  /** Address to listen on (default 127.0.0.1); ignored with `path`. */
  hostname?: string;
  /** Port (default 5000; 0 picks a free one). */
  port?: number;
  /** A unix socket path to listen on instead. */
  path?: string;
  /** TLS: the certificate chain, PEM. */
  cert?: string;
  /** TLS: the private key, PEM. */
  key?: string;
  /** An htpasswd file of bcrypt hashes: Basic authentication for every request. */
  htpasswd?: string;
  /** Allow credentials over plain HTTP on a non-loopback address. */
  insecure?: boolean;
  /** Receives one entry a request. */
  onAccess?: (entry: AccessEntry) => void;
  /** Called once listening, with the address. */
  onListen?: (address: string) => void;
  /** Stops the server. */
  signal?: AbortSignal;
}

const NAME = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*)*";
const ROUTES: [string, RegExp][] = [
  ["base", /^\/v2\/?$/],
  ["catalog", /^\/v2\/_catalog$/],
  ["uploads", new RegExp(`^/v2/(${NAME})/blobs/uploads/?$`)],
  ["upload", new RegExp(`^/v2/(${NAME})/blobs/uploads/([^/]+)$`)],
  ["blob", new RegExp(`^/v2/(${NAME})/blobs/([^/]+)$`)],
  ["manifest", new RegExp(`^/v2/(${NAME})/manifests/([^/]+)$`)],
  ["tags", new RegExp(`^/v2/(${NAME})/tags/list$`)],
  ["referrers", new RegExp(`^/v2/(${NAME})/referrers/([^/]+)$`)],
];

/** Answers one request of the distribution API from `ctx`. */
async function route(ctx: ServeContext, req: Request): Promise<Response> {
  const path = new URL(req.url).pathname;
  const method = req.method;
  for (const [name, pattern] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    const [, repo, ref] = match;
    const is = (...methods: string[]) => methods.includes(method);
    switch (name) {
      case "base":
        if (is("GET", "HEAD")) return Response.json({}, { headers: API_HEADERS });
        break;
      case "catalog":
        if (is("GET")) return await catalog(ctx, req);
        break;
      case "uploads":
        if (is("POST")) return await startUpload(ctx, req, repo);
        break;
      case "upload":
        if (is("GET")) return await getUpload(ctx, repo, ref);
        if (is("PATCH")) return await patchUpload(ctx, req, repo, ref);
        if (is("PUT")) return await putUpload(ctx, req, repo, ref);
        if (is("DELETE")) return await cancelUpload(ctx, ref);
        break;
      case "blob":
        if (is("GET", "HEAD")) return await getBlob(ctx, req, ref);
        if (is("DELETE")) return await deleteBlob(ctx, ref);
        break;
      case "manifest":
        if (is("GET", "HEAD")) return await getManifest(ctx, req, repo, ref);
        if (is("PUT")) return await putManifest(ctx, req, repo, ref);
        if (is("DELETE")) return await deleteManifest(ctx, repo, ref);
        break;
      case "tags":
        if (is("GET")) return await listTags(ctx, req, repo);
        break;
      case "referrers":
        if (is("GET")) return await listReferrers(ctx, req, ref);
        break;
    }
    await req.body?.cancel();
    throw new ServeError(405, "UNSUPPORTED", `${method} is not supported on ${path}`);
  }
  await req.body?.cancel();
  if (path.startsWith("/v2/")) {
    throw new ServeError(404, "NAME_INVALID", `no such endpoint or invalid name in ${path}`);
  }
  throw new ServeError(404, "UNSUPPORTED", `not a registry endpoint: ${path}`);
}

/**
 * Serves `store` as a registry until `signal` aborts. Read-only unless `allowPush`; no deletes
 * unless `allowDelete`. Refuses to take credentials over plain HTTP on a non-loopback address
 * unless `insecure`.
 */
export async function serveStore(
  store: Store,
  options: ServeOptions = {},
): Promise<Deno.HttpServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const tls = options.cert !== undefined && options.key !== undefined;
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new InvalidArgumentError("TLS needs both a certificate and a key");
  }
  const exposed = options.path === undefined && !isLoopbackHost(hostname);
  if (options.htpasswd && !tls && exposed && !options.insecure) {
    throw new InvalidArgumentError(
      `refusing to take passwords over plain HTTP on ${hostname}: give --cert and --key, or --insecure`,
    );
  }
  const auth = options.htpasswd ? await Htpasswd.load(options.htpasswd) : undefined;
  // uploads are kept from `dist prune` until their manifests come, as long as the server runs
  const lease = options.allowPush ? await acquireLease(store.root, { blocksGc: false }) : undefined;
  const ctx = new ServeContext(store, {
    allowPush: options.allowPush ?? false,
    allowDelete: options.allowDelete ?? false,
  }, lease);
  const handler = async (req: Request): Promise<Response> => {
    const started = performance.now();
    let response: Response;
    try {
      auth?.check(req.headers.get("authorization"));
      response = await route(ctx, req);
    } catch (error) {
      await req.body?.cancel().catch(() => {});
      // an unexpected failure is a 500 with its message, never a crash of the server
      const failure = error instanceof ServeError
        ? error
        : new ServeError(500, "UNSUPPORTED", (error as Error).message ?? String(error));
      response = errorResponse(failure, req.method);
    }
    options.onAccess?.({
      method: req.method,
      path: new URL(req.url).pathname,
      status: response.status,
      bytes: Number(response.headers.get("content-length") ?? 0),
      ms: Math.round((performance.now() - started) * 10) / 10,
    });
    return response;
  };
  const onListen = (address: Deno.NetAddr | Deno.UnixAddr) => {
    const where = "path" in address
      ? `unix:${address.path}`
      : `${tls ? "https" : "http"}://${address.hostname}:${address.port}`;
    options.onListen?.(where);
  };
  const common = { signal: options.signal, onListen };
  let server: Deno.HttpServer;
  try {
    server = options.path !== undefined
      ? Deno.serve({ ...common, path: options.path }, handler)
      : Deno.serve({
        ...common,
        hostname,
        port: options.port ?? 5000,
        ...(tls ? { cert: options.cert!, key: options.key! } : {}),
      }, handler);
  } catch (error) {
    await lease?.release();
    throw error;
  }
  if (lease) server.finished.then(() => lease.release(), () => lease.release());
  return server;
}
