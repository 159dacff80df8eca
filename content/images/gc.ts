/**
 * Garbage collection: blobs that no image record reaches are removed, and so are ingests nobody
 * touched for a while.
 *
 * Roots are every descriptor in `index.json`; from each, indexes and manifests present in the
 * store are walked (every platform, attestations included) to their configs and layers. A
 * process that commits blobs before recording them (a fetch) holds a shared lease; collection
 * takes the lease exclusively, so it never sweeps a blob a running fetch is about to record.
 *
 * A record whose own index or manifest is missing reaches nothing, so collecting then would
 * sweep every blob of an image that is still recorded: collection refuses instead. (A missing
 * manifest below an index is normal: a fetch stores only the platforms it was asked for.)
 *
 * @example
 * ```ts
 * import { Store } from "../store/store.ts";
 * import { collectGarbage } from "./gc.ts";
 * const root = await Deno.makeTempDir();
 * const store = await Store.open(root);
 * const result = await collectGarbage(store, { dryRun: true });
 * console.assert(result.blobs.length === 0);
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */
import type { Descriptor } from "../descriptor.ts";
import type { Digest } from "../digest.ts";
import { CorruptContentError, InUseError, LockedError, NotFoundError } from "../errors.ts";
import { walkImage } from "./graph.ts";
import { Images, recordName } from "./records.ts";
import { gcLockPath, leasedDigests, leaseLock } from "./lease.ts";
import type { Info, Status } from "../store/capabilities.ts";
import type { Store } from "../store/store.ts";

/** Options of {@link collectGarbage}. */
export interface GcOptions {
  /** Report what would be removed without removing anything. */
  dryRun?: boolean;
  /**
   * Also remove ingests not updated for this many milliseconds; leave undefined to keep every
   * ingest (they are partial downloads that a later fetch resumes).
   */
  ingestsOlderThan?: number;
}

/** What {@link collectGarbage} removed (or, with `dryRun`, would remove). */
export interface GcResult {
  /** Unreachable blobs. */
  blobs: Info[];
  /** Stale ingests. */
  ingests: Status[];
  /** The bytes the removed blobs held. */
  bytes: number;
  /** How many blobs are reachable and stay. */
  kept: number;
}

/** What the image records of a store reach; see {@link imageUses}. */
export interface ImageUses {
  /** Each blob in the store that a record reaches, with the name of one record reaching it. */
  blobs: Map<Digest, string>;
  /**
   * Records whose blobs cannot all be told: their own index or manifest is not in the store, or
   * a manifest on the way is unreadable (`why` says which).
   */
  incomplete: { name: string; digest: Digest; why: string }[];
}

/**
 * Walks every root in `index.json` (every platform, attestations included) and reports which
 * blobs in `store` each reaches, and which records cannot be walked to the end. A root without
 * a name (another tool's entry) goes by its digest.
 */
export async function imageUses(store: Store): Promise<ImageUses> {
  const blobs = new Map<Digest, string>();
  const incomplete: ImageUses["incomplete"] = [];
  for (const root of await new Images(store.root).roots()) {
    const name = rootName(root);
    if (!(await store.has(root.digest))) {
      incomplete.push({ name, digest: root.digest, why: "its own manifest or index is missing" });
      continue;
    }
    // a second name for content already walked reaches nothing new
    if (blobs.has(root.digest)) continue;
    blobs.set(root.digest, name);
    try {
      for await (const entry of walkImage(store, root)) {
        const digest = entry.descriptor.digest;
        if (entry.present && !blobs.has(digest)) blobs.set(digest, name);
      }
    } catch (error) {
      // one unreadable manifest must not hide what the other records use
      if (!(error instanceof CorruptContentError)) throw error;
      incomplete.push({ name, digest: root.digest, why: error.message });
    }
  }
  return { blobs, incomplete };
}

/** Options of {@link blobDeleter}. */
export interface DeleteOptions {
  /** Also delete blobs an image record uses (the image breaks). */
  force?: boolean;
}

/**
 * A function that deletes blobs as `dist delete` and `dist serve` do: a blob an image record
 * reaches stays, with {@link InUseError} naming the image, unless `force`; so does one a fetch,
 * import or upload in progress has claimed in its lease (see lease.ts). The records are walked
 * once, when the function is made: it serves one batch of deletions.
 */
export async function blobDeleter(
  store: Store,
  options: DeleteOptions = {},
): Promise<(digest: Digest) => Promise<void>> {
  const users = options.force ? new Map<Digest, string>() : (await imageUses(store)).blobs;
  // a promise, as a store's delete is, though the work is synchronous (see below)
  // deno-lint-ignore require-await
  return async (digest) => {
    const image = users.get(digest);
    if (image !== undefined) {
      throw new InUseError(
        `cannot delete ${digest}: image ${image} uses it (--force deletes it anyway)`,
      );
    }
    // content a running fetch or import has claimed stays, --force or not: it is about to be
    // recorded; checked and deleted under the lease lock, so no claim slips in between, and
    // synchronously, as `dist serve` takes that lock in its own handlers (see Store.deleteSync)
    let leased: boolean;
    {
      using _lock = leaseLock(store.root);
      leased = leasedDigests(store.root).has(digest);
      if (!leased) store.deleteSync(digest);
    }
    if (leased) {
      throw new InUseError(
        `cannot delete ${digest}: a fetch, import or upload in progress uses it`,
      );
    }
  };
}

/** The name an `index.json` entry goes by (as {@link Images.list} reads it), else its digest. */
function rootName(root: Descriptor): string {
  return recordName(root) ?? root.digest;
}

/**
 * Removes blobs no image record reaches, and with `ingestsOlderThan` stale ingests. Throws
 * {@link LockedError} while a fetch holds a lease on the store, and {@link CorruptContentError},
 * removing nothing, while a record cannot be walked (see {@link ImageUses.incomplete}).
 */
export async function collectGarbage(store: Store, options: GcOptions = {}): Promise<GcResult> {
  using file = await Deno.open(gcLockPath(store.root), { read: true, write: true, create: true });
  if (!(await file.tryLock(true))) {
    throw new LockedError(
      `cannot collect garbage in ${store.root}: a fetch is in progress, try again when it ends`,
    );
  }
  try {
    const { blobs: reachable, incomplete } = await imageUses(store);
    if (incomplete.length > 0) {
      const what = incomplete.map((m) => `image ${m.name} (${m.digest}): ${m.why}`).join("; ");
      throw new CorruptContentError(
        `cannot collect garbage in ${store.root}, as it would remove blobs of images it cannot ` +
          `walk; fetch them again or remove their records (dist images rm NAME): ${what}`,
      );
    }
    const unreached: Info[] = [];
    for await (const info of store.list()) {
      if (!reachable.has(info.digest)) unreached.push(info);
    }
    // what a lease that lets collection run protects (dist serve's uploads) is kept; each blob
    // is looked up and deleted under the lease lock, so that nothing is protected in between,
    // and one at a time, so that a server protecting an upload waits for one deletion at most
    const blobs: Info[] = [];
    let bytes = 0;
    for (const info of unreached) {
      using _lock = leaseLock(store.root);
      if (leasedDigests(store.root).has(info.digest)) continue;
      blobs.push(info);
      bytes += info.size;
      if (options.dryRun) continue;
      try {
        store.deleteSync(info.digest);
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
      }
    }
    const ingests: Status[] = options.ingestsOlderThan === undefined
      ? []
      : await store.prune({ olderThan: options.ingestsOlderThan, dryRun: options.dryRun });
    return { blobs, ingests, bytes, kept: reachable.size };
  } finally {
    await file.unlock();
  }
}
