/**
 * The write side of `dist serve`: blob uploads as store ingests, manifest `PUT`s as image
 * records, and deletion with the CLI's in-use rules.
 *
 * An upload is the ingest `upload-<id>`: it shows in `dist active` with its offset, outlives a
 * restart of the server (the id in its URL names it), and its bytes reach `blobs/` only when the
 * final `PUT` gave a digest they match.
 *
 * @module
 */
import { type Descriptor, MediaType } from "../../content/descriptor.ts";
import { type Digest, digestOf, isDigest } from "../../content/digest.ts";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InUseError,
  LockedError,
  NotFoundError,
  SizeMismatchError,
} from "../../content/errors.ts";
import { blobDeleter } from "../../content/images/gc.ts";
import { checkDescriptor, MAX_MANIFEST_SIZE } from "../../content/images/graph.ts";
import type { Writer } from "../../content/store/capabilities.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import type { ServeContext } from "./context.ts";
import { API_HEADERS, ServeError } from "./errors.ts";

const UPLOAD_ID = /^[0-9a-f-]{36}$/;

/** The ingest ref of an upload. */
function uploadRef(id: string): string {
  if (!UPLOAD_ID.test(id)) {
    throw new ServeError(404, "BLOB_UPLOAD_UNKNOWN", `upload ${JSON.stringify(id)} not found`);
  }
  return `upload-${id}`;
}

function requirePush(ctx: ServeContext): void {
  if (!ctx.settings.allowPush) {
    throw new ServeError(
      405,
      "UNSUPPORTED",
      "this registry is read-only (dist serve --allow-push)",
    );
  }
}

function digestParam(value: string | null): Digest {
  if (value === null || !isDigest(value)) {
    throw new ServeError(400, "DIGEST_INVALID", `invalid digest ${JSON.stringify(value)}`);
  }
  return value;
}

/** `POST /v2/<name>/blobs/uploads/`: a session, a monolithic upload (`?digest=`), or a mount. */
export async function startUpload(
  ctx: ServeContext,
  req: Request,
  name: string,
): Promise<Response> {
  requirePush(ctx);
  const params = new URL(req.url).searchParams;
  const mount = params.get("mount");
  if (mount !== null && isDigest(mount)) {
    ctx.protectUpload(mount); // before looking: what it finds stays until its manifest comes
    if (await ctx.store.has(mount)) {
      await req.body?.cancel();
      return blobCreated(name, mount);
    }
  }
  const digest = params.get("digest");
  if (digest !== null) {
    const expected = digestParam(digest);
    const id = crypto.randomUUID();
    await finish(ctx, uploadRef(id), expected, req.body);
    return blobCreated(name, expected);
  }
  await req.body?.cancel();
  const id = crypto.randomUUID();
  // the ingest exists from now on, empty: `dist active` shows it and a restart keeps it
  await (await openWriter(ctx, uploadRef(id))).close();
  return uploadStatus(name, id, 0, 202);
}

/** `GET /v2/<name>/blobs/uploads/<id>`: where the upload stands. */
export async function getUpload(ctx: ServeContext, name: string, id: string): Promise<Response> {
  return uploadStatus(name, id, await uploadOffset(ctx, id), 204);
}

/** `PATCH /v2/<name>/blobs/uploads/<id>`: a chunk, at the offset `Content-Range` says. */
export async function patchUpload(
  ctx: ServeContext,
  req: Request,
  name: string,
  id: string,
): Promise<Response> {
  requirePush(ctx);
  const writer = await openUpload(ctx, id);
  try {
    const range = req.headers.get("content-range");
    if (range !== null) {
      const match = /^(?:bytes )?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(range.trim());
      if (!match || Number(match[1]) !== writer.offset) {
        await req.body?.cancel();
        throw new ServeError(
          416,
          "BLOB_UPLOAD_INVALID",
          `range ${range} does not start at the upload's ${writer.offset} bytes`,
          writer.offset > 0 ? { range: `0-${writer.offset - 1}` } : {},
        );
      }
    }
    await append(writer, req.body);
    return uploadStatus(name, id, writer.offset, 202);
  } finally {
    await writer.close(); // keeps the bytes for the next chunk, or a restart
  }
}

/** `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last chunk, then the blob is committed. */
export async function putUpload(
  ctx: ServeContext,
  req: Request,
  name: string,
  id: string,
): Promise<Response> {
  requirePush(ctx);
  const digest = digestParam(new URL(req.url).searchParams.get("digest"));
  await uploadOffset(ctx, id); // an unknown upload is 404, not a new one
  await finish(ctx, uploadRef(id), digest, req.body);
  return blobCreated(name, digest);
}

/** `DELETE /v2/<name>/blobs/uploads/<id>`: the upload is dropped. */
export async function cancelUpload(ctx: ServeContext, id: string): Promise<Response> {
  const ref = uploadRef(id);
  try {
    await ctx.store.abort(ref);
  } catch (error) {
    if (error instanceof NotFoundError) {
      throw new ServeError(404, "BLOB_UPLOAD_UNKNOWN", `upload ${id} not found`);
    }
    throw error;
  }
  return new Response(null, { status: 204, headers: API_HEADERS });
}

async function uploadOffset(ctx: ServeContext, id: string): Promise<number> {
  const ref = uploadRef(id);
  try {
    return (await ctx.store.status(ref)).offset;
  } catch (error) {
    if (error instanceof NotFoundError) {
      throw new ServeError(404, "BLOB_UPLOAD_UNKNOWN", `upload ${id} not found`);
    }
    throw error;
  }
}

async function openUpload(ctx: ServeContext, id: string): Promise<Writer> {
  await uploadOffset(ctx, id);
  return await openWriter(ctx, uploadRef(id));
}

/** The writer of the ingest `ref`; a 409 while another request writes it. */
async function openWriter(ctx: ServeContext, ref: string): Promise<Writer> {
  try {
    return await ctx.store.writer(ref, { keepEmpty: true });
  } catch (error) {
    if (error instanceof LockedError) {
      throw new ServeError(409, "BLOB_UPLOAD_INVALID", `${ref} is being written already`);
    }
    throw error;
  }
}

async function append(writer: Writer, body: ReadableStream<Uint8Array> | null): Promise<void> {
  if (!body) return;
  for await (const chunk of body) await writer.write(chunk);
}

/** Appends `body` to the ingest `ref` and commits it as `digest`. */
async function finish(
  ctx: ServeContext,
  ref: string,
  digest: Digest,
  body: ReadableStream<Uint8Array> | null,
): Promise<void> {
  const writer = await openWriter(ctx, ref);
  try {
    await append(writer, body);
    ctx.protectUpload(digest);
    await writer.commit(writer.offset, digest);
  } catch (error) {
    if (error instanceof AlreadyExistsError) return; // the same content, from another upload
    await writer.discard();
    if (error instanceof DigestMismatchError || error instanceof SizeMismatchError) {
      throw new ServeError(400, "DIGEST_INVALID", error.message);
    }
    throw error;
  } finally {
    await writer.close();
  }
}

function uploadStatus(name: string, id: string, offset: number, status: number): Response {
  return new Response(null, {
    status,
    headers: {
      ...API_HEADERS,
      location: `/v2/${name}/blobs/uploads/${id}`,
      range: `0-${Math.max(0, offset - 1)}`,
      "docker-upload-uuid": id,
      "content-length": "0",
    },
  });
}

function blobCreated(name: string, digest: Digest): Response {
  return new Response(null, {
    status: 201,
    headers: {
      ...API_HEADERS,
      location: `/v2/${name}/blobs/${digest}`,
      "docker-content-digest": digest,
      "content-length": "0",
    },
  });
}

/**
 * `PUT /v2/<name>/manifests/<reference>`: the manifest is checked (its digest, and that what it
 * references is here), stored, and recorded under the tag as `HOST/NAME:TAG`.
 */
export async function putManifest(
  ctx: ServeContext,
  req: Request,
  name: string,
  reference: string,
): Promise<Response> {
  requirePush(ctx);
  const bytes = await readCapped(req);
  const digest = digestOf(bytes);
  if (isDigest(reference) && reference !== digest) {
    throw new ServeError(400, "DIGEST_INVALID", `manifest digest ${digest} is not ${reference}`);
  }
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new ServeError(400, "MANIFEST_INVALID", "the manifest is not JSON");
  }
  const mediaType = (req.headers.get("content-type") ?? "").split(";")[0].trim() ||
    (typeof value?.mediaType === "string" ? value.mediaType : MediaType.ociManifest);
  ctx.protectUpload(digest); // until its record is written
  await checkReferences(ctx, value);
  await writeBlob(ctx.store, `manifest-${digest}`, [bytes], { digest, size: bytes.length });
  const descriptor: Descriptor = { mediaType, digest, size: bytes.length };
  const host = new URL(req.url).host;
  const subject = (value.subject as { digest?: string } | undefined)?.digest;
  // by digest too: the repository serves it from then on, and prune keeps it
  const recorded = isDigest(reference)
    ? `${host}/${name}@${digest}`
    : `${host}/${name}:${reference}`;
  await ctx.images.put(recorded, descriptor);
  return new Response(null, {
    status: 201,
    headers: {
      ...API_HEADERS,
      location: `/v2/${name}/manifests/${digest}`,
      "docker-content-digest": digest,
      "content-length": "0",
      ...(subject ? { "oci-subject": subject } : {}),
    },
  });
}

async function readCapped(req: Request): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body ?? []) {
    total += chunk.length;
    if (total > MAX_MANIFEST_SIZE) {
      throw new ServeError(400, "SIZE_INVALID", `a manifest over ${MAX_MANIFEST_SIZE} bytes`);
    }
    parts.push(chunk);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) (out.set(part, at), at += part.length);
  return out;
}

/** Refuses a manifest whose config, layers or manifests are not in the store. */
async function checkReferences(ctx: ServeContext, value: Record<string, unknown>): Promise<void> {
  const children: unknown[] = [
    ...(value.config ? [value.config] : []),
    ...(Array.isArray(value.layers) ? value.layers : []),
    ...(Array.isArray(value.manifests) ? value.manifests : []),
  ];
  for (const [i, child] of children.entries()) {
    let descriptor: Descriptor;
    try {
      descriptor = checkDescriptor(child, `reference ${i}`);
    } catch (error) {
      throw new ServeError(400, "MANIFEST_INVALID", (error as Error).message);
    }
    // non-distributable layers live elsewhere (their urls)
    if (descriptor.urls?.length) continue;
    // kept from here on: a client skips blobs the server has, which may be ones no image uses
    ctx.protectUpload(descriptor.digest);
    if (!(await ctx.store.has(descriptor.digest))) {
      throw new ServeError(
        400,
        "MANIFEST_BLOB_UNKNOWN",
        `the manifest references ${descriptor.digest}, which is not here`,
      );
    }
  }
}

function requireDelete(ctx: ServeContext): void {
  if (!ctx.settings.allowDelete) {
    throw new ServeError(405, "UNSUPPORTED", "deletion is off (dist serve --allow-delete)");
  }
}

/**
 * `DELETE /v2/<name>/manifests/<reference>`: a tag's record goes; by digest every record of
 * the repository pointing at it goes, and the manifest itself unless another image uses it.
 */
export async function deleteManifest(
  ctx: ServeContext,
  name: string,
  reference: string,
): Promise<Response> {
  requireDelete(ctx);
  const tagged = (await ctx.tagged()).filter((t) => t.repository === name);
  const doomed = isDigest(reference)
    ? tagged.filter((t) => t.record.target.digest === reference)
    : tagged.filter((t) => t.tag === reference);
  if (isDigest(reference) && doomed.length === 0 && !(await ctx.reaches(name, reference))) {
    throw new ServeError(404, "MANIFEST_UNKNOWN", `manifest ${name}@${reference} not found`);
  }
  const byDigest = isDigest(reference) && (await ctx.store.has(reference));
  if (doomed.length === 0 && !isDigest(reference)) {
    throw new ServeError(404, "MANIFEST_UNKNOWN", `manifest ${name}:${reference} not found`);
  }
  for (const { record } of doomed) await ctx.images.remove(record.name);
  if (byDigest) {
    ctx.forgetUpload(reference);
    const remove = await blobDeleter(ctx.store);
    await remove(reference).catch((error) => {
      if (!(error instanceof InUseError)) throw error; // another image still has it: it stays
    });
  }
  return new Response(null, { status: 202, headers: API_HEADERS });
}

/** `DELETE /v2/<name>/blobs/<digest>`: refused (409) while an image uses the blob. */
export async function deleteBlob(ctx: ServeContext, digest: string): Promise<Response> {
  requireDelete(ctx);
  if (!isDigest(digest)) throw new ServeError(400, "DIGEST_INVALID", `invalid digest ${digest}`);
  ctx.forgetUpload(digest); // what the client asks to delete, the server no longer keeps for it
  const remove = await blobDeleter(ctx.store);
  try {
    await remove(digest);
  } catch (error) {
    if (error instanceof NotFoundError) {
      throw new ServeError(404, "BLOB_UNKNOWN", `blob ${digest} not found`);
    }
    if (error instanceof InUseError) throw new ServeError(409, "DENIED", error.message);
    throw error;
  }
  return new Response(null, { status: 202, headers: API_HEADERS });
}
