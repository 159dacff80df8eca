/**
 * `dist fetch`, `pull`, `unpack`, `push`, `copy`: images between registries, the store and bundles.
 *
 * @module
 */
import type { RuntimeOptions } from "../content/bundle/runtime_spec.ts";
import type { Descriptor } from "../content/descriptor.ts";
import { shortDigest } from "../content/digest.ts";
import { resolveManifest } from "../content/images/graph.ts";
import { findImage } from "../content/images/records.ts";
import { processIds, requirePermission } from "../content/internal/mod.ts";
import { parsePlatform } from "../content/platform.ts";
import { parseReference, type Reference } from "../content/reference.ts";
import { Store } from "../content/store/store.ts";
import type { RegistryClient } from "../remotes/client.ts";
import { fetchImage, type FetchImageOptions, type FetchImageResult } from "../remotes/copy.ts";
import type { Mirror } from "../remotes/mirrors.ts";
import {
  boolFlag,
  type Context,
  expectArgs,
  listFlag,
  positiveFlag,
  sizeFlag,
  stringFlag,
  UsageError,
} from "./_args.ts";
import { encoder, forEachReporting, formatBytes, out, writeAll } from "./_output.ts";
import { interruptible, withProgress } from "./_progress.ts";
import { registryClient } from "./_registry.ts";
import { READ_ONLY } from "./_store.ts";

/** The runtime options the bundle flags ask for. */
function runtimeFlags(ctx: Context): RuntimeOptions {
  const ids = processIds();
  const asked = ctx.flags["rootless"];
  const rootless = asked === undefined ? ids !== undefined && ids.uid !== 0 : asked === true;
  if (rootless && !ids) {
    throw new UsageError("--rootless needs --allow-sys=uid,gid to map your ids");
  }
  return {
    rootless: rootless ? ids : undefined,
    readOnly: boolFlag(ctx, "read-only"),
    terminal: boolFlag(ctx, "terminal"),
    hostname: stringFlag(ctx, "hostname"),
  };
}

/** The fetch options from the fetch flags. */
function fetchFlags(ctx: Context): FetchImageOptions {
  const platforms = listFlag(ctx, "platform").map(parsePlatform);
  const allPlatforms = boolFlag(ctx, "all-platforms");
  if (allPlatforms && platforms.length) {
    throw new UsageError("--all-platforms conflicts with --platform");
  }
  const max = stringFlag(ctx, "max-concurrent-downloads");
  if (max !== undefined && !/^[1-9]\d*$/.test(max)) {
    throw new UsageError(`--max-concurrent-downloads wants a positive number, got ${max}`);
  }
  return { platforms, allPlatforms, maxConcurrentDownloads: max ? Number(max) : undefined };
}

/** The mirrors `--mirror` and `--hosts-dir` name for `ref`'s registry. */
async function mirrorsFor(ctx: Context, ref: Reference): Promise<Mirror[]> {
  const mirrors = listFlag(ctx, "mirror");
  const dir = stringFlag(ctx, "hosts-dir");
  if (mirrors.length === 0 && !dir) return [];
  const [{ loadHosts, mirrorHost }, { mirrorsOf }] = await Promise.all([
    import("../remotes/hosts.ts"),
    import("../remotes/mirrors.ts"),
  ]);
  const hosts = mirrors.map(mirrorHost);
  if (dir) hosts.push(...(await loadHosts(dir, ref.registry)));
  return mirrorsOf(hosts, ref.registry);
}

const RESUMABLE = "interrupted: partial downloads stay in the store and resume on the next fetch";

/** Fetches one image with the output `--json` / `-q` / plain asks for. */
async function fetchWithProgress(
  ctx: Context,
  client: RegistryClient,
  store: Store,
  ref: Reference,
  options: FetchImageOptions,
): Promise<FetchImageResult> {
  const mirrors = await mirrorsFor(ctx, ref);
  let result: FetchImageResult;
  try {
    result = await withProgress(
      ctx,
      (onProgress) => fetchImage(client, store, ref, { ...options, mirrors, onProgress }),
    );
  } finally {
    for (const mirror of mirrors) mirror.client.close();
  }
  const quiet = boolFlag(ctx, "quiet");
  if (quiet) {
    for (const layer of result.skipped) {
      out.warn(`skipped non-distributable layer ${layer.digest} (${layer.mediaType})`);
    }
  }
  return result;
}

/** Unpacks `manifest` into the bundle `dir`, one stderr line (or JSON event) a layer. */
async function unpackWithProgress(
  ctx: Context,
  store: Store,
  manifest: Descriptor,
  dir: string,
  signal: AbortSignal,
): Promise<void> {
  const json = boolFlag(ctx, "json");
  const quiet = boolFlag(ctx, "quiet");
  const { unpackImage } = await import("../content/bundle/unpack.ts");
  await unpackImage(store, manifest.digest, dir, {
    signal,
    maxUnpackedSize: sizeFlag(ctx, "max-unpacked-size"),
    runtime: runtimeFlags(ctx),
    onWarning: (message) => out.warn(message),
    onProgress: (e) => {
      if (json) out.json(e);
      else if (!quiet && e.status === "unpacked") {
        const text = `layer    ${shortDigest(e.digest)}  unpacked ${e.layer! + 1}/${e.layers}\n`;
        writeAll(Deno.stderr, encoder.encode(text));
      }
    },
  });
}

/**
 * What `pull` and `unpack` need, asked before anything is downloaded: Deno creates a symlink
 * only with `--allow-read` and `--allow-write` for every path, and nearly every image has
 * symlinks; without them Deno would prompt (on a terminal) or fail at the first symlink.
 */
function requireUnpackPermissions(): void {
  for (const name of ["read", "write"] as const) {
    requirePermission(
      { name },
      `${name} access to every path (Deno creates symlinks only with it)`,
      `--allow-${name}`,
    );
  }
}

/** `dist fetch` */
export function fetchCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 1);
  const options = fetchFlags(ctx);
  return interruptible(RESUMABLE, async (signal) => {
    const store = await Store.open(ctx.root());
    const client = await registryClient(ctx);
    try {
      // every reference is tried; each failure gets its line, the first sets the exit code
      return await forEachReporting(ctx.args, async (arg) => {
        signal.throwIfAborted();
        const ref = parseReference(arg);
        const result = await fetchWithProgress(ctx, client, store, ref, { ...options, signal });
        if (boolFlag(ctx, "quiet")) out.json(result.descriptor);
        else if (!boolFlag(ctx, "json")) {
          out.line(
            `fetched ${result.name} ${result.descriptor.digest} ` +
              `(${formatBytes(result.downloaded)} downloaded)`,
          );
        }
      }, signal);
    } finally {
      client.close();
    }
  });
}

/** `dist pull` */
export function pullCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 1, 2);
  const ref = parseReference(ctx.args[0]);
  const dir = ctx.args[1] ?? ref.repository.slice(ref.repository.lastIndexOf("/") + 1);
  const options = fetchFlags(ctx);
  const platform = options.platforms![0];
  sizeFlag(ctx, "max-unpacked-size"); // a bad value is a usage error before the download
  runtimeFlags(ctx);
  let unpacking = false; // what an interruption leaves depends on the phase it stops
  const stopped = () => unpacking ? "unpack interrupted" : RESUMABLE;
  return interruptible(stopped, async (signal) => {
    requireUnpackPermissions(); // before the download, not at the first symlink
    // a DIR unpack would refuse is refused before the download
    await (await import("../content/bundle/unpack.ts")).checkBundle(dir);
    const store = await Store.open(ctx.root());
    const client = await registryClient(ctx);
    let result: FetchImageResult;
    try {
      result = await fetchWithProgress(ctx, client, store, ref, { ...options, signal });
    } finally {
      client.close();
    }
    const manifest = await resolveManifest(store, result.descriptor, { platform });
    unpacking = true;
    await unpackWithProgress(ctx, store, manifest, dir, signal);
    if (boolFlag(ctx, "quiet")) out.json(result.descriptor);
    else if (!boolFlag(ctx, "json")) out.line(`pulled ${result.name} into ${dir}`);
  });
}

/** `dist unpack` */
export function unpackCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 2, 2);
  const [name, dir] = ctx.args;
  sizeFlag(ctx, "max-unpacked-size"); // a bad value is a usage error before anything runs
  runtimeFlags(ctx);
  const platformFlag = stringFlag(ctx, "platform");
  const platform = platformFlag ? parsePlatform(platformFlag) : undefined;
  return interruptible("unpack interrupted", async (signal) => {
    requireUnpackPermissions();
    const store = await Store.open(ctx.root());
    const { target } = await findImage(store, name);
    const manifest = await resolveManifest(store, target, { platform });
    await unpackWithProgress(ctx, store, manifest, dir, signal);
    if (!boolFlag(ctx, "quiet") && !boolFlag(ctx, "json")) {
      out.line(`unpacked ${name} into ${dir}`);
    }
  });
}

/** `dist push` */
export function pushCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 1, 2);
  const [name, destination] = ctx.args;
  const dest = destination === undefined ? undefined : parseReference(destination);
  const max = positiveFlag(ctx, "max-concurrent-uploads");
  return interruptible(
    "push interrupted: uploaded blobs are skipped next time",
    async (signal) => {
      const store = await Store.open(ctx.root(), READ_ONLY);
      const client = await registryClient(ctx);
      try {
        const { pushImage } = await import("../remotes/push.ts");
        const result = await withProgress(
          ctx,
          (onProgress) =>
            pushImage(client, store, name, dest, {
              maxConcurrentUploads: max,
              signal,
              onProgress,
            }),
        );
        if (boolFlag(ctx, "quiet")) {
          out.json(result.descriptor);
        } else if (!boolFlag(ctx, "json")) {
          out.line(
            `pushed ${result.name} ${result.descriptor.digest} ` +
              `(${formatBytes(result.uploaded)} uploaded)`,
          );
        }
      } finally {
        client.close();
      }
    },
  );
}

/** `dist copy` */
export async function copyCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 2, 2);
  const { copyLocation, parseLocation } = await import("../remotes/transports.ts");
  const [from, to] = ctx.args.map(parseLocation);
  const platformFlag = stringFlag(ctx, "platform");
  const allPlatforms = boolFlag(ctx, "all-platforms");
  if (allPlatforms && platformFlag) {
    throw new UsageError("--all-platforms conflicts with --platform");
  }
  const platform = platformFlag ? parsePlatform(platformFlag) : undefined;
  const max = positiveFlag(ctx, "max-concurrent-downloads");
  return interruptible("copy interrupted", async (signal) => {
    const client = await registryClient(ctx);
    try {
      const result = await withProgress(ctx, (onProgress) =>
        copyLocation(client, from, to, {
          platform,
          allPlatforms,
          referrers: boolFlag(ctx, "referrers"),
          maxConcurrency: max,
          signal,
          onProgress,
        }));
      if (boolFlag(ctx, "quiet")) out.json(result.descriptor);
      else if (!boolFlag(ctx, "json")) {
        out.line(
          `copied ${ctx.args[0]} to ${ctx.args[1]} ${result.descriptor.digest} ` +
            `(${formatBytes(result.copied)} copied` +
            (result.referrers.length ? `, ${result.referrers.length} referrers)` : ")"),
        );
      }
    } finally {
      client.close();
    }
  });
}
