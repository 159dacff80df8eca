/**
 * How requests leave the process: `fetch` with the system CAs (plus `--ca-file`); with
 * `--insecure`, `node:https` without certificate verification (Deno's `fetch` cannot skip it);
 * GET and HEAD to a loopback registry over plain HTTP on connections of our own (_http1.ts).
 */
import { InvalidArgumentError } from "../content/errors.ts";
import { IdleWatch, permitted, readEnv, requirePermission } from "../content/internal/mod.ts";
import { Http1Client } from "./_http1.ts";

/** Sends one request, never following redirects. */
export type Send = (url: URL, init: RequestInit) => Promise<Response>;

/** Transport settings. */
export interface TransportOptions {
  /** A PEM file of extra CA certificates to trust. */
  caFile?: string;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
  /** How long to wait for a reply's headers, connecting included (default 30 s). */
  timeoutMs?: number;
}

/** The default first-byte and idle timeouts: a loaded registry answers well within them. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** A registry that went quiet: which timeout fired, and after how long. */
export class TimeoutError extends Error {}

/** The words of a timeout error: `no response from HOST within 30s (first-byte timeout)`. */
export function timeoutMessage(kind: "first-byte" | "idle", host: string, ms: number): string {
  const seconds = `${Math.round(ms / 100) / 10}s`;
  return kind === "first-byte"
    ? `no response from ${host} within ${seconds} (first-byte timeout)`
    : `no data from ${host} for ${seconds} (idle timeout)`;
}

/** A way to send requests, and to release what it holds. */
export interface Transport {
  send: Send;
  close(): void;
}

// Where Linux distributions keep the system CA bundle (the list Go's crypto/x509 uses).
const SYSTEM_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/ca-bundle.pem",
  "/etc/pki/tls/cacert.pem",
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
  "/etc/ssl/cert.pem",
];

/** Creates a transport; the HTTPS client (and its CA list) is built on the first HTTPS request. */
export function createTransport(options: TransportOptions): Transport {
  const timed = (send: Send): Send => withTimeout(send, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  if (options.insecure) {
    return {
      send: timed((url, init) => {
        requireNet(url);
        return insecureSend(url, init);
      }),
      close() {},
    };
  }
  let client: Deno.HttpClient | undefined;
  let http1: Http1Client | undefined;
  let clientReady: Promise<Deno.HttpClient | undefined> | undefined;
  const httpsClient = () => {
    clientReady ??= (async () => {
      const caCerts = await systemCertificates();
      if (options.caFile) {
        requirePermission(
          { name: "read", path: options.caFile },
          `read access to ${JSON.stringify(options.caFile)}`,
          "--allow-read",
        );
        try {
          caCerts.push(await Deno.readTextFile(options.caFile));
        } catch (error) {
          throw new InvalidArgumentError(
            `cannot read CA file ${options.caFile}: ${(error as Error).message}`,
          );
        }
      }
      if (caCerts.length === 0) return undefined;
      client = Deno.createHttpClient({ caCerts });
      return client;
    })();
    return clientReady;
  };
  return {
    send: timed(async (url, init) => {
      requireNet(url);
      if (url.protocol !== "https:") {
        if (Http1Client.handles(url, init)) {
          return await (http1 ??= new Http1Client()).send(url, init);
        }
        return await fetch(url, { ...init, redirect: "manual" });
      }
      const client = await httpsClient();
      return await fetch(url, { ...init, redirect: "manual", ...(client ? { client } : {}) });
    }),
    close() {
      client?.close();
      http1?.close();
    },
  };
}

/**
 * Network access to `url`'s host and port, checked before the request: a host the registry sends
 * the client to (a token realm, a blob CDN) that `--allow-net` does not cover would otherwise
 * stop the command at Deno's prompt on a terminal. Throws `Deno.errors.NotCapable`.
 */
function requireNet(url: URL): void {
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const host = `${url.hostname}:${port}`;
  requirePermission({ name: "net", host }, `net access to ${JSON.stringify(host)}`, "--allow-net");
}

/**
 * The system CA bundle (`$SSL_CERT_FILE`, else the distribution's bundle), added to Deno's
 * built-in roots; empty when none can be read. A bundle `--allow-read` does not cover is passed
 * over (Deno's built-in roots remain), never asked for at a prompt.
 */
async function systemCertificates(): Promise<string[]> {
  const explicit = readEnv("SSL_CERT_FILE");
  for (const path of explicit ? [explicit] : SYSTEM_BUNDLES) {
    if (!permitted({ name: "read", path })) continue;
    try {
      return [await Deno.readTextFile(path)];
    } catch {
      // missing or not readable (e.g. no --allow-read for it): try the next, else built-ins only
    }
  }
  return [];
}

/** `send` that gives up with a {@link TimeoutError} when no reply has come after `ms`. */
function withTimeout(send: Send, ms: number): Send {
  return async (url, init) => {
    const timer = new AbortController();
    const watch = new IdleWatch(
      ms,
      () => timer.abort(new TimeoutError(timeoutMessage("first-byte", url.host, ms))),
    );
    // the wait starts again with every piece of a request body sent: an upload's first byte
    // back can only come once the body is out, however long that takes
    const arm = () => watch.begin();
    arm();
    const signal = init.signal ? AbortSignal.any([init.signal, timer.signal]) : timer.signal;
    try {
      return await send(url, { ...init, body: progressing(init.body, arm), signal });
    } catch (error) {
      if (timer.signal.aborted && !init.signal?.aborted) throw timer.signal.reason;
      throw error;
    } finally {
      watch.stop();
    }
  };
}

/** A request body that calls `onPiece` as each piece of it goes (large byte bodies in 1 MiB pieces). */
function progressing(
  body: BodyInit | null | undefined,
  onPiece: () => void,
): BodyInit | null | undefined {
  let stream: ReadableStream<Uint8Array>;
  if (body instanceof ReadableStream) stream = body;
  else if (body instanceof Uint8Array && body.length > 1 << 20) {
    const bytes = body;
    let at = 0;
    stream = new ReadableStream({
      pull(controller) {
        if (at >= bytes.length) return controller.close();
        controller.enqueue(bytes.subarray(at, at + (1 << 20)));
        at += 1 << 20;
      },
    });
  } else return body;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(piece, controller) {
        onPiece();
        controller.enqueue(piece);
      },
    }),
  );
}

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * Sends a request over `node:http(s)` without verifying the server's certificate. The node
 * modules load on first use: only `--insecure` needs them, and every command pays for imports.
 */
async function insecureSend(url: URL, init: RequestInit): Promise<Response> {
  const [{ request: httpRequest }, { request: httpsRequest }, { Readable }] = await Promise.all([
    import("node:http"),
    import("node:https"),
    import("node:stream"),
  ]);
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => (headers[name] = value));
    const method = init.method ?? "GET";
    const request = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, {
      method,
      headers,
      rejectUnauthorized: false,
      signal: init.signal ?? undefined,
    }, (reply) => {
      const replyHeaders = new Headers();
      for (const [name, value] of Object.entries(reply.headers)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) replyHeaders.append(name, v);
      }
      const status = reply.statusCode ?? 0;
      if (status < 200 || status > 599) {
        reply.destroy();
        return reject(new TypeError(`unexpected HTTP status ${status}`));
      }
      const body = method === "HEAD" || NULL_BODY_STATUSES.has(status)
        ? null
        : Readable.toWeb(reply) as unknown as ReadableStream<Uint8Array>;
      if (body === null) reply.resume();
      const response = new Response(body, {
        status,
        statusText: reply.statusMessage,
        headers: replyHeaders,
      });
      // as fetch's replies have it: relative Locations resolve against it
      Object.defineProperty(response, "url", { value: url.href });
      resolve(response);
    });
    request.on("error", (error) => reject(new TypeError(error.message, { cause: error })));
    const body = init.body;
    if (body instanceof URLSearchParams) {
      request.setHeader("content-type", "application/x-www-form-urlencoded");
      request.end(body.toString());
    } else if (typeof body === "string" || body instanceof Uint8Array) {
      request.end(body);
    } else if (body instanceof ReadableStream) {
      // an upload: streamed, waiting for the socket to drain when it is full
      (async () => {
        for await (const piece of body as ReadableStream<Uint8Array>) {
          if (!request.write(piece)) await new Promise((drained) => request.once("drain", drained));
        }
        request.end();
      })().catch((error) => request.destroy(error));
    } else {
      request.end();
    }
  });
}
