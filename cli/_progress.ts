/**
 * Progress on stderr for long commands, and stopping them cleanly on Ctrl-C or SIGTERM.
 *
 * @module
 */
import { shortDigest } from "../content/digest.ts";
import type { ProgressEvent } from "../content/images/copy.ts";
import { boolFlag, type Context } from "./_args.ts";
import { encoder, formatBytes, out, writeAll } from "./_output.ts";

/** Runs `task` with the progress output `--json` / `-q` / plain asks for. */
export async function withProgress<T>(
  ctx: Context,
  task: (onProgress: ((event: ProgressEvent) => void) | undefined) => Promise<T>,
): Promise<T> {
  const json = boolFlag(ctx, "json");
  const renderer = json || boolFlag(ctx, "quiet") ? undefined : progressRenderer();
  try {
    return await task(json ? (e) => out.json(e) : renderer?.onProgress);
  } finally {
    renderer?.close();
  }
}

/**
 * Renders fetch progress on stderr. On a terminal: finished blobs scroll by, one line each, under
 * which the blobs in flight are redrawn in place (at most every 100 ms). Otherwise: one line a
 * blob when it finishes.
 */
function progressRenderer(): { onProgress(event: ProgressEvent): void; close(): void } {
  const live = Deno.stderr.isTerminal();
  const active = new Map<string, ProgressEvent>();
  const finished: ProgressEvent[] = [];
  let drawn = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const line = (e: ProgressEvent) => {
    const state = e.status === "downloading" || e.status === "uploading"
      ? `${e.status} ${formatBytes(e.offset ?? 0)} / ${formatBytes(e.size)}` +
        (e.resumedFrom ? ` (resumed at ${formatBytes(e.resumedFrom)})` : "")
      : e.status === "skipped"
      ? `skipped (${e.reason})`
      : e.status === "waiting"
      ? `waiting${e.reason ? ` (${e.reason})` : ""}`
      : `${e.status} ${formatBytes(e.size)}`;
    return `${e.kind.padEnd(8)} ${shortDigest(e.digest)}  ${state}`;
  };
  // on a narrow terminal, a shorter form that keeps the numbers rather than a line cut midway
  const fitted = (e: ProgressEvent, columns: number) => {
    const width = columns - 1;
    const full = line(e);
    if (full.length <= width) return full;
    const moving = e.status === "downloading" || e.status === "uploading";
    const state = moving
      ? `${formatBytes(e.offset ?? 0)}/${formatBytes(e.size)}`
      : e.status === "skipped" || e.status === "waiting"
      ? e.status
      : `${e.status} ${formatBytes(e.size)}`;
    const hex = e.digest.slice(e.digest.indexOf(":") + 1);
    const percent = moving && e.size > 0
      ? `${Math.floor(((e.offset ?? 0) / e.size) * 100)}%`
      : e.status;
    const forms = [
      `${e.kind} ${hex.slice(0, 12)} ${state}`,
      `${hex.slice(0, 12)} ${state}`,
      `${hex.slice(0, 8)} ${percent}`,
    ];
    return forms.find((f) => f.length <= width) ?? forms[2].slice(0, width);
  };
  const draw = () => {
    timer = undefined;
    // lines must neither wrap nor outgrow the screen, or moving up to redraw them goes wrong
    let { columns, rows } = { columns: 0, rows: 0 };
    try {
      ({ columns, rows } = Deno.consoleSize());
    } catch { /* no size known */ }
    // a size of 0×0 (some pseudo-terminals) is no size; a small one is still the screen's
    if (columns <= 0 || rows <= 0) ({ columns, rows } = { columns: 80, rows: 24 });
    const all = [...active.values()].sort((a, b) =>
      Number(b.status === "downloading") - Number(a.status === "downloading")
    );
    const room = Math.max(1, rows - 2);
    const now = all.slice(0, all.length > room ? room - 1 : room).map((e) => fitted(e, columns));
    if (all.length > room) now.push(`… and ${all.length - room + 1} more waiting`);
    const text = (drawn ? `\x1b[${drawn}F\x1b[J` : "") +
      [...finished.map((e) => fitted(e, columns)), ...now]
        .map((l) => l.slice(0, columns - 1) + "\n").join("");
    finished.length = 0;
    drawn = now.length;
    writeAll(Deno.stderr, encoder.encode(text));
  };
  return {
    onProgress(e) {
      if (e.status === "resolved" || e.status === "recorded") return;
      const done = e.status === "done" || e.status === "exists" || e.status === "skipped";
      if (!live) {
        if (done) writeAll(Deno.stderr, encoder.encode(line(e) + "\n"));
        return;
      }
      if (done) {
        active.delete(e.digest);
        finished.push(e);
      } else active.set(e.digest, e);
      timer ??= setTimeout(draw, 100);
    },
    close() {
      if (timer !== undefined) clearTimeout(timer);
      if (live) draw();
    },
  };
}

/** Signals that stop a long command cleanly, with their exit codes (128 + the signal number). */
const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Runs `body` with a signal that Ctrl-C (or SIGTERM, which CI cancellation and `timeout` send)
 * aborts; an aborted run prints `message` and exits 130 (143). A second signal exits at once.
 */
export async function interruptible(
  message: string | (() => string),
  body: (signal: AbortSignal) => Promise<number | void>,
): Promise<number | void> {
  const controller = new AbortController();
  let code = 0;
  const listeners = Object.entries(STOP_SIGNALS).map(([name, exitCode]) => {
    const listener = () => {
      if (controller.signal.aborted) Deno.exit(exitCode);
      code = exitCode;
      controller.abort(new DOMException("interrupted", "AbortError"));
    };
    Deno.addSignalListener(name as Deno.Signal, listener);
    return () => Deno.removeSignalListener(name as Deno.Signal, listener);
  });
  try {
    return await body(controller.signal);
  } catch (error) {
    if (!controller.signal.aborted) throw error;
    out.error(typeof message === "string" ? message : message());
    return code;
  } finally {
    for (const remove of listeners) remove();
  }
}
