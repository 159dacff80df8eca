/**
 * A loopback HTTP proxy in front of the real registry that slows blob downloads to a set rate and
 * records every request (with its `Range` header), so tests can interrupt a download midway and
 * see how the next run asks for the rest.
 */

/** One request the proxy forwarded. */
export interface ProxiedRequest {
  method: string;
  path: string;
  /** The request's `Range` header, if any. */
  range?: string;
  status: number;
}

/** A running proxy. */
export interface ThrottleProxy {
  /** `127.0.0.1:PORT`, the host part of references through the proxy. */
  host: string;
  /** Requests forwarded so far. */
  requests: ProxiedRequest[];
  /** Stops the proxy, cutting off downloads still in progress. */
  stop(): Promise<void>;
}

/** Starts a proxy to `targetUrl` that sends blob bodies at `bytesPerSecond`. */
export function startThrottleProxy(
  targetUrl: string,
  options: { bytesPerSecond: number },
): Promise<ThrottleProxy> {
  const requests: ProxiedRequest[] = [];
  const active = new Set<AbortController>();
  const slice = 64 * 1024;
  const delayMs = (slice / options.bytesPerSecond) * 1000;
  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.delete("host");
    const upstream = await fetch(`${targetUrl}${url.pathname}${url.search}`, {
      method: request.method,
      headers,
      body: request.body,
      redirect: "manual",
    });
    requests.push({
      method: request.method,
      path: url.pathname,
      range: request.headers.get("range") ?? undefined,
      status: upstream.status,
    });
    if (request.method !== "GET" || !url.pathname.includes("/blobs/") || !upstream.body) {
      return new Response(upstream.body, { status: upstream.status, headers: upstream.headers });
    }
    const abort = new AbortController();
    active.add(abort);
    const reader = upstream.body.getReader();
    let pending: Uint8Array | undefined;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (!pending?.length) {
          const { done, value } = await reader.read();
          if (done) {
            active.delete(abort);
            controller.close();
            return;
          }
          pending = value;
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        if (abort.signal.aborted) {
          controller.error(new Error("proxy stopped"));
          await reader.cancel().catch(() => {});
          return;
        }
        controller.enqueue(pending.slice(0, slice));
        pending = pending.subarray(slice);
      },
      async cancel() {
        active.delete(abort);
        await reader.cancel().catch(() => {});
      },
    });
    return new Response(body, { status: upstream.status, headers: upstream.headers });
  };
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: (addr) => {
        resolve({
          host: `127.0.0.1:${addr.port}`,
          requests,
          async stop() {
            for (const abort of active) abort.abort();
            await server.shutdown();
          },
        });
      },
    }, handler);
  });
}
