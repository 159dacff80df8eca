/**
 * `dist delete`, `prune`, `images`, `check`: commands that know which images use which blobs.
 *
 * @module
 */
import { parseDigest, shortDigest } from "../content/digest.ts";
import {
  CorruptContentError,
  InUseError,
  InvalidArgumentError,
  NotFoundError,
} from "../content/errors.ts";
import { blobDeleter, collectGarbage } from "../content/images/gc.ts";
import { summarizeImage } from "../content/images/graph.ts";
import { findImage, Images } from "../content/images/records.ts";
import { parsePlatform } from "../content/platform.ts";
import type { Info, Status } from "../content/store/capabilities.ts";
import { isShortDigest } from "../content/store/short_digest.ts";
import { Store } from "../content/store/store.ts";
import {
  boolFlag,
  type Context,
  expectArgs,
  parseDuration,
  stringFlag,
  UsageError,
} from "./_args.ts";
import { forEachReporting, formatBytes, out } from "./_output.ts";
import { interruptible } from "./_progress.ts";
import { digestArguments, READ_ONLY, requireStoreWrite } from "./_store.ts";

/**
 * One line, however many blobs `delete` kept: `kept 5 blobs in use (4 by image a:v1, 1 by a fetch
 * or import in progress); --force deletes blobs images use anyway`, at most 5 users named.
 */
function keptSummary(kept: Map<string, number>): string {
  const total = [...kept.values()].reduce((a, b) => a + b, 0);
  const users = [...kept].sort(([a], [b]) => a.localeCompare(b)).map(([who, n]) =>
    `${n} by ${who}`
  );
  const shown = users.length > 5 ? [...users.slice(0, 4), `${users.length - 4} more`] : users;
  return `kept ${total} blob${total === 1 ? "" : "s"} in use (${shown.join(", ")}); ` +
    "--force deletes blobs images use anyway";
}

/**
 * The names of the records whose image digest is `text` or starts with it (the 12 digits `dist
 * images` prints): a digest an image has under several names stands for all of them. A prefix of
 * two images' digests is ambiguous and lists them; no match is not found.
 */
async function recordsWithDigest(images: Images, text: string): Promise<string[]> {
  if (!isShortDigest(text)) parseDigest(text); // a broken digest is a usage error
  const records = (await images.list()).filter((r) => r.target.digest.startsWith(text));
  const digests = [...new Set(records.map((r) => r.target.digest))].sort();
  if (digests.length === 0) throw new NotFoundError(`no image record has digest ${text}`);
  if (digests.length > 1) {
    throw new InvalidArgumentError(
      `${text} is ambiguous: ${digests.join(", ")}; give more of the digest`,
    );
  }
  return records.map((r) => r.name);
}

/** `dist delete` */
export async function deleteCommand(ctx: Context): Promise<number | void> {
  // no digest is nothing to do: `dist list -q | xargs dist delete` on an empty store
  if (ctx.args.length === 0) return 0;
  const store = await Store.open(ctx.root(), READ_ONLY);
  requireStoreWrite(store);
  const digests = await digestArguments(ctx, store);
  // a blob a record uses (a manifest, a layer) would leave that image broken: --force only.
  // Keeping it is what the clear-out pipeline wants, so it is no failure: one line says so.
  const remove = await blobDeleter(store, { force: boolFlag(ctx, "force") });
  // who keeps how many: "image NAME" or "a fetch, import or upload in progress"
  const kept = new Map<string, number>();
  const code = await forEachReporting(digests, async (digest) => {
    try {
      await remove(digest);
      out.line(digest);
    } catch (error) {
      if (!(error instanceof InUseError)) throw error;
      const who = /^cannot delete \S+: (.*?) uses it/.exec(error.message)?.[1] ?? "in use";
      kept.set(who, (kept.get(who) ?? 0) + 1);
    }
  });
  if (kept.size) out.warn(keptSummary(kept));
  return code;
}

/** `dist prune` */
export async function pruneCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 0, 0);
  const olderThan = parseDuration("older-than", stringFlag(ctx, "older-than") ?? "24h");
  const dryRun = boolFlag(ctx, "dry-run");
  const store = await Store.open(ctx.root());
  const verb = dryRun ? "would remove" : "removed";
  let blobs: Info[] = [];
  let ingests: Status[];
  if (!boolFlag(ctx, "ingests")) {
    // blobs no image record reaches, then stale ingests (collectGarbage does both)
    ({ blobs, ingests } = await collectGarbage(store, { dryRun, ingestsOlderThan: olderThan }));
    for (const info of blobs) out.line(`${verb} blob ${info.digest}`);
  } else {
    // Ingests a writer holds are skipped, whatever their age.
    ingests = await store.prune({ olderThan, dryRun });
  }
  for (const status of ingests) out.line(`${verb} ingest ${status.ref}`);
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  const bytes = blobs.reduce((n, b) => n + b.size, 0) +
    ingests.reduce((n, s) => n + s.offset, 0);
  out.log(
    `dist: ${dryRun ? "would free" : "freed"} ${formatBytes(bytes)}: ` +
      `${count(blobs.length, "blob")}, ${count(ingests.length, "ingest")}`,
  );
}

/** `dist images` */
export async function imagesCommand(ctx: Context): Promise<number | void> {
  const remove = ctx.args[0] === "rm";
  const store = await Store.open(ctx.root(), READ_ONLY);
  const images = new Images(store.root);
  if (remove) {
    if (ctx.args.length < 2) throw new UsageError("images rm needs at least one NAME");
    requireStoreWrite(store);
    // like delete: one missing name neither hides nor stops the others
    return await forEachReporting(ctx.args.slice(1), async (name) => {
      const names = /^sha(256|512):/.test(name)
        ? await recordsWithDigest(images, name)
        : [(await images.find(name)).name];
      for (const record of names) {
        await images.remove(record);
        if (!boolFlag(ctx, "quiet")) out.line(`removed ${record}`);
      }
    });
  }
  expectArgs(ctx, 0, 0);
  const rows: string[][] = [];
  for (const record of await images.list()) {
    if (boolFlag(ctx, "quiet")) {
      out.line(record.name);
      continue;
    }
    const summary = await summarizeImage(store, record.target);
    if (boolFlag(ctx, "json")) out.json({ ...record, ...summary });
    else {
      rows.push([
        record.name,
        shortDigest(record.target.digest),
        formatBytes(summary.size),
        summary.platforms.join(",") || "-",
      ]);
    }
  }
  if (!boolFlag(ctx, "quiet") && !boolFlag(ctx, "json")) {
    out.table(["NAME", "DIGEST", "SIZE", "PLATFORMS"], rows);
  }
  return 0;
}

/** `dist check` */
export function checkCommand(ctx: Context): Promise<number | void> {
  const repair = boolFlag(ctx, "repair");
  return interruptible("check interrupted", async (signal) => {
    const store = await Store.open(ctx.root(), repair ? undefined : READ_ONLY);
    const names = ctx.args.length
      ? ctx.args
      : (await new Images(store.root).list()).map((r) => r.name);
    // the registry code loads only for a repair
    const client = repair ? await (await import("./_registry.ts")).registryClient(ctx) : undefined;
    try {
      return await forEachReporting(names, async (name) => {
        const image = await findImage(store, name);
        const label = image.name ?? image.target.digest;
        const { checkImage } = await import("../content/images/check.ts");
        let problems = await checkImage(store, image.target, { name: label, signal });
        if (problems.length && client && image.name !== undefined) {
          for (const { descriptor, problem } of problems) {
            if (problem === "corrupt") await store.delete(descriptor.digest);
          }
          // the platforms the store held, fetched again: what is missing comes back
          const { platforms } = await summarizeImage(store, image.target);
          const { fetchImage } = await import("../remotes/copy.ts");
          await fetchImage(client, store, image.name, {
            platforms: platforms.map(parsePlatform),
            signal,
          });
          problems = await checkImage(store, image.target, { name: label, signal });
        }
        if (boolFlag(ctx, "json")) out.json({ name: label, target: image.target, problems });
        else if (problems.length === 0) out.line(`ok ${label}`);
        if (problems.length) {
          const list = problems.map((p) => `${p.problem} ${p.descriptor.digest}`).join(", ");
          throw new CorruptContentError(`image ${label} is damaged: ${list}`);
        }
      });
    } finally {
      client?.close();
    }
  });
}
