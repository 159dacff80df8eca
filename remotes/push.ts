/**
 * A registry as a copy target ({@link RegistryTarget}): what `dist push` and `dist copy` write
 * through. A careful pusher, after containers/image, go-containerregistry and containerd:
 *
 * - every blob is asked for first (`HEAD`) and skipped when the repository has it;
 * - a blob of another repository on the same registry is mounted (`POST ?mount=&from=`), with an
 *   upload when the registry declines;
 * - small blobs go up in one `PUT`, big ones in `PATCH` chunks; after a cut connection the
 *   upload's status (`GET`, its `Range`) says where to go on, and an upload the registry dropped
 *   (distribution 2.8 drops one whose chunk was cut) starts over;
 * - manifests are `PUT` with their exact bytes, children before parents (registries check what a
 *   manifest references), so digests stay as they were; the root under the tag asked for.
 *
 * @module
 */
import type { Descriptor } from "../content/descriptor.ts";
import { InvalidArgumentError, NotFoundError, SizeMismatchError } from "../content/errors.ts";
import {
  copyImage,
  type CopySource,
  type CopyTarget,
  type ProgressEvent,
  storeSource,
  type WriteContext,
} from "../content/images/copy.ts";
import { findImage } from "../content/images/records.ts";
import { formatReference, parseReference, type Reference } from "../content/reference.ts";
import type { Store } from "../content/store/store.ts";
import { sleep } from "../content/internal/mod.ts";
import type { RegistryClient, RegistryRequest } from "./client.ts";
import { RegistryError, RegistryNotFoundError } from "./errors.ts";

/** Blobs up to this size go up in one `PUT` (read whole into memory first). */
export const MONOLITHIC_MAX = 8 << 20;
/** The default size of an upload's `PATCH` chunks. */
export const DEFAULT_CHUNK_SIZE = 64 << 20;
/** How many times an upload is resumed or restarted after a failed chunk. */
const UPLOAD_ATTEMPTS = 5;

/** Options of {@link RegistryTarget}. */
export interface RegistryTargetOptions {
  /** The root manifest or index to `PUT` under the reference's tag (others go by digest). */
  root?: Descriptor;
  /** Another repository on the same registry that holds the blobs: they are mounted from it. */
  mountFrom?: Reference;
  /** Bytes per `PATCH` of a big blob (default {@link DEFAULT_CHUNK_SIZE}). */
  chunkSize?: number;
}

/** The repository `ref` names, as a copy target. */
export class RegistryTarget implements CopyTarget {
  readonly childrenFirst = true;
  readonly #client: RegistryClient;
  readonly #ref: Reference;
  readonly #name: string;
  readonly #options: RegistryTargetOptions;
  readonly #chunkSize: number;

  /** Writes into the repository of `ref`; its tag (if any) names the root. */
  constructor(client: RegistryClient, ref: Reference, options: RegistryTargetOptions = {}) {
    this.#client = client;
    this.#ref = ref;
    this.#name = formatReference(ref);
    this.#options = options;
    this.#chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isSafeInteger(this.#chunkSize) || this.#chunkSize < 1) {
      throw new InvalidArgumentError(`invalid upload chunk size ${options.chunkSize}`);
    }
  }

  async has(descriptor: Descriptor, signal: AbortSignal): Promise<boolean> {
    const reply = await this.#send({
      method: "HEAD",
      path: `blobs/${descriptor.digest}`,
      action: `check ${descriptor.digest} at ${this.#name}`,
      pass: [404],
      signal,
    });
    return reply.ok;
  }

  async writeManifest(
    descriptor: Descriptor,
    bytes: Uint8Array,
    context: WriteContext,
  ): Promise<"done" | "exists"> {
    const tag = this.#options.root?.digest === descriptor.digest ? this.#ref.tag : undefined;
    if (tag === undefined && (await this.#hasManifest(descriptor, context.signal))) {
      return "exists";
    }
    const body = bytes.slice(); // resendable, and no view of a buffer that changes
    const reply = await this.#send({
      method: "PUT",
      path: `manifests/${tag ?? descriptor.digest}`,
      headers: { "content-type": descriptor.mediaType },
      body: () => body,
      action: `push ${descriptor.mediaType} ${descriptor.digest} to ${this.#name}`,
      signal: context.signal,
    });
    await reply.body?.cancel();
    const stored = reply.headers.get("docker-content-digest");
    if (stored && stored !== descriptor.digest) {
      throw new RegistryError(
        `cannot push ${descriptor.digest} to ${this.#name}: the registry stored it as ${stored}`,
      );
    }
    return "done";
  }

  async writeBlob(
    descriptor: Descriptor,
    source: CopySource,
    context: WriteContext,
  ): Promise<"done" | "exists"> {
    let upload = await this.#startUpload(descriptor, context);
    if (upload === undefined) {
      context.report({
        status: "waiting",
        reason: `mounted from ${this.#options.mountFrom!.repository}`,
      });
      return "exists";
    }
    if (descriptor.size <= MONOLITHIC_MAX) {
      await context.transfer(() => this.#putWhole(descriptor, source, upload!.location, context));
      return "done";
    }
    await context.transfer(async () => {
      for (let attempt = 1;; attempt++) {
        try {
          await this.#putChunks(descriptor, source, upload!, context);
          return;
        } catch (error) {
          if (context.signal.aborted || attempt >= UPLOAD_ATTEMPTS || !retryable(error)) {
            throw error;
          }
          await sleep(250 * attempt, context.signal);
          // the upload goes on where the registry says it stands, or starts over
          upload = (await this.#uploadStatus(upload!, context)) ??
            (await this.#startUpload(descriptor, context, false))!;
        }
      }
    });
    return "done";
  }

  /** Opens an upload session, or mounts the blob: undefined when the mount took. */
  async #startUpload(
    descriptor: Descriptor,
    context: WriteContext,
    mount = true,
  ): Promise<Upload | undefined> {
    const from = mount ? this.#options.mountFrom : undefined;
    const reply = await this.#send({
      method: "POST",
      path: "blobs/uploads/",
      query: from ? { mount: descriptor.digest, from: from.repository } : undefined,
      scope: from ? `${this.#pushScope} repository:${from.repository}:pull` : undefined,
      action: `start an upload of ${descriptor.digest} to ${this.#name}`,
      signal: context.signal,
    });
    await reply.body?.cancel();
    if (from && reply.status === 201) return undefined;
    return { location: uploadLocation(reply, this.#name), offset: 0 };
  }

  /** Where an upload stands (its `Range`), or undefined when the registry dropped it. */
  async #uploadStatus(upload: Upload, context: WriteContext): Promise<Upload | undefined> {
    try {
      const reply = await this.#send({
        method: "GET",
        path: upload.location,
        action: `check an upload to ${this.#name}`,
        pass: [404, 416],
        signal: context.signal,
      });
      await reply.body?.cancel();
      if (!reply.ok) return undefined;
      // `Range: 0-N` holds bytes 0 to N; distribution says `0-0` (or nothing) for no bytes yet
      const range = /^(?:bytes=)?0-(\d+)$/.exec(reply.headers.get("range") ?? "");
      const end = range ? Number(range[1]) : 0;
      return {
        location: uploadLocation(reply, this.#name, upload.location),
        offset: end > 0 ? end + 1 : 0,
      };
    } catch (error) {
      if (!retryable(error)) throw error;
      return undefined;
    }
  }

  async #putWhole(
    descriptor: Descriptor,
    source: CopySource,
    location: string,
    context: WriteContext,
  ): Promise<void> {
    const bytes = await readWhole(descriptor, source, context);
    context.report({ status: "uploading", offset: 0 });
    const reply = await this.#send({
      method: "PUT",
      path: location,
      query: { digest: descriptor.digest },
      headers: { "content-type": "application/octet-stream" },
      body: () => bytes,
      action: `push ${descriptor.digest} to ${this.#name}`,
      signal: context.signal,
    });
    await reply.body?.cancel();
    context.moved(bytes.length);
  }

  /**
   * Uploads a big blob in `PATCH` chunks from where the upload at `location` stands, then
   * completes it with `PUT ?digest=`.
   */
  async #putChunks(
    descriptor: Descriptor,
    source: CopySource,
    upload: Upload,
    context: WriteContext,
  ): Promise<void> {
    let { location, offset } = upload;
    const opened = await source.open(descriptor, { offset, signal: context.signal });
    if (opened.offset !== offset) {
      await opened.stream.cancel();
      throw new SizeMismatchError(
        `cannot push ${descriptor.digest}: the source cannot start at ${offset}`,
      );
    }
    const reader = opened.stream.getReader();
    let carry: Uint8Array | undefined;
    try {
      while (offset < descriptor.size) {
        context.report({ status: "uploading", offset });
        const length = Math.min(this.#chunkSize, descriptor.size - offset);
        let sent = 0;
        // the chunk is streamed from the source; a chunk that fails is not sent again from here
        let used = false;
        const chunk = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (sent >= length) return controller.close();
            let piece = carry;
            carry = undefined;
            if (!piece) {
              const { done, value } = await reader.read();
              if (done) {
                return controller.error(
                  new SizeMismatchError(`cannot push ${descriptor.digest}: the source ended early`),
                );
              }
              piece = value;
            }
            if (piece.length > length - sent) {
              carry = piece.subarray(length - sent);
              piece = piece.subarray(0, length - sent);
            }
            sent += piece.length;
            context.moved(piece.length);
            controller.enqueue(piece);
            if (sent >= length) controller.close();
          },
        });
        const reply = await this.#send({
          method: "PATCH",
          path: location,
          headers: {
            "content-type": "application/octet-stream",
            "content-range": `${offset}-${offset + length - 1}`,
            "content-length": String(length),
          },
          body: () => {
            if (used) throw new RegistryError(`cannot push ${descriptor.digest}: chunk resent`);
            used = true;
            return chunk;
          },
          action: `push ${descriptor.digest} to ${this.#name}`,
          signal: context.signal,
          once: true,
        });
        await reply.body?.cancel();
        location = uploadLocation(reply, this.#name, location);
        offset += length;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    context.report({ status: "uploading", offset });
    const done = await this.#send({
      method: "PUT",
      path: location,
      query: { digest: descriptor.digest },
      action: `push ${descriptor.digest} to ${this.#name}`,
      signal: context.signal,
    });
    await done.body?.cancel();
  }

  async #hasManifest(descriptor: Descriptor, signal: AbortSignal): Promise<boolean> {
    const reply = await this.#send({
      method: "HEAD",
      path: `manifests/${descriptor.digest}`,
      headers: { accept: descriptor.mediaType },
      action: `check ${descriptor.digest} at ${this.#name}`,
      pass: [404],
      signal,
    });
    return reply.ok;
  }

  get #pushScope(): string {
    return `repository:${this.#ref.repository}:pull,push`;
  }

  #send(request: RegistryRequest): Promise<Response> {
    return this.#client.request(this.#ref, { scope: this.#pushScope, ...request });
  }
}

/** The URL of an upload session from a reply's `Location` (relative to the one before). */
function uploadLocation(reply: Response, name: string, previous?: string): string {
  const location = reply.headers.get("location");
  // relative to the request that got it (registries may send a path alone)
  if (location) return new URL(location, previous ?? reply.url).href;
  if (previous) return previous;
  throw new RegistryError(
    `cannot push to ${name}: the registry opened an upload without a Location`,
  );
}

/** An upload session: its URL, and how many bytes the registry holds. */
interface Upload {
  location: string;
  offset: number;
}

/** Reads a small blob whole from the source, checking its size. */
async function readWhole(
  descriptor: Descriptor,
  source: CopySource,
  context: WriteContext,
): Promise<Uint8Array<ArrayBuffer>> {
  const { stream } = await source.open(descriptor, { signal: context.signal });
  const bytes = new Uint8Array(descriptor.size);
  let filled = 0;
  for await (const chunk of stream) {
    if (filled + chunk.length > bytes.length) {
      throw new SizeMismatchError(
        `cannot push ${descriptor.digest}: the source has more than ${descriptor.size} bytes`,
      );
    }
    bytes.set(chunk, filled);
    filled += chunk.length;
  }
  if (filled !== bytes.length) {
    throw new SizeMismatchError(
      `cannot push ${descriptor.digest}: expected size ${descriptor.size}, got ${filled}`,
    );
  }
  return bytes;
}

/** Whether a failed chunk is worth resuming: network failures and 5xx, not refusals. */
function retryable(error: unknown): boolean {
  if (!(error instanceof RegistryError)) return !(error instanceof SizeMismatchError);
  return error.retryable || error.status === undefined || error.status >= 500 ||
    error.status === 416 || error.status === 404;
}

/** Options of {@link pushImage}. */
export interface PushImageOptions {
  /** Blobs uploaded at once (default 8); one over 16 MiB counts as two. */
  maxConcurrentUploads?: number;
  /** Bytes per `PATCH` of a big blob (default {@link DEFAULT_CHUNK_SIZE}). */
  chunkSize?: number;
  /** Stops the push; what was uploaded stays, and the next push skips it. */
  signal?: AbortSignal;
  /** Receives progress events. */
  onProgress?: (event: ProgressEvent) => void;
}

/** What {@link pushImage} pushed. */
export interface PushImageResult {
  /** The full destination reference. */
  name: string;
  /** The top descriptor (index or manifest), as pushed: its digest is the stored one. */
  descriptor: Descriptor;
  /** The single-platform manifests pushed. */
  manifests: Descriptor[];
  /** Bytes uploaded by this run. */
  uploaded: number;
}

/**
 * Pushes the image `name` (a record name, any spelling of its reference, or a digest in the
 * store) to `destination` (default: the record's own name) with every platform the store holds
 * of it: blobs first, then manifests, then the index, each with its exact bytes.
 */
export async function pushImage(
  client: RegistryClient,
  store: Store,
  name: string,
  destination?: string | Reference,
  options: PushImageOptions = {},
): Promise<PushImageResult> {
  const image = await findImage(store, name);
  const target = destination ?? image.name;
  if (target === undefined) {
    throw new InvalidArgumentError(
      `cannot push ${name}: an image named by digest needs a destination`,
    );
  }
  const ref = typeof target === "string" ? parseReference(target) : target;
  const label = formatReference(ref);
  try {
    const result = await copyImage(
      // the registry checks the digest of every upload: a blob changed on disk is refused there
      storeSource(store, { verify: false }),
      new RegistryTarget(client, ref, { root: image.target, chunkSize: options.chunkSize }),
      [image.target],
      {
        name: label,
        action: "push",
        allPlatforms: true,
        maxConcurrency: options.maxConcurrentUploads,
        signal: options.signal,
        onProgress: options.onProgress,
      },
    );
    return {
      name: label,
      descriptor: image.target,
      manifests: result.manifests,
      uploaded: result.copied,
    };
  } catch (error) {
    if (!(error instanceof NotFoundError) || error instanceof RegistryNotFoundError) throw error;
    // an index whose other platforms were never fetched: the registry would refuse it anyway
    throw new NotFoundError(
      `cannot push ${label}: ${error.message} (fetch the image with --all-platforms first)`,
      { cause: error },
    );
  }
}
