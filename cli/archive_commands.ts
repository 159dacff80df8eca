/**
 * `dist export` and `import`: images to and from tar archives.
 *
 * @module
 */
import type { ArchiveFormat } from "../content/archives/export.ts";
import { shortDigest } from "../content/digest.ts";
import {
  fileStream,
  openFileStream,
  requirePermission,
  writeFileAtomic,
} from "../content/internal/mod.ts";
import { parsePlatform } from "../content/platform.ts";
import { Store } from "../content/store/store.ts";
import { boolFlag, type Context, expectArgs, stringFlag, UsageError } from "./_args.ts";
import { encoder, formatBytes, out, writeAll } from "./_output.ts";
import { interruptible } from "./_progress.ts";
import { READ_ONLY } from "./_store.ts";

/** `dist export` */
export function exportCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 1);
  const output = stringFlag(ctx, "output");
  if (output === undefined || output === "") {
    throw new UsageError("say where the archive goes: -o FILE, or -o - for stdout");
  }
  const format = stringFlag(ctx, "format") ?? "docker";
  if (format !== "docker" && format !== "oci") {
    throw new UsageError(`--format wants docker or oci, got ${JSON.stringify(format)}`);
  }
  const platformFlag = stringFlag(ctx, "platform");
  if (platformFlag !== undefined && format === "oci") {
    throw new UsageError(
      "--platform is for --format docker: an OCI archive keeps every platform",
    );
  }
  const platform = platformFlag === undefined ? undefined : parsePlatform(platformFlag);
  if (output === "-" && Deno.stdout.isTerminal()) {
    throw new UsageError("refusing to write an archive to a terminal: redirect stdout");
  }
  if (output !== "-") {
    // the archive is written beside FILE under a temporary name, then renamed
    const dir = output.includes("/") ? output.slice(0, output.lastIndexOf("/")) || "/" : ".";
    requirePermission(
      { name: "write", path: dir },
      `write access to ${JSON.stringify(dir)} (the archive is written there, then renamed)`,
      "--allow-write",
    );
  }
  return interruptible("export interrupted", async (signal) => {
    const store = await Store.open(ctx.root(), READ_ONLY);
    const { exportImages } = await import("../content/archives/export.ts");
    const archive = await exportImages(store, ctx.args, {
      format: format as ArchiveFormat,
      platform,
      signal,
    });
    if (output !== "-") return await writeFileAtomic(output, archive);
    for await (const chunk of archive) out.bytes(chunk);
  });
}

/** `dist import` */
export function importCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 1, 1);
  const path = ctx.args[0];
  const json = boolFlag(ctx, "json");
  const quiet = boolFlag(ctx, "quiet");
  if (path !== "-") {
    requirePermission(
      { name: "read", path },
      `read access to ${JSON.stringify(path)}`,
      "--allow-read",
    );
  }
  return interruptible("import interrupted", async (signal) => {
    const store = await Store.open(ctx.root());
    const source = path === "-" ? fileStream(Deno.stdin) : await openFileStream(path);
    const { importArchive } = await import("../content/archives/import.ts");
    const result = await importArchive(store, source, {
      signal,
      onWarning: (message) => out.warn(message),
      onProgress: json || quiet ? undefined : (e) => {
        const status = e.status === "done" ? "imported" : e.status;
        const text = `blob     ${shortDigest(e.digest)}  ${status} ${formatBytes(e.size)}\n`;
        writeAll(Deno.stderr, encoder.encode(text));
      },
    });
    for (const record of result.records) {
      if (json) out.json(record);
      else if (quiet) out.line(record.name);
      else out.line(`imported ${record.name} ${record.target.digest}`);
    }
    for (const image of result.unnamed) {
      if (json) out.json({ target: image });
      out.warn(
        `imported an image without a name, ${image.digest}: it is not recorded, so the ` +
          `next prune removes it`,
      );
    }
  });
}
