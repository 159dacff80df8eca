/**
 * GET and HEAD over plain HTTP/1.1 to a loopback address, on connections of our own that are kept
 * alive for the next request. A local registry (a CI service container, `dist serve`, a pull-
 * through cache beside the runner) is asked for dozens of small blobs by a command that lives
 * well under a second, and there `fetch` is what costs: ~12 ms of the main thread to set up its
 * client, then, cold, about 1 ms a request. Here a request is one write, and a body is read
 * from the socket straight into the reader's buffer (a direct stream, see direct_stream.ts).
 *
 * Deliberately small: no request bodies, no proxies (a proxy for loopback makes no sense), no
 * content codings (none is asked for). Replies are parsed strictly, as a hostile server may send
 * anything: a malformed or oversized head, or a bad length, fails the request.
 */
import { type DirectSource, directStream } from "../content/internal/mod.ts";

/** The most a reply's status line and headers may take. */
const MAX_HEAD = 64 << 10;
/** Interim (1xx) replies accepted before the real one. */
const MAX_INTERIM = 8;
/** Idle connections kept per host. */
const MAX_IDLE = 16;

const encoder = new TextEncoder();

/** Reply-head bytes as `fetch` reads them: a character a byte (ISO 8859-1). */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let at = 0; at < bytes.length; at += 4096) {
    text += String.fromCharCode(...bytes.subarray(at, at + 4096));
  }
  return text;
}
const CRLF = "\r\n";

/** Fails a request or a body the way a failed `fetch` does: a `TypeError` saying what happened. */
function failure(what: string, cause?: unknown): TypeError {
  return new TypeError(`error sending request: ${what}`, cause ? { cause } : undefined);
}

/** A connection with the bytes read beyond what was consumed. */
class Connection {
  readonly conn: Deno.Conn;
  buffer = new Uint8Array(16 << 10);
  start = 0;
  end = 0;
  closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  get buffered(): number {
    return this.end - this.start;
  }

  /** Reads more into the buffer (growing it up to `limit`); false at the end of the stream. */
  async fill(limit = MAX_HEAD): Promise<boolean> {
    if (this.start > 0) {
      this.buffer.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    if (this.end === this.buffer.length) {
      if (this.buffer.length >= limit) {
        throw failure(`the server's reply head exceeds ${limit} bytes`);
      }
      const grown = new Uint8Array(Math.min(limit, this.buffer.length * 2));
      grown.set(this.buffer.subarray(0, this.end));
      this.buffer = grown;
    }
    const count = await this.conn.read(this.buffer.subarray(this.end));
    if (count === null) return false;
    this.end += count;
    return true;
  }

  /** Reads one CRLF-terminated line (without it), or undefined at the end of the stream. */
  async line(limit: number): Promise<string | undefined> {
    for (let scanned = 0;;) {
      const at = this.buffer.subarray(this.start + scanned, this.end).indexOf(10);
      if (at >= 0) {
        const end = this.start + scanned + at; // the LF
        if (end === this.start || this.buffer[end - 1] !== 13) {
          throw failure("a reply line does not end in CRLF");
        }
        if (end - 1 - this.start > limit) throw failure(`a reply line exceeds ${limit} bytes`);
        const text = latin1(this.buffer.subarray(this.start, end - 1));
        this.start = end + 1;
        return text;
      }
      scanned = this.buffered; // `fill` may move the bytes: count from `start`
      if (scanned > limit) throw failure(`a reply line exceeds ${limit} bytes`);
      if (!(await this.fill(Math.max(limit + 2, this.buffer.length)))) return undefined;
    }
  }

  /** Reads up to `view.length` bytes: buffered ones first, then from the socket; 0 at its end. */
  async readInto(view: Uint8Array): Promise<number> {
    if (this.buffered > 0) {
      const count = Math.min(view.length, this.buffered);
      view.set(this.buffer.subarray(this.start, this.start + count));
      this.start += count;
      return count;
    }
    return (await this.conn.read(view)) ?? 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already gone
    }
  }
}

/** How a reply's body ends. */
type Framing = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" } | {
  kind: "close";
};

/** A keep-alive HTTP/1.1 client for GET and HEAD to loopback hosts; see the module doc. */
export class Http1Client {
  readonly #idle = new Map<string, Connection[]>();
  /** Set by {@link close}: connections still reading a body are closed when it ends. */
  #closed = false;

  /**
   * Whether {@link send} takes this request: a GET or HEAD without a body to `http:` on a
   * loopback address. `localhost` is left to `fetch`: it may resolve to either family (which
   * `fetch` tries both of), and `--allow-net=localhost` does not cover connecting to 127.0.0.1.
   */
  static handles(url: URL, init: RequestInit): boolean {
    const method = init.method ?? "GET";
    return url.protocol === "http:" && (method === "GET" || method === "HEAD") &&
      (init.body === null || init.body === undefined) &&
      /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])$/.test(url.hostname);
  }

  async send(url: URL, init: RequestInit): Promise<Response> {
    const signal = init.signal ?? undefined;
    signal?.throwIfAborted();
    const method = init.method ?? "GET";
    const key = url.host;
    let head = `${method} ${url.pathname}${url.search} HTTP/1.1${CRLF}host: ${url.host}${CRLF}`;
    new Headers(init.headers).forEach((value, name) => {
      if (name !== "host") head += `${name}: ${value}${CRLF}`;
    });
    const request = encoder.encode(head + CRLF);
    // A kept connection may have been closed by the server meanwhile: when it ends, or fails,
    // before a byte of the reply, the request goes again on another. A reply that is wrong
    // (a TypeError of ours) is not asked for again here.
    for (let reused = true; reused;) {
      let pooled = this.#idle.get(key)?.pop();
      while (pooled?.closed) pooled = this.#idle.get(key)?.pop();
      reused = pooled !== undefined;
      const connection = pooled ?? new Connection(await connect(url, signal));
      const onAbort = () => connection.close();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        signal?.throwIfAborted(); // aborted while connecting, before the listener was there
        const reply = await this.#exchange(connection, request, method, url);
        if (reply) return this.#respond(connection, reply, url, signal);
        connection.close(); // the connection ended before a reply
      } catch (error) {
        connection.close();
        if (signal?.aborted) throw signal.reason;
        if (error instanceof TypeError) throw error;
        if (!reused) throw failure(messageOf(error), error);
      } finally {
        signal?.removeEventListener("abort", onAbort);
      }
    }
    throw failure("the connection closed before a reply");
  }

  /** Closes the idle connections, and the others once their bodies end. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) for (const connection of list) connection.close();
    this.#idle.clear();
  }

  /**
   * Writes the request and reads the reply's head; undefined when the connection ended before
   * a single byte of it (a kept connection the server had closed).
   */
  async #exchange(
    connection: Connection,
    request: Uint8Array,
    method: string,
    url: URL,
  ): Promise<
    | { status: number; reason: string; headers: Headers; framing: Framing; keep: boolean }
    | undefined
  > {
    for (let at = 0; at < request.length;) at += await connection.conn.write(request.subarray(at));
    if (!(await connection.fill())) return undefined;
    // a TLS server's alert, say: said at once, as retrying cannot help
    const prefix = connection.buffer.subarray(0, Math.min(5, connection.end));
    if (latin1(prefix) !== "HTTP/".slice(0, prefix.length)) {
      throw failure("invalid HTTP version parsed: the reply is not HTTP/1.x");
    }
    for (let interim = 0;; interim++) {
      const statusLine = await connection.line(MAX_HEAD);
      if (statusLine === undefined) throw failure("the connection closed inside the reply head");
      const match = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(statusLine);
      if (!match) throw failure("invalid HTTP version parsed: the reply is not HTTP/1.x");
      const status = Number(match[2]);
      const headers = new Headers();
      let size = statusLine.length;
      for (;;) {
        const line = await connection.line(MAX_HEAD);
        if (line === undefined) throw failure("the connection closed inside the reply head");
        size += line.length + 2;
        if (size > MAX_HEAD) throw failure(`the server's reply head exceeds ${MAX_HEAD} bytes`);
        if (line === "") break;
        const colon = line.indexOf(":");
        if (colon <= 0 || /\s/.test(line[0])) throw failure(`invalid reply header line`);
        try {
          headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
        } catch (error) {
          throw failure("invalid reply header", error);
        }
      }
      if (status >= 100 && status < 200) {
        if (status === 101) {
          throw failure(`the server switched protocols (101) for ${url.pathname}`);
        }
        if (interim >= MAX_INTERIM) throw failure(`more than ${MAX_INTERIM} interim replies`);
        continue; // an interim reply (100 Continue, 103 Early Hints): the real one follows
      }
      if (status < 200 || status > 599) throw failure(`invalid HTTP status ${status}`);
      const framing = framingOf(method, status, headers);
      const keep = match[1] === "1" && framing.kind !== "close" &&
        !/(^|,)\s*close\s*(,|$)/i.test(headers.get("connection") ?? "");
      return { status, reason: match[3] ?? "", headers, framing, keep };
    }
  }

  #respond(
    connection: Connection,
    reply: { status: number; reason: string; headers: Headers; framing: Framing; keep: boolean },
    url: URL,
    signal: AbortSignal | undefined,
  ): Response {
    const done = () => {
      // a connection goes back only when it holds nothing beyond this reply
      if (!reply.keep || this.#closed || connection.closed || connection.buffered > 0) {
        return connection.close();
      }
      const list = this.#idle.get(url.host) ?? [];
      this.#idle.set(url.host, list);
      if (list.length < MAX_IDLE) list.push(connection);
      else connection.close();
    };
    let body: ReadableStream<Uint8Array> | null = null;
    if (reply.framing.kind === "none") done();
    else body = directStream(new BodySource(connection, reply.framing, done, signal));
    const init = { status: reply.status, headers: reply.headers };
    let response: Response;
    try {
      response = new Response(body, { ...init, statusText: reply.reason });
    } catch {
      response = new Response(body, init); // a reason phrase `Response` refuses
    }
    // as fetch's replies have it: relative Locations resolve against it
    Object.defineProperty(response, "url", { value: url.href });
    return response;
  }
}

/** The body's framing: RFC 9112 section 6.3, with anything ambiguous refused. */
function framingOf(method: string, status: number, headers: Headers): Framing {
  if (method === "HEAD" || status === 204 || status === 205 || status === 304) {
    return { kind: "none" };
  }
  const coding = headers.get("transfer-encoding");
  const length = headers.get("content-length");
  if (coding !== null) {
    if (length !== null) throw failure("the reply has both Transfer-Encoding and Content-Length");
    return /(^|,)\s*chunked\s*$/i.test(coding) ? { kind: "chunked" } : { kind: "close" };
  }
  if (length === null) return { kind: "close" };
  if (!/^\d{1,15}$/.test(length)) throw failure(`invalid Content-Length ${JSON.stringify(length)}`);
  return Number(length) === 0 ? { kind: "none" } : { kind: "length", length: Number(length) };
}

/** A reply body read off its connection; `done` runs once it was read to its end. */
class BodySource implements DirectSource {
  readonly #connection: Connection;
  readonly #framing: Framing;
  readonly #done: () => void;
  readonly #signal?: AbortSignal;
  /** Bytes left of a fixed length, or of the current chunk. */
  #left: number;
  /** Whether the chunk size line comes next (chunked). */
  #atChunkHead: boolean;
  /** Whether the last chunk (size 0) was read (chunked). */
  #lastChunk = false;
  #received = 0;
  #ended = false;

  constructor(connection: Connection, framing: Framing, done: () => void, signal?: AbortSignal) {
    this.#connection = connection;
    this.#framing = framing;
    this.#done = done;
    this.#signal = signal;
    this.#left = framing.kind === "length" ? framing.length : 0;
    this.#atChunkHead = framing.kind === "chunked";
  }

  async readInto(view: Uint8Array<ArrayBuffer>): Promise<number> {
    if (this.#ended) return 0;
    const onAbort = () => this.#connection.close();
    this.#signal?.addEventListener("abort", onAbort, { once: true });
    try {
      this.#signal?.throwIfAborted();
      const count = await this.#read(view);
      this.#received += count;
      if (count === 0) {
        this.#ended = true;
        this.#done();
      }
      return count;
    } catch (error) {
      this.#connection.close();
      if (this.#signal?.aborted) throw this.#signal.reason;
      throw error instanceof TypeError ? error : failure(messageOf(error), error);
    } finally {
      this.#signal?.removeEventListener("abort", onAbort);
    }
  }

  cancel(): Promise<void> {
    // once read to its end, the connection may already serve another request
    if (!this.#ended) this.#connection.close();
    this.#ended = true;
    return Promise.resolve();
  }

  async #read(view: Uint8Array): Promise<number> {
    const connection = this.#connection;
    switch (this.#framing.kind) {
      case "close":
        return await connection.readInto(view);
      case "length": {
        if (this.#left === 0) return 0;
        const count = await connection.readInto(
          view.subarray(0, Math.min(view.length, this.#left)),
        );
        if (count === 0) {
          throw failure(
            `the connection closed after ${this.#received} of ${this.#framing.length} bytes`,
          );
        }
        this.#left -= count;
        return count;
      }
      case "chunked": {
        // chunks whose bytes are here already go out in one read: a server that sends a byte a
        // chunk must not cost a read (and a reader's buffer) a byte
        let filled = 0;
        while (filled < view.length && !this.#lastChunk) {
          if (filled > 0 && connection.buffered === 0) break; // hand on, rather than wait
          if (this.#atChunkHead && !(await this.#nextChunk())) break;
          const count = await connection.readInto(
            view.subarray(filled, filled + Math.min(view.length - filled, this.#left)),
          );
          if (count === 0) throw failure(`the connection closed inside a chunk`);
          filled += count;
          this.#left -= count;
          if (this.#left === 0) {
            if ((await connection.line(2)) !== "") throw failure("a chunk does not end in CRLF");
            this.#atChunkHead = true;
          }
        }
        return filled;
      }
      default:
        return 0;
    }
  }

  /** Reads a chunk's size line; false after the last chunk (and its trailers). */
  async #nextChunk(): Promise<boolean> {
    const line = await this.#connection.line(4096);
    const size = /^([0-9a-fA-F]{1,13})\s*(;.*)?$/.exec(line ?? "");
    if (!size) throw failure(`invalid chunk size line`);
    this.#left = parseInt(size[1], 16);
    this.#atChunkHead = false;
    if (this.#left > 0) return true;
    this.#lastChunk = true;
    for (let length = 0;;) { // trailers, up to the empty line, no more than a head's worth
      const trailer = await this.#connection.line(4096);
      if (trailer === undefined) throw failure("the connection closed inside the trailers");
      if (trailer === "") return false;
      length += trailer.length + 2;
      if (length > MAX_HEAD) throw failure(`the trailers exceed ${MAX_HEAD} bytes`);
    }
  }
}

/** Connects to the loopback address of `url`. */
async function connect(url: URL, signal?: AbortSignal): Promise<Deno.Conn> {
  try {
    return await Deno.connect({
      hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: Number(url.port || 80),
      signal,
    });
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw failure(messageOf(error), error);
  }
}

/** An error's own words, kept whole: describeNetworkError shows a cause only when they lack it. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
