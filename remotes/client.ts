/**
 * The registry client: resolve references to descriptors and fetch manifests and blobs as Web
 * streams, over the OCI distribution API. Retries transient failures with bounded exponential
 * backoff, resumes dropped transfers with `Range`, follows redirects without ever sending
 * `Authorization` to another host, and authenticates with bearer tokens or Basic auth.
 *
 * @example
 * ```ts ignore
 * import { RegistryClient } from "./client.ts";
 * import { parseReference } from "../content/reference.ts";
 * const client = new RegistryClient();
 * const ref = parseReference("localhost:5000/app:latest");
 * const desc = await client.resolve(ref);
 * const manifest = JSON.parse(new TextDecoder().decode(await client.fetchManifest(ref, desc)));
 * const { stream } = await client.fetch(ref, manifest.layers[0]);
 * await stream.pipeTo(new WritableStream());
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
  MediaType,
} from "../content/descriptor.ts";
import { type Digest, digestAlgorithm, digestOf, isDigest } from "../content/digest.ts";
import {
  DigestMismatchError,
  DistError,
  InvalidArgumentError,
  SizeMismatchError,
  UnsupportedError,
} from "../content/errors.ts";
import { type CredentialProvider, type Credentials, lookupCredentials } from "./credentials.ts";
import {
  RegistryError,
  type RegistryErrorEntry,
  RegistryNotFoundError,
  UnauthorizedError,
} from "./errors.ts";
import {
  formatReference,
  isLoopbackHost,
  type Reference,
  referenceObject,
  registryHost,
} from "../content/reference.ts";
import { MAX_MANIFEST_SIZE } from "../content/images/graph.ts";
import { Authorizer } from "./_auth.ts";
import { checkFollowedUrl, mayCarryCredentials } from "./_url_policy.ts";
import { type OpenedBody, readCapped, resumableStream } from "./_body.ts";
import {
  backoffDelay,
  describeNetworkError,
  parseRetryAfter,
  RETRYABLE_STATUSES,
  type RetryPolicy,
  sleep,
  summarizeTries,
} from "./_retry.ts";
import { createTransport, DEFAULT_TIMEOUT_MS, type Transport } from "./_transport.ts";

/** The manifest media types a resolve accepts, most specific first. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
];

/** Reported before each retry, for progress displays and logs (never holds secrets). */
export interface RetryEvent {
  /** What was being done, e.g. `resolve docker.io/library/redis:latest`. */
  action: string;
  /** The try that failed (1 for the first). */
  attempt: number;
  /** Why it failed: a status line or a network error. */
  reason: string;
  /** How long the client waits before the next try. */
  delayMs: number;
}

/** Options of a {@link RegistryClient}. */
export interface RegistryClientOptions {
  /**
   * Credentials for every registry, or a function finding them per registry. Default: the docker
   * and containers config files ({@link lookupCredentials}).
   */
  credentials?: Credentials | CredentialProvider;
  /**
   * `true`: plain HTTP; `false`: HTTPS even for loopback hosts; default: plain HTTP for
   * `localhost`, `127.0.0.0/8` and `[::1]`, HTTPS elsewhere.
   */
  plainHttp?: boolean;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
  /** A PEM file of CA certificates to trust besides the system ones. */
  caFile?: string;
  /** Retry policy: tries in all (default 5), first delay (250 ms), longest delay (30 s). */
  retry?: { attempts?: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Called before each retry. */
  onRetry?: (event: RetryEvent) => void;
  /** The `User-Agent` header (default `dist/0.1.0`). */
  userAgent?: string;
  /**
   * How long to wait for a reply (connecting included) and, within a body, for the next bytes,
   * in milliseconds (default 30 s). A stalled blob is resumed with `Range` like a cut one.
   */
  timeoutMs?: number;
  /**
   * The path the registry API is served under (default `/v2`): a mirror set up with containerd's
   * `override_path` names its own, such as `/proxy/v2`.
   */
  apiRoot?: string;
}

/** Options of {@link RegistryClient.resolve}. */
export interface ResolveOptions {
  /** The media types to accept (default {@link MANIFEST_MEDIA_TYPES}). */
  accept?: readonly string[];
  /** Aborts the requests. */
  signal?: AbortSignal;
}

/** Options of {@link RegistryClient.resolveObject}. */
export interface ResolveObjectOptions {
  /** The object's media type if known (the seed's `mediatype:` hint). */
  mediaType?: string;
  /**
   * The object's size if known (a `size:` hint): saves a request for blobs, and a manifest of
   * another size is refused.
   */
  size?: number;
  /** Aborts the requests. */
  signal?: AbortSignal;
}

/** Options of {@link RegistryClient.fetch}. */
export interface FetchOptions {
  /** Where to start in the object (a resume); the registry may ignore it. */
  offset?: number;
  /** Aborts the requests and the stream. */
  signal?: AbortSignal;
}

/** An object's bytes as a stream, and where in the object the stream really starts. */
export interface FetchResult {
  /** The object's bytes from `offset` on, in chunks of up to 1 MiB (a byte stream). */
  stream: ReadableStream<Uint8Array>;
  /** The offset of the stream's first byte: the requested offset, or 0 if the registry ignored it. */
  offset: number;
}

interface Exchange {
  method: RequestMethod;
  url: URL;
  /** Makes the body afresh for each send (a retry, a challenge answered, a 307/308 redirect). */
  body?: () => BodyInit | null;
  /** The token scope(s), space-separated (default: pull on the reference's repository). */
  scope?: string;
  /** Send once: a failure is the caller's to recover (an upload chunk cannot be resent as is). */
  once?: boolean;
  ref: Reference;
  /** Names the operation in messages: `resolve docker.io/library/redis:latest`. */
  action: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Statuses handed back instead of raised. */
  pass?: readonly number[];
}

/** Why a try failed. */
interface Failure {
  reason: string;
  retryAfter?: number;
  status?: number;
  errors?: RegistryErrorEntry[];
  cause?: unknown;
}

/** The methods {@link RegistryClient.request} sends. */
export type RequestMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

/** A request of {@link RegistryClient.request}. */
export interface RegistryRequest {
  /** The HTTP method. */
  method: RequestMethod;
  /**
   * Where: a path below `/v2/<repository>/` (`blobs/uploads/`, `manifests/v1`), or an absolute
   * URL the registry handed out (an upload's `Location`), which must be on the registry's origin.
   */
  path: string;
  /** Query parameters to add (`digest`, `mount`, `from`). */
  query?: Record<string, string>;
  /** Makes the body; called again for every send, so a retry resends it whole. */
  body?: () => BodyInit | null;
  /** Request headers. */
  headers?: Record<string, string>;
  /**
   * The token scope(s), space-separated, e.g. `repository:app:pull,push repository:base:pull`
   * for a cross-repository mount (default: pull on the reference's repository).
   */
  scope?: string;
  /** Names the operation in error messages: `push app:v1`. */
  action: string;
  /** Statuses handed back instead of raised (e.g. 404 for a HEAD that asks whether a blob is there). */
  pass?: readonly number[];
  /** Send once, with no retry: a streamed body cannot be sent again (see `PATCH` uploads). */
  once?: boolean;
  /** Stops the request. */
  signal?: AbortSignal;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;

/** Fetches manifests and blobs from OCI and Docker registries. */
export class RegistryClient {
  readonly #transport: Transport;
  readonly #authorizer: Authorizer;
  readonly #plainHttp?: boolean;
  readonly #policy: RetryPolicy;
  readonly #onRetry?: (event: RetryEvent) => void;
  readonly #userAgent: string;
  readonly #apiRoot: string;
  readonly #timeoutMs: number;

  /** Creates a client; nothing is sent until the first call. */
  constructor(options: RegistryClientOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#transport = createTransport({
      caFile: options.caFile,
      insecure: options.insecure,
      timeoutMs: this.#timeoutMs,
    });
    this.#plainHttp = options.plainHttp;
    this.#policy = {
      attempts: Math.max(1, options.retry?.attempts ?? 5),
      baseDelayMs: options.retry?.baseDelayMs ?? 250,
      maxDelayMs: options.retry?.maxDelayMs ?? 30_000,
    };
    this.#onRetry = options.onRetry;
    this.#userAgent = options.userAgent ?? "dist/0.1.0";
    this.#apiRoot = (options.apiRoot ?? "/v2").replace(/\/+$/, "");
    const credentials = options.credentials;
    const provider: CredentialProvider = typeof credentials === "function"
      ? credentials
      : credentials
      ? () => Promise.resolve(credentials)
      : (registry, repository) => lookupCredentials(registry, { repository });
    this.#authorizer = new Authorizer(
      provider,
      (url, init) => this.#tokenRequest(url, init),
    );
  }

  /**
   * Sends one request to the repository of `ref` with the client's authentication, retries and
   * redirect rules: the building block of pushes and other writes. Returns a 2xx reply (or one
   * whose status is in `pass`); raises typed errors otherwise.
   */
  async request(ref: Reference, request: RegistryRequest): Promise<Response> {
    const base = this.#url(ref, "manifests", "");
    const root = new URL(`${this.#apiRoot}/${ref.repository}/`, base);
    const url = new URL(request.path, root);
    if (url.origin !== base.origin) {
      throw new RegistryError(
        `cannot ${request.action}: the registry sent a URL on another host: ${url.href}`,
      );
    }
    for (const [key, value] of Object.entries(request.query ?? {})) {
      url.searchParams.set(key, value);
    }
    return await this.#exchange({ ...request, url, ref });
  }

  /** Releases the HTTP client (connections, TLS settings). */
  close(): void {
    this.#transport.close();
  }

  /**
   * Resolves a reference to the descriptor of its manifest or index: `HEAD` on
   * `/v2/<name>/manifests/<tag|digest>`, and `GET` when `HEAD` is refused or lacks a digest.
   */
  async resolve(ref: Reference, options: ResolveOptions = {}): Promise<Descriptor> {
    const name = formatReference(ref);
    const url = this.#url(ref, "manifests", referenceObject(ref));
    const accept = (options.accept ?? MANIFEST_MEDIA_TYPES).join(", ");
    const head = await this.#exchange({
      method: "HEAD",
      url,
      ref,
      action: `resolve ${name}`,
      headers: { accept },
      signal: options.signal,
      // a HEAD's 404 has no body to say why: the GET below asks again and gets the reason
      // (e.g. "OCI manifest found, but accept header does not support OCI manifests")
      pass: [400, 404, 405, 501],
    });
    await head.body?.cancel();
    if (head.ok) {
      const header = head.headers.get("docker-content-digest") ?? "";
      const size = contentLength(head);
      const mediaType = contentType(head);
      if (isDigest(header) && size !== undefined && mediaType) {
        return { mediaType, digest: ref.digest ?? header, size };
      }
    }
    return (await this.#resolveByGet(ref, url, accept, options.signal)).descriptor;
  }

  /**
   * Resolves a reference with one `GET` of its manifest or index, which it returns too: where the
   * content is wanted next (a fetch into a store without it), one request instead of a `HEAD` and
   * a `GET`.
   */
  async resolveWithContent(
    ref: Reference,
    options: ResolveOptions = {},
  ): Promise<{ descriptor: Descriptor; bytes: Uint8Array<ArrayBuffer> }> {
    const url = this.#url(ref, "manifests", referenceObject(ref));
    const accept = (options.accept ?? MANIFEST_MEDIA_TYPES).join(", ");
    return await this.#resolveByGet(ref, url, accept, options.signal);
  }

  async #resolveByGet(
    ref: Reference,
    url: URL,
    accept: string,
    signal?: AbortSignal,
  ): Promise<{ descriptor: Descriptor; bytes: Uint8Array<ArrayBuffer> }> {
    const name = formatReference(ref);
    const { reply, bytes } = await this.#getDocument({
      method: "GET",
      url,
      ref,
      action: `resolve ${name}`,
      headers: { accept },
      signal,
    }, name);
    const header = reply.headers.get("docker-content-digest") ?? "";
    const expected = ref.digest ?? (isDigest(header) ? header : undefined);
    const digest = digestOf(bytes, expected ? digestAlgorithm(expected) : "sha256");
    if (expected && digest !== expected) {
      throw new DigestMismatchError(
        `cannot resolve ${name}: expected digest ${expected}, got ${digest}`,
      );
    }
    const mediaType = contentType(reply) || mediaTypeField(bytes) || MediaType.ociManifest;
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes };
  }

  /**
   * Resolves an object the way the seed's `fetch-object` names it: a tag or a digest, with an
   * optional media type. A digest that is no manifest is looked up as a blob. A `size` the
   * registry contradicts throws {@link SizeMismatchError} before anything is fetched.
   */
  async resolveObject(ref: Reference, options: ResolveObjectOptions = {}): Promise<Descriptor> {
    const desc = await this.#resolveObject(ref, options);
    if (options.size !== undefined && desc.size !== options.size) {
      throw new SizeMismatchError(
        `cannot fetch ${formatReference(ref)}: expected size ${options.size}, the registry ` +
          `has ${desc.size} bytes`,
      );
    }
    return desc;
  }

  async #resolveObject(ref: Reference, options: ResolveObjectOptions): Promise<Descriptor> {
    const { mediaType, signal } = options;
    const manifestish = (type: string) =>
      isManifestType(type) || isIndexType(type) || isSchema1Type(type);
    if (mediaType && !manifestish(mediaType)) {
      if (!ref.digest) {
        throw new InvalidArgumentError(
          `cannot fetch ${formatReference(ref)} as ${mediaType}: a blob is named by its digest`,
        );
      }
      // a blob's size hint saves the HEAD request; fetching then verifies the size
      if (options.size !== undefined) return { mediaType, digest: ref.digest, size: options.size };
      return { ...(await this.#statBlob(ref, ref.digest, signal)), mediaType };
    }
    if (mediaType || !ref.digest) {
      return await this.resolve(ref, { accept: mediaType ? [mediaType] : undefined, signal });
    }
    // A bare digest: blobs first, because registries answer a manifest request for a layer
    // digest with a 500 rather than a 404 (distribution 2.8 does).
    try {
      return await this.#statBlob(ref, ref.digest, signal);
    } catch (error) {
      if (!(error instanceof RegistryNotFoundError)) throw error;
      return await this.resolve(ref, { signal });
    }
  }

  /**
   * Fetches a manifest or index and returns its bytes, verified against the descriptor's digest and
   * size. Refuses manifests over 4 MiB and Docker schema 1 manifests ({@link UnsupportedError}).
   */
  async fetchManifest(
    ref: Reference,
    desc: Descriptor,
    options: { signal?: AbortSignal } = {},
  ): Promise<Uint8Array<ArrayBuffer>> {
    const name = `${ref.registry}/${ref.repository}@${desc.digest}`;
    if (isSchema1Type(desc.mediaType)) throw schema1Error(name);
    if (desc.size > MAX_MANIFEST_SIZE) throw tooLarge(name, desc.size);
    const { reply, bytes } = await this.#getDocument({
      method: "GET",
      url: this.#url(ref, "manifests", desc.digest),
      ref,
      action: `fetch ${name}`,
      headers: { accept: acceptFor(desc.mediaType) },
      signal: options.signal,
    }, name);
    const type = contentType(reply);
    if (isSchema1Type(type) || (!MANIFEST_MEDIA_TYPES.includes(type) && isSchema1Body(bytes))) {
      throw schema1Error(name);
    }
    verifyBytes(bytes, desc, name);
    return bytes;
  }

  /**
   * Streams the raw bytes of a blob (or manifest) from `offset`. The result's `offset` is where the
   * stream really starts: the requested offset when the registry answered 206 with a matching
   * `Content-Range`, else 0. Dropped connections are resumed with `Range`. The bytes are not
   * verified: pipe them through a `VerifyStream` or commit them to a store writer.
   */
  async fetch(ref: Reference, desc: Descriptor, options: FetchOptions = {}): Promise<FetchResult> {
    const offset = options.offset ?? 0;
    const name = `${ref.registry}/${ref.repository}@${desc.digest}`;
    if (!Number.isSafeInteger(offset) || offset < 0 || (desc.size >= 0 && offset > desc.size)) {
      throw new InvalidArgumentError(
        `cannot fetch ${name} from offset ${offset}: it is ${desc.size} bytes`,
      );
    }
    if (offset > 0 && offset === desc.size) {
      return { stream: new ReadableStream({ type: "bytes", start: (c) => c.close() }), offset };
    }
    const open = (at: number) => this.#open(ref, desc, at, options.signal);
    const first = await open(offset);
    const stream = resumableStream(first, {
      size: desc.size,
      reopen: open,
      policy: this.#policy,
      label: name,
      idleMs: this.#timeoutMs,
      host: registryHost(ref.registry),
      signal: options.signal,
    });
    return { stream, offset: first.start };
  }

  /** GETs a small document (manifest, index), retrying when the connection breaks mid-body. */
  async #getDocument(
    exchange: Exchange,
    name: string,
  ): Promise<{ reply: Response; bytes: Uint8Array<ArrayBuffer> }> {
    const tries: string[] = [];
    for (;;) {
      const reply = await this.#exchange(exchange);
      try {
        const idle = { ms: this.#timeoutMs, host: exchange.url.host };
        return { reply, bytes: await readManifestBody(reply, name, idle) };
      } catch (error) {
        if (exchange.signal?.aborted) throw exchange.signal.reason;
        if (error instanceof DistError || error instanceof Deno.errors.NotCapable) throw error;
        await this.#backOff(exchange, tries, { reason: describeNetworkError(error), cause: error });
      }
    }
  }

  /** Opens an object at `offset`: a 206 starting there, else the whole object from 0. */
  async #open(
    ref: Reference,
    desc: Descriptor,
    offset: number,
    signal?: AbortSignal,
  ): Promise<OpenedBody> {
    const manifest = isManifestType(desc.mediaType) || isIndexType(desc.mediaType) ||
      isSchema1Type(desc.mediaType);
    const url = this.#url(ref, manifest ? "manifests" : "blobs", desc.digest);
    const action = `fetch ${ref.registry}/${ref.repository}@${desc.digest}`;
    const headers: Record<string, string> = { accept: acceptFor(desc.mediaType) };
    if (offset > 0) {
      const reply = await this.#exchange({
        method: "GET",
        url,
        ref,
        action,
        headers: { ...headers, range: `bytes=${offset}-` },
        signal,
        pass: [416],
      });
      const range = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(reply.headers.get("content-range") ?? "");
      if (reply.status === 206 && range && Number(range[1]) === offset && reply.body) {
        return { body: reply.body, start: offset };
      }
      if (reply.status === 200 && reply.body) return { body: reply.body, start: 0 };
      // a 206 for some other range (or a 416) is of no use: start over from the first byte
      await reply.body?.cancel();
    }
    const reply = await this.#exchange({ method: "GET", url, ref, action, headers, signal });
    if (!reply.body) throw new RegistryError(`cannot ${action}: the reply has no body`);
    return { body: reply.body, start: 0 };
  }

  /** A blob's descriptor from `HEAD /v2/<name>/blobs/<digest>`. */
  async #statBlob(ref: Reference, digest: Digest, signal?: AbortSignal): Promise<Descriptor> {
    const name = `${ref.registry}/${ref.repository}@${digest}`;
    const reply = await this.#exchange({
      method: "HEAD",
      url: this.#url(ref, "blobs", digest),
      ref,
      action: `resolve ${name}`,
      signal,
    });
    await reply.body?.cancel();
    const size = contentLength(reply);
    if (size === undefined) {
      throw new RegistryError(`cannot resolve ${name}: the registry sent no Content-Length`);
    }
    return { mediaType: contentType(reply) || "application/octet-stream", digest, size };
  }

  #url(ref: Reference, kind: "manifests" | "blobs", object: string): URL {
    const host = registryHost(ref.registry);
    const plain = this.#plainHttp ?? isLoopbackHost(host);
    return new URL(
      `${plain ? "http" : "https"}://${host}${this.#apiRoot}/${ref.repository}/${kind}/${object}`,
    );
  }

  /**
   * Sends a request to a registry: authenticates, follows redirects, retries transient failures.
   * Returns a 2xx reply (or one whose status is in `pass`); raises typed errors otherwise.
   */
  async #exchange(exchange: Exchange): Promise<Response> {
    const { ref, action, signal } = exchange;
    const scope = exchange.scope ?? `repository:${ref.repository}:pull`;
    const tries: string[] = [];
    let reauthorized = false;
    for (;;) {
      const authorization = await this.#authorizer.authorization(
        ref.registry,
        ref.repository,
        scope,
      );
      let reply: Response;
      let atRegistry: boolean;
      try {
        ({ reply, atRegistry } = await this.#follow(exchange, authorization));
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (error instanceof DistError || error instanceof Deno.errors.NotCapable) throw error;
        const reason = describeNetworkError(error);
        const hint = protocolHint(reason);
        if (hint !== undefined) {
          // TLS and protocol mismatches fail the same way every time: no retries
          throw new RegistryError(`cannot ${action}: ${reason}${hint}`, { cause: error });
        }
        await this.#backOff(exchange, tries, { reason, cause: error });
        continue;
      }
      if (reply.status === 401 && atRegistry && !reauthorized) {
        reauthorized = true;
        const challenge = reply.headers.get("www-authenticate");
        let again: boolean;
        try {
          again = await this.#authorizer.unauthorized(
            ref.registry,
            ref.repository,
            scope,
            challenge,
            authorization,
            exchange.url,
          );
        } catch (error) {
          await reply.body?.cancel();
          throw error;
        }
        if (again) {
          await reply.body?.cancel();
          continue; // answering a challenge is not a retry
        }
      }
      if (RETRYABLE_STATUSES.has(reply.status)) {
        const errors = await errorEntries(reply);
        await this.#backOff(exchange, tries, {
          reason: statusText(reply, errors),
          retryAfter: parseRetryAfter(reply.headers.get("retry-after")),
          status: reply.status,
          errors,
        });
        continue;
      }
      if (reply.ok || exchange.pass?.includes(reply.status)) return reply;
      const errors = await errorEntries(reply);
      const status = statusText(reply, errors);
      const options = { status: reply.status, errors };
      if (reply.status === 404) {
        // the registry's own words when they say more than "unknown": a manifest of a type the
        // Accept header excludes is there, not missing
        const telling = errors.some((e) =>
          e.message && !/unknown|not found|not known/i.test(e.message)
        );
        const why = telling ? status.replace(/^404 Not Found: /, "") + " (404)" : "";
        throw new RegistryNotFoundError(
          `cannot ${action}: ${why || `not found (${status})`}`,
          options,
        );
      }
      if (reply.status === 401 || reply.status === 403) {
        const host = atRegistry ? `registry ${ref.registry}` : `the redirect target`;
        const hint = atRegistry &&
            !(await this.#authorizer.hasCredentials(ref.registry, ref.repository))
          ? `; no credentials found for ${ref.registry}`
          : "";
        throw new UnauthorizedError(
          `cannot ${action}: ${host} refused access (${status})${hint}`,
          options,
        );
      }
      throw new RegistryError(`cannot ${action}: the registry answered ${status}`, options);
    }
  }

  /**
   * Records a failed try in `tries`; throws when the tries are used up (listing each), else waits
   * (for `Retry-After` when given, capped) before the next.
   */
  async #backOff(exchange: Exchange, tries: string[], failure: Failure): Promise<void> {
    tries.push(failure.reason);
    const attempt = tries.length;
    if (attempt >= this.#policy.attempts || exchange.once) {
      const summary = attempt === 1
        ? failure.reason
        : `gave up after ${attempt} tries: ${summarizeTries(tries)}`;
      throw new RegistryError(`cannot ${exchange.action}: ${summary}`, {
        status: failure.status,
        errors: failure.errors,
        retryable: true,
        cause: failure.cause,
      });
    }
    const delayMs = Math.min(
      this.#policy.maxDelayMs,
      failure.retryAfter ?? backoffDelay(this.#policy, attempt),
    );
    this.#onRetry?.({ action: exchange.action, attempt, reason: failure.reason, delayMs });
    await sleep(delayMs, exchange.signal);
  }

  /**
   * Sends the request and follows redirects by hand: `Authorization` goes only to the registry's
   * own origin, never to a host it redirects to (blob storage, CDNs).
   */
  async #follow(
    exchange: Exchange,
    authorization: string | undefined,
  ): Promise<{ reply: Response; atRegistry: boolean }> {
    const origin = exchange.url.origin;
    let url = exchange.url;
    let method: string = exchange.method;
    for (let hop = 0;; hop++) {
      const headers = new Headers(exchange.headers);
      headers.set("user-agent", this.#userAgent);
      const atRegistry = url.origin === origin;
      if (authorization && atRegistry) {
        if (!mayCarryCredentials(url)) {
          throw new RegistryError(
            `cannot ${exchange.action}: refusing to send credentials over plain HTTP to ${url.host}`,
          );
        }
        headers.set("authorization", authorization);
      }
      // a 303 (and, as browsers do, a 301/302 of a POST) turns into a GET without the body
      const body = method === exchange.method ? exchange.body?.() ?? null : null;
      const reply = await this.#transport.send(url, {
        method,
        headers,
        body,
        signal: exchange.signal,
      });
      const location = reply.headers.get("location");
      if (!REDIRECT_STATUSES.has(reply.status) || !location) return { reply, atRegistry };
      await reply.body?.cancel();
      if (hop >= MAX_REDIRECTS) {
        throw new RegistryError(`cannot ${exchange.action}: more than ${MAX_REDIRECTS} redirects`);
      }
      url = new URL(location, url);
      checkFollowedUrl(url, exchange.url, `a redirect of ${exchange.action}`);
      const post = method === "POST" && (reply.status === 301 || reply.status === 302);
      if ((reply.status === 303 && method !== "HEAD") || post) method = "GET";
    }
  }

  /** Sends a token request (retrying transient failures); any final status is returned. */
  async #tokenRequest(url: URL, init: RequestInit): Promise<Response> {
    const where = `${url.origin}${url.pathname}`;
    const tries: string[] = [];
    for (let attempt = 1;; attempt++) {
      const headers = new Headers(init.headers);
      headers.set("user-agent", this.#userAgent);
      let retryAfter: number | undefined;
      try {
        const reply = await this.#transport.send(url, { ...init, headers });
        if (!RETRYABLE_STATUSES.has(reply.status) || attempt >= this.#policy.attempts) {
          return reply;
        }
        await reply.body?.cancel();
        tries.push(`${reply.status} ${reply.statusText}`.trimEnd());
        retryAfter = parseRetryAfter(reply.headers.get("retry-after"));
      } catch (error) {
        if (error instanceof Deno.errors.NotCapable) throw error; // a missing permission stays missing
        tries.push(describeNetworkError(error));
        if (attempt >= this.#policy.attempts) {
          throw new RegistryError(
            `cannot reach token server ${where}: ${summarizeTries(tries)}`,
            { retryable: true, cause: error },
          );
        }
      }
      const backoff = retryAfter ?? backoffDelay(this.#policy, attempt);
      await sleep(Math.min(this.#policy.maxDelayMs, backoff));
    }
  }
}

/**
 * For network errors that no retry can fix (certificates, HTTP spoken to a TLS server and the
 * reverse), a hint to append to the message; undefined for errors worth retrying.
 */
function protocolHint(reason: string): string | undefined {
  if (/invalid HTTP version parsed/i.test(reason)) {
    return " (does the registry speak HTTPS? plain HTTP is the default for loopback hosts)";
  }
  if (/corrupt message|InvalidContentType|wrong version number|unexpected message/i.test(reason)) {
    return " (does the registry speak plain HTTP?)";
  }
  if (/certificate|UnknownIssuer|NotValidForName|handshake/i.test(reason)) return "";
  return undefined;
}

function contentLength(reply: Response): number | undefined {
  const value = reply.headers.get("content-length");
  return value !== null && /^\d+$/.test(value) ? Number(value) : undefined;
}

function contentType(reply: Response): string {
  return (reply.headers.get("content-type") ?? "").split(";")[0].trim();
}

function acceptFor(mediaType: string): string {
  return [mediaType, ...MANIFEST_MEDIA_TYPES.filter((t) => t !== mediaType), "*/*"].join(", ");
}

function statusText(reply: Response, errors: RegistryErrorEntry[]): string {
  const line = `${reply.status} ${reply.statusText}`.trimEnd();
  const detail = errors.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join("; ");
  return detail ? `${line}: ${detail}` : line;
}

/** Reads a registry error body (`{"errors":[{code,message,detail}]}`), if any. */
async function errorEntries(reply: Response): Promise<RegistryErrorEntry[]> {
  if (!reply.body) return [];
  try {
    const bytes = await readCapped(reply.body, 64 * 1024, () => new Error("too large"));
    const parsed = JSON.parse(new TextDecoder().decode(bytes));
    if (!Array.isArray(parsed?.errors)) return [];
    return parsed.errors
      .filter((e: unknown) => typeof (e as RegistryErrorEntry)?.code === "string")
      .map((e: RegistryErrorEntry) => ({
        code: e.code,
        ...(typeof e.message === "string" ? { message: e.message } : {}),
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
      }));
  } catch {
    return []; // not JSON, or the connection broke: the status line says enough
  }
}

async function readManifestBody(
  reply: Response,
  name: string,
  idle: { ms: number; host: string },
): Promise<Uint8Array<ArrayBuffer>> {
  const declared = contentLength(reply);
  if (declared !== undefined && declared > MAX_MANIFEST_SIZE) {
    await reply.body?.cancel();
    throw tooLarge(name, declared);
  }
  const tooBig = (received: number) => tooLarge(name, received);
  return await readCapped(reply.body, MAX_MANIFEST_SIZE, tooBig, idle);
}

function tooLarge(name: string, size: number): RegistryError {
  return new RegistryError(
    `cannot fetch manifest ${name}: ${size} bytes or more is over the ${MAX_MANIFEST_SIZE}-byte limit`,
  );
}

function schema1Error(name: string): UnsupportedError {
  return new UnsupportedError(
    `cannot fetch ${name}: Docker schema 1 manifests are not supported (push the image again ` +
      `with a current client to get a schema 2 or OCI manifest)`,
  );
}

function isSchema1Body(bytes: Uint8Array): boolean {
  try {
    return JSON.parse(new TextDecoder().decode(bytes))?.schemaVersion === 1;
  } catch {
    return false;
  }
}

function mediaTypeField(bytes: Uint8Array): string | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes))?.mediaType;
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

function verifyBytes(bytes: Uint8Array, desc: Descriptor, name: string): void {
  if (bytes.length !== desc.size) {
    throw new SizeMismatchError(
      `cannot verify ${name}: expected size ${desc.size}, got ${bytes.length}`,
    );
  }
  const actual = digestOf(bytes, digestAlgorithm(desc.digest));
  if (actual !== desc.digest) {
    throw new DigestMismatchError(
      `cannot verify ${name}: expected digest ${desc.digest}, got ${actual}`,
    );
  }
}
