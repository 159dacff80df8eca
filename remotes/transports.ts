/**
 * `dist copy`: an image from one place to another, the places named as skopeo names them —
 * `docker://REF` (or a bare reference) for a registry, `oci:DIR[:NAME]` for an OCI image layout
 * directory, `oci-archive:FILE[:NAME]` and `docker-archive:FILE[:NAME]` for tar archives.
 *
 * Registry to registry streams every blob straight through (verified on the way, mounted when
 * both are repositories of one registry); a layout directory is read and written in place, as
 * the store it is; archives pass through a temporary store, as a tar stream cannot be read out
 * of order.
 *
 * @module
 */
import type { Descriptor, Platform } from "../content/descriptor.ts";
import { InvalidArgumentError, NotFoundError } from "../content/errors.ts";
import { exportImages } from "../content/archives/export.ts";
import { importArchive } from "../content/archives/import.ts";
import {
  copyImage,
  type CopyOptions,
  type CopySource,
  type ProgressEvent,
  storeSource,
  StoreTarget,
} from "../content/images/copy.ts";
import { kindOf, parseIndex, selectManifests } from "../content/images/graph.ts";
import { findImage, Images } from "../content/images/records.ts";
import { openFileStream, parentDirectory, writeFileAtomic } from "../content/internal/mod.ts";
import { hostPlatform } from "../content/platform.ts";
import { formatReference, parseReference, type Reference } from "../content/reference.ts";
import { Store } from "../content/store/store.ts";
import { VerifyStream } from "../content/verify.ts";
import type { RegistryClient } from "./client.ts";
import { registrySource } from "./copy.ts";
import { RegistryTarget } from "./push.ts";
import { addFallbackReferrer, hasReferrersApi, listReferrers } from "./referrers.ts";

/** Where `dist copy` reads or writes an image. */
export type Location =
  | { transport: "docker"; ref: Reference }
  | { transport: "oci"; path: string; name?: string }
  | { transport: "oci-archive" | "docker-archive"; path: string; name?: string };

/** Parses `docker://REF`, `oci:DIR[:NAME]`, `oci-archive:FILE[:NAME]`, `docker-archive:…` or a reference. */
export function parseLocation(text: string): Location {
  const match = /^(oci|oci-archive|docker-archive):(.*)$/.exec(text);
  if (!match) return { transport: "docker", ref: parseReference(text.replace(/^docker:\/\//, "")) };
  const transport = match[1] as "oci" | "oci-archive" | "docker-archive";
  const rest = match[2];
  // as skopeo splits them: the path ends at the first colon, the name (a reference) follows
  const colon = rest.indexOf(":");
  const path = colon > 0 ? rest.slice(0, colon) : rest;
  const name = colon > 0 ? rest.slice(colon + 1) : undefined;
  if (path === "") {
    throw new InvalidArgumentError(`invalid location ${JSON.stringify(text)}: no path`);
  }
  return { transport, path, name: name || undefined };
}

/** Options of {@link copyLocation}. */
export interface CopyLocationOptions {
  /** The platform to copy of a multi-platform image (default: the host's): its manifest alone. */
  platform?: Platform;
  /** Copy the whole index, every platform and attestation. */
  allPlatforms?: boolean;
  /**
   * Copy the referrers (signatures, attestations) of the image and of its manifests too, between
   * registries (see {@link listReferrers}).
   */
  referrers?: boolean;
  /** Blobs moved at once. */
  maxConcurrency?: number;
  /** Stops the copy. */
  signal?: AbortSignal;
  /** Receives progress events. */
  onProgress?: (event: ProgressEvent) => void;
}

/** What {@link copyLocation} copied. */
export interface CopyLocationResult {
  /** The top descriptor written: the index, or the one platform's manifest. */
  descriptor: Descriptor;
  /** Bytes moved. */
  copied: number;
  /** The referrers copied. */
  referrers: Descriptor[];
}

/** Copies the image at `from` to `to`. */
export async function copyLocation(
  client: RegistryClient,
  from: Location,
  to: Location,
  options: CopyLocationOptions = {},
): Promise<CopyLocationResult> {
  const temporary: string[] = [];
  // scratch stores go beside a local destination, where the copy may write anyway (a scoped
  // --allow-write covers them); into the system's temporary directory when the destination is a
  // registry, or its folder does not exist yet or is not writable
  const scratch = async () => {
    let dir: string | undefined;
    if (to.transport !== "docker") {
      const near = parentDirectory(to.path);
      dir = await Deno.makeTempDir({ dir: near, prefix: ".dist-copy-" }).catch(() => undefined);
    }
    dir ??= await Deno.makeTempDir({ prefix: "dist-copy-" });
    temporary.push(dir);
    return dir;
  };
  try {
    const source = await openSource(client, from, scratch, options.signal);
    const root = await chooseRoot(source, options);
    const copy = {
      name: source.name,
      allPlatforms: true, // the root is the index only when all its platforms are wanted
      maxConcurrency: options.maxConcurrency,
      signal: options.signal,
      onProgress: options.onProgress,
    };
    if (to.transport === "docker") {
      const mountFrom = from.transport === "docker" && from.ref.registry === to.ref.registry &&
          from.ref.repository !== to.ref.repository
        ? from.ref
        : undefined;
      const target = new RegistryTarget(client, to.ref, { root, mountFrom });
      const { copied, manifests } = await copyImage(source.read, target, [root], copy);
      if (!options.referrers) return { descriptor: root, copied, referrers: [] };
      if (from.transport !== "docker") {
        throw new InvalidArgumentError("cannot copy referrers: they are read from a registry");
      }
      const subjects = [root, ...manifests.filter((m) => m.digest !== root.digest)];
      const referrers = await copyReferrers(client, from.ref, to.ref, subjects, {
        ...copy,
        mountFrom,
        source: source.read,
      });
      return { descriptor: root, copied, referrers };
    }
    if (to.transport === "oci") {
      const store = await Store.open(to.path);
      const { copied } = await copyImage(source.read, new StoreTarget(store), [root], copy);
      await new Images(to.path).put(to.name ?? source.name, root);
      return { descriptor: root, copied, referrers: [] };
    }
    // an archive is written from a temporary store holding the image
    const dir = await scratch();
    const store = await Store.open(dir);
    const { copied } = await copyImage(source.read, new StoreTarget(store), [root], copy);
    const name = to.name ?? source.name;
    await new Images(dir).put(name, root);
    const format = to.transport === "oci-archive" ? "oci" : "docker";
    const archive = await exportImages(store, [name], { format, signal: options.signal });
    await writeFileAtomic(to.path, archive);
    return { descriptor: root, copied, referrers: [] };
  } finally {
    for (const dir of temporary) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Copies the referrers of each of `subjects` from `from` to `to`, and where the destination has
 * no referrers API records them in its fallback index.
 */
async function copyReferrers(
  client: RegistryClient,
  from: Reference,
  to: Reference,
  subjects: Descriptor[],
  options: CopyOptions & { mountFrom?: Reference; source: CopySource },
): Promise<Descriptor[]> {
  const copied: Descriptor[] = [];
  let api: boolean | undefined;
  for (const subject of subjects) {
    for (const referrer of await listReferrers(client, from, subject.digest, options.signal)) {
      const target = new RegistryTarget(client, to, { mountFrom: options.mountFrom });
      await copyImage(options.source, target, [referrer], { ...options, allPlatforms: true });
      api ??= await hasReferrersApi(client, to, subject.digest, options.signal);
      if (!api) await addFallbackReferrer(client, to, subject.digest, referrer, options.signal);
      copied.push(referrer);
    }
  }
  return copied;
}

/** An opened source: where to read, what its image is called, and its top descriptor. */
interface OpenedSource {
  read: CopySource;
  name: string;
  top: Descriptor;
}

async function openSource(
  client: RegistryClient,
  from: Location,
  scratch: () => Promise<string>,
  signal?: AbortSignal,
): Promise<OpenedSource> {
  if (from.transport === "docker") {
    const top = await client.resolve(from.ref, { signal });
    return {
      read: verifying(registrySource(client, from.ref)),
      name: formatReference(from.ref),
      top,
    };
  }
  let dir = from.path;
  if (from.transport !== "oci") {
    dir = await scratch();
    await importArchive(await Store.open(dir), await openFileStream(from.path), { signal });
  }
  if (!(await Deno.stat(`${dir}/oci-layout`).then(() => true, () => false))) {
    throw new NotFoundError(`cannot copy from ${from.path}: it is no OCI image layout`);
  }
  const store = await Store.open(dir, { create: false });
  const image = await findLayoutImage(store, from);
  return { read: storeSource(store), name: image.name, top: image.target };
}

/** The image a layout names `name`, or its only image when no name is given. */
async function findLayoutImage(
  store: Store,
  from: Location & { path: string; name?: string },
): Promise<{ name: string; target: Descriptor }> {
  if (from.name !== undefined) {
    const found = await findImage(store, from.name);
    return { name: found.name ?? from.name, target: found.target };
  }
  const records = await new Images(store.root).list();
  if (records.length !== 1) {
    throw new NotFoundError(
      `cannot copy from ${from.path}: it holds ${records.length} images; name one ` +
        `(${from.transport}:${from.path}:NAME)`,
    );
  }
  return records[0];
}

/** The descriptor to copy: the index with `allPlatforms`, else the one platform's manifest. */
async function chooseRoot(source: OpenedSource, options: CopyLocationOptions): Promise<Descriptor> {
  const { top } = source;
  if (options.allPlatforms || kindOf(top) !== "index") return top;
  const bytes = await source.read.readManifest(top, { signal: options.signal });
  const [chosen] = selectManifests(parseIndex(bytes, top), {
    platforms: [options.platform ?? hostPlatform()],
  });
  const { platform: _, ...manifest } = chosen;
  return manifest;
}

/** A source whose whole reads are verified as they stream (a registry's content is not trusted). */
function verifying(source: CopySource): CopySource {
  return {
    ...source,
    async open(descriptor, options) {
      const opened = await source.open(descriptor, options);
      if (opened.offset > 0) return opened;
      const label = `${descriptor.digest} from the source`;
      return {
        ...opened,
        stream: opened.stream.pipeThrough(new VerifyStream({ ...descriptor, label })),
      };
    },
  };
}
