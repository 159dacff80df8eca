/**
 * How requests leave the process: `fetch` with the system CAs (plus `--ca-file`), or, with
 * `--insecure`, `node:https` without certificate verification (Deno's `fetch` cannot skip it).
 */
import { InvalidArgumentError } from "../content/errors.ts";
import { readEnv } from "../content/internal/mod.ts";

/** Sends one request, never following redirects. */
export type Send = (url: URL, init: RequestInit) => Promise<Response>;

/** Transport settings. */
export interface TransportOptions {
  /** A PEM file of extra CA certificates to trust. */
  caFile?: string;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
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
  if (options.insecure) {
    return { send: insecureSend, close() {} };
  }
  let client: Deno.HttpClient | undefined;
  let clientReady: Promise<Deno.HttpClient | undefined> | undefined;
  const httpsClient = () => {
    clientReady ??= (async () => {
      const caCerts = await systemCertificates();
      if (options.caFile) {
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
    async send(url, init) {
      if (url.protocol !== "https:") return await fetch(url, { ...init, redirect: "manual" });
      const client = await httpsClient();
      return await fetch(url, { ...init, redirect: "manual", ...(client ? { client } : {}) });
    },
    close() {
      client?.close();
    },
  };
}

/**
 * The system CA bundle (`$SSL_CERT_FILE`, else the distribution's bundle), added to Deno's
 * built-in roots; empty when none can be read.
 */
async function systemCertificates(): Promise<string[]> {
  const explicit = readEnv("SSL_CERT_FILE");
  for (const path of explicit ? [explicit] : SYSTEM_BUNDLES) {
    try {
      return [await Deno.readTextFile(path)];
    } catch {
      // missing or not readable (e.g. no --allow-read for it): try the next, else built-ins only
    }
  }
  return [];
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
      resolve(
        new Response(body, { status, statusText: reply.statusMessage, headers: replyHeaders }),
      );
    });
    request.on("error", (error) => reject(new TypeError(error.message, { cause: error })));
    const body = init.body;
    if (body instanceof URLSearchParams) {
      request.setHeader("content-type", "application/x-www-form-urlencoded");
      request.end(body.toString());
    } else if (typeof body === "string" || body instanceof Uint8Array) {
      request.end(body);
    } else {
      request.end();
    }
  });
}
