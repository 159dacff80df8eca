/**
 * Checking stored images, as `ctr images check` does and further: every blob an image reaches is
 * read and hashed, so content changed on disk (a poisoned cache) is found, not only content
 * that is missing.
 *
 * @module
 */
import type { Descriptor } from "../descriptor.ts";
import {
  DigestMismatchError,
  type DistError,
  NotFoundError,
  SizeMismatchError,
} from "../errors.ts";
import type { Provider } from "../store/capabilities.ts";
import {
  copyImage,
  type CopySource,
  type CopyTarget,
  type ProgressEvent,
  storeSource,
} from "./copy.ts";

/** What is wrong with one blob of an image. */
export interface BlobProblem {
  /** The blob. */
  descriptor: Descriptor;
  /** `missing`, or `corrupt` when its content does not match its digest or size. */
  problem: "missing" | "corrupt";
  /** The error that showed it. */
  reason: string;
}

/** Options of {@link checkImage}. */
export interface CheckOptions {
  /** Names the image in events and errors. */
  name?: string;
  /** Stops the check. */
  signal?: AbortSignal;
  /** Receives an event a blob checked. */
  onProgress?: (event: ProgressEvent) => void;
}

/**
 * Reads every blob below `root` that the store holds the manifest of (every stored platform) and
 * returns what is missing or does not match its digest; an empty list means the image is whole.
 * Throws when a manifest itself cannot be read or is corrupt: nothing below it can be told.
 */
export async function checkImage(
  store: Provider,
  root: Descriptor,
  options: CheckOptions = {},
): Promise<BlobProblem[]> {
  const target = new CheckTarget();
  await copyImage(storeSource(store), target, [root], {
    name: options.name,
    action: "check",
    allPlatforms: true,
    present: true,
    maxConcurrency: 4,
    signal: options.signal,
    onProgress: options.onProgress,
  });
  return target.problems;
}

/** A copy target that keeps nothing: it reads each blob whole, verified, and notes problems. */
class CheckTarget implements CopyTarget {
  readonly childrenFirst = false;
  readonly problems: BlobProblem[] = [];

  // deno-lint-ignore require-await
  async has(): Promise<boolean> {
    return false;
  }

  // deno-lint-ignore require-await
  async writeManifest(): Promise<"done"> {
    return "done"; // read and verified by the copy already
  }

  async writeBlob(descriptor: Descriptor, source: CopySource): Promise<"done"> {
    try {
      const { stream } = await source.open(descriptor, {});
      for await (const _ of stream) { /* the source verifies as it reads */ }
    } catch (error) {
      const missing = error instanceof NotFoundError;
      const corrupt = error instanceof DigestMismatchError || error instanceof SizeMismatchError;
      if (!missing && !corrupt) throw error;
      const reason = (error as DistError).message;
      this.problems.push({ descriptor, problem: missing ? "missing" : "corrupt", reason });
    }
    return "done";
  }
}
