/**
 * A fault-injecting HTTP proxy for tests, in front of a real registry on a free loopback port.
 *
 * Requests are forwarded to the upstream as they come (redirects are passed back, not followed),
 * unless a rule matches: then the proxy answers with a canned status, cuts the connection after
 * some body bytes, flips one body byte, or redirects to another origin. Rules apply to a number of
 * matching requests and are then spent, so "two 503s then success" is one rule with `times: 2`.
 * Every request is recorded with its headers, so tests can check `Range` and `Authorization`.
 * With `bytesPerSecond` it also slows blob downloads down, so a test can interrupt one midway.
 * It counts the blob downloads being sent at once, so a test can check a client's concurrency.
 */

/** One fault, applied to the requests it matches. */
export interface FaultRule {
  /** Matches the method (default: any). */
  method?: string;
  /** Matches the path: a substring or a pattern (default: any). */
  path?: string | RegExp;
  /** How many matching requests get the fault (default 1; `Infinity` for all). */
  times?: number;
  /** Answer with this status instead of forwarding. */
  status?: number;
  /** Headers of that answer, or added to the forwarded reply. */
  headers?: Record<string, string>;
  /** The body of a `status` answer. */
  body?: string | Uint8Array<ArrayBuffer>;
  /** Send that body without `Content-Length` (chunked). */
  chunked?: boolean;
  /** Forward, but cut the connection after this many body bytes. */
  cutAfter?: number;
  /** Forward the request body, but cut it off after this many bytes (an upload cut midway). */
  cutRequestAfter?: number;
  /** Forward, but flip (invert) the body byte at this offset. */
  flipByteAt?: number;
  /** Answer `307` to the same path and query at this origin (`http://127.0.0.1:PORT`). */
  redirectTo?: string;
}

/** A request the proxy saw. */
export interface ProxiedRequest {
  method: string;
  /** Path and query. */
  path: string;
  headers: Headers;
  /** The status the client got. */
  status: number;
  /** Whether a rule changed the answer. */
  faulted: boolean;
}

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Serve HTTPS with this certificate chain and key (PEM). */
  tls?: { cert: string; key: string };
  /** Headers added to every forwarded request (e.g. the proxy's own upstream credentials). */
  upstreamHeaders?: Record<string, string>;
  /** Send the bodies of blob downloads (`GET …/blobs/…`) at this rate. */
  bytesPerSecond?: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** `http(s)://127.0.0.1:PORT`. */
  url: string;
  /** `127.0.0.1:PORT`, the registry part of references through the proxy. */
  host: string;
  /** Every request so far, in order. */
  requests: ProxiedRequest[];
  /** The most blob downloads (`GET …/blobs/…` bodies) that were being sent at once. */
  readonly peakBlobDownloads: number;
  /** Adds a rule; rules are tried in the order added. */
  addRule(rule: FaultRule): void;
  /** Stops the proxy, cutting off slowed downloads still in progress. */
  stop(): Promise<void>;
}

interface ActiveRule extends FaultRule {
  left: number;
}

function matches(rule: ActiveRule, req: Request, path: string): boolean {
  if (rule.left <= 0) return false;
  if (rule.method && rule.method !== req.method) return false;
  if (rule.path === undefined) return true;
  return typeof rule.path === "string" ? path.includes(rule.path) : rule.path.test(path);
}

/** Alters a forwarded body: stops with an error after `cutAfter` bytes, flips `flipByteAt`. */
function alter(
  body: ReadableStream<Uint8Array>,
  rule: ActiveRule,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        let out = chunk;
        if (rule.flipByteAt !== undefined) {
          const at = rule.flipByteAt - offset;
          if (at >= 0 && at < chunk.length) {
            out = chunk.slice();
            out[at] ^= 0xff;
          }
        }
        if (rule.cutAfter !== undefined && offset + out.length >= rule.cutAfter) {
          const keep = rule.cutAfter - offset;
          if (keep > 0) controller.enqueue(out.subarray(0, keep));
          // erroring the body makes the server drop the connection mid-transfer
          controller.error(new Error("fault proxy: connection cut"));
          return;
        }
        offset += out.length;
        controller.enqueue(out);
      },
    }),
  );
}

/** Paces `body` at `bytesPerSecond` in 64 KiB slices; errors it once `stopping` aborts. */
function throttle(
  body: ReadableStream<Uint8Array>,
  bytesPerSecond: number,
  stopping: AbortSignal,
): ReadableStream<Uint8Array> {
  const slice = 64 * 1024;
  const delayMs = (slice / bytesPerSecond) * 1000;
  const reader = body.getReader();
  let pending: Uint8Array | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!pending?.length) {
        const { done, value } = await reader.read();
        if (done) return controller.close();
        pending = value;
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (stopping.aborted) {
        controller.error(new Error("fault proxy: stopped"));
        await reader.cancel().catch(() => {});
        return;
      }
      controller.enqueue(pending.slice(0, slice));
      pending = pending.subarray(slice);
    },
    cancel: (reason) => reader.cancel(reason).catch(() => {}),
  });
}

/** Calls `onEnd` once `body` is read to its end, fails or is cancelled. */
function onceEnded(
  body: ReadableStream<Uint8Array>,
  onEnd: () => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let ended = false;
  const end = () => {
    if (!ended) onEnd();
    ended = true;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          end();
          controller.close();
        } else controller.enqueue(value);
      } catch (error) {
        end();
        controller.error(error);
      }
    },
    cancel(reason) {
      end();
      return reader.cancel(reason).catch(() => {});
    },
  });
}

/** Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`). */
export function startFaultProxy(
  upstream: string,
  options: FaultProxyOptions = {},
): Promise<FaultProxy> {
  const rules: ActiveRule[] = [];
  const requests: ProxiedRequest[] = [];
  const stopping = new AbortController();
  let blobDownloads = 0;
  let peakBlobDownloads = 0;
  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const path = url.pathname + url.search;
    const record: ProxiedRequest = {
      method: req.method,
      path,
      headers: new Headers(req.headers),
      status: 0,
      faulted: false,
    };
    requests.push(record);
    const rule = rules.find((r) => matches(r, req, path));
    if (rule) {
      rule.left--;
      record.faulted = true;
    }
    if (rule?.redirectTo) {
      record.status = 307;
      return new Response(null, {
        status: 307,
        headers: { location: `${rule.redirectTo}${path}`, ...rule.headers },
      });
    }
    if (rule?.status !== undefined) {
      record.status = rule.status;
      let body: BodyInit | null = rule.body ?? null;
      if (rule.chunked && rule.body !== undefined) {
        const bytes = typeof rule.body === "string"
          ? new TextEncoder().encode(rule.body)
          : rule.body;
        body = new ReadableStream({
          start(controller) {
            for (let i = 0; i < bytes.length; i += 65536) {
              controller.enqueue(bytes.slice(i, i + 65536));
            }
            controller.close();
          },
        });
      }
      return new Response(req.method === "HEAD" ? null : body, {
        status: rule.status,
        headers: rule.headers,
      });
    }
    const headers = new Headers(req.headers);
    headers.delete("host");
    for (const [name, value] of Object.entries(options.upstreamHeaders ?? {})) {
      headers.set(name, value);
    }
    const cut = rule?.cutRequestAfter;
    const reply = await fetch(`${upstream}${path}`, {
      method: req.method,
      headers,
      body: req.body && cut !== undefined ? alter(req.body, { ...rule!, cutAfter: cut }) : req.body,
      redirect: "manual",
    });
    record.status = reply.status;
    const replyHeaders = new Headers(reply.headers);
    for (const [name, value] of Object.entries(rule?.headers ?? {})) replyHeaders.set(name, value);
    // as a reverse proxy does: the upstream's own URLs (upload sessions) point back at the proxy
    const location = replyHeaders.get("location");
    if (location?.startsWith(upstream)) {
      replyHeaders.set("location", `${new URL(req.url).origin}${location.slice(upstream.length)}`);
    }
    let body = reply.body && rule ? alter(reply.body, rule) : reply.body;
    if (body && req.method === "GET" && url.pathname.includes("/blobs/")) {
      if (options.bytesPerSecond) body = throttle(body, options.bytesPerSecond, stopping.signal);
      peakBlobDownloads = Math.max(peakBlobDownloads, ++blobDownloads);
      body = onceEnded(body, () => blobDownloads--);
    }
    return new Response(body, { status: reply.status, headers: replyHeaders });
  };
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      ...(options.tls ?? {}),
      onListen({ port }) {
        const host = `127.0.0.1:${port}`;
        resolve({
          url: `${options.tls ? "https" : "http"}://${host}`,
          host,
          requests,
          get peakBlobDownloads() {
            return peakBlobDownloads;
          },
          addRule(rule) {
            rules.push({ ...rule, left: rule.times ?? 1 });
          },
          stop() {
            stopping.abort();
            return server.shutdown();
          },
        });
      },
      // a cut body surfaces here as an error; it is the point of the rule, not a failure
      onError: () => new Response(null, { status: 500 }),
    }, handler);
  });
}
