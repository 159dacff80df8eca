/**
 * The one place `dist` writes to stdout and stderr: lines, tables, JSON, raw bytes, and errors as
 * one line with an exit code.
 *
 * @module
 */
import { DistError } from "../content/errors.ts";
import { type Command, UsageError } from "./_args.ts";

export const encoder = new TextEncoder();

/** The one place the CLI writes to stdout and stderr. */
export const out = {
  /** Writes one line to stdout. */
  line(text: string): void {
    writeStdout(encoder.encode(text + "\n"));
  },
  /** Writes one compact JSON object a line to stdout. */
  json(value: unknown): void {
    out.line(JSON.stringify(value));
  },
  /** Writes raw bytes to stdout. */
  bytes(bytes: Uint8Array): void {
    writeStdout(bytes);
  },
  /** Writes a diagnostic line to stderr, prefixed `dist: `. */
  error(text: string): void {
    writeAll(Deno.stderr, encoder.encode(`dist: ${oneLine(text)}\n`));
  },
  /** Writes a log line to stderr, as it is (control characters shown as `\xNN`). */
  log(text: string): void {
    writeAll(Deno.stderr, encoder.encode(`${oneLine(text)}\n`));
  },
  /** Writes a warning line to stderr. */
  warn(text: string): void {
    writeAll(Deno.stderr, encoder.encode(`dist: warning: ${oneLine(text)}\n`));
  },
  /** Prints rows as aligned columns. */
  table(header: string[], rows: string[][]): void {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const format = (row: string[]) =>
      row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join("  ");
    const lines = [format(header), ...rows.map(format)];
    writeStdout(encoder.encode(lines.join("\n") + "\n"));
  },
};

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g;

/**
 * Shows control characters as `\xNN`: messages carry text from registries and archives, whose
 * newlines would break the one-line format and whose escape sequences would reach the terminal.
 */
function oneLine(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export function writeAll(file: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

/**
 * Writes to stdout; a failure says it was stdout ("no space left on device" alone could be the
 * store). A closed pipe stays a BrokenPipe error: report() decides what that means.
 */
function writeStdout(bytes: Uint8Array): void {
  try {
    writeAll(Deno.stdout, bytes);
  } catch (error) {
    if (!(error instanceof Error) || error instanceof Deno.errors.BrokenPipe) throw error;
    const reason = error.message.replace(/ \(os error \d+\)[^]*$/, "");
    throw new Error(`cannot write to stdout: ${reason.charAt(0).toLowerCase()}${reason.slice(1)}`, {
      cause: error,
    });
  }
}

/** `12.3 MiB` */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** `4s ago`, `12m ago`, `3h ago`, `2d ago`. */
export function formatAge(date: Date, now = Date.now()): string {
  const seconds = Math.max(0, Math.floor((now - date.getTime()) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86_400)}d ago`;
}

/**
 * Runs `action` for each item, reporting failures one line each and going on with the rest;
 * returns the exit code of the first failure (0 when all succeeded).
 */
export async function forEachReporting<T>(
  items: T[],
  action: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<number> {
  let code = 0;
  for (const item of items) {
    try {
      await action(item);
    } catch (error) {
      if (signal?.aborted) throw error; // Ctrl-C stops them all
      const itemCode = report(error);
      if (code === 0) code = itemCode;
    }
  }
  return code;
}

/** Maps an error to an exit code and prints it as one line. */
export function report(error: unknown, command?: Command): number {
  if (error instanceof UsageError) {
    out.error(`${error.message} (see dist ${command ? command.name + " " : ""}--help)`);
    return 2;
  }
  if (error instanceof DistError) {
    out.error(error.message);
    switch (error.code) {
      case "invalid_argument":
        return 2;
      case "not_found":
        return 3;
      case "unauthorized":
        return 4;
      default:
        return 1;
    }
  }
  if (error instanceof Deno.errors.BrokenPipe) {
    if (!command?.streamsData) return 0; // the reader had seen enough: `dist list | head`
    // a blob or archive cut short fails as any Unix tool killed by SIGPIPE would: silently, 141
    // (the seed's pipeline closes our stdout on purpose when the content is stored already)
    return 141;
  }
  if (error instanceof Deno.errors.NotCapable) {
    out.error(`permission denied: ${(error as Error).message}`);
    return 1;
  }
  // OS errors start upper-case ("Not a directory (os error 20): mkdir '…'"); ours never do
  const message = error instanceof Error ? error.message : String(error);
  out.error(message.charAt(0).toLowerCase() + message.slice(1));
  return 1;
}
