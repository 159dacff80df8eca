/**
 * `dist`: the command line over the library. Parsing, wiring and output only: every subcommand
 * is a few lines over calls into `content/` and `remotes/`.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 authentication refused.
 *
 * @module
 */
import { DistError } from "./content/errors.ts";
import { defaultRoot } from "./content/root.ts";

// ---------------------------------------------------------------------------------------------
// Argument parsing

/** One flag a command accepts. */
interface FlagSpec {
  name: string;
  short?: string;
  type: "boolean" | "string";
  /** May be given more than once; the values collect into an array. */
  multiple?: boolean;
  /** Placeholder shown in help, e.g. `DIGEST`. */
  value?: string;
  description: string;
}

/** Parsed command line: flag values by name, and positional arguments. */
interface Parsed {
  flags: Record<string, string | boolean | string[] | undefined>;
  args: string[];
}

/** A command-line mistake: printed with a hint and exit code 2. */
class UsageError extends Error {}

/** Shared flags every command takes. */
const GLOBAL_FLAGS: FlagSpec[] = [
  {
    name: "root",
    type: "string",
    value: "DIR",
    description: "store root (default: $DIST_ROOT, else $XDG_DATA_HOME/dist)",
  },
  { name: "help", short: "h", type: "boolean", description: "show this help" },
];

function parseArgs(argv: string[], specs: FlagSpec[]): Parsed {
  const all = [...specs, ...GLOBAL_FLAGS];
  const flags: Parsed["flags"] = {};
  const args: string[] = [];
  const byName = (name: string) => all.find((s) => s.name === name);
  const byShort = (short: string) => all.find((s) => s.short === short);
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (token === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    if (token.startsWith("--")) {
      const eq = token.indexOf("=");
      const name = eq < 0 ? token.slice(2) : token.slice(2, eq);
      inline = eq < 0 ? undefined : token.slice(eq + 1);
      spec = byName(name);
      if (!spec) throw new UsageError(`unknown flag --${name}`);
    } else if (token.startsWith("-") && token.length > 1) {
      spec = byShort(token.slice(1));
      if (!spec) throw new UsageError(`unknown flag ${token}`);
    } else {
      args.push(token);
      continue;
    }
    let value: string | boolean;
    if (spec.type === "boolean") {
      if (inline !== undefined && inline !== "true" && inline !== "false") {
        throw new UsageError(`flag --${spec.name} takes no value, got ${JSON.stringify(inline)}`);
      }
      value = inline !== "false";
    } else if (inline !== undefined) {
      value = inline;
    } else {
      if (i + 1 >= argv.length) throw new UsageError(`flag --${spec.name} needs a value`);
      value = argv[++i];
    }
    if (spec.multiple) {
      const list = (flags[spec.name] as string[] | undefined) ?? [];
      list.push(value as string);
      flags[spec.name] = list;
    } else {
      flags[spec.name] = value;
    }
  }
  return { flags, args };
}

// ---------------------------------------------------------------------------------------------
// Output

const encoder = new TextEncoder();

/** The one place the CLI writes to stdout and stderr. */
const out = {
  /** Writes one line to stdout. */
  line(text: string): void {
    writeAll(Deno.stdout, encoder.encode(text + "\n"));
  },
  /** Writes one compact JSON object a line to stdout. */
  json(value: unknown): void {
    out.line(JSON.stringify(value));
  },
  /** Writes raw bytes to stdout. */
  bytes(bytes: Uint8Array): void {
    writeAll(Deno.stdout, bytes);
  },
  /** Writes a diagnostic line to stderr, prefixed `dist: `. */
  error(text: string): void {
    writeAll(Deno.stderr, encoder.encode(`dist: ${text}\n`));
  },
  /** Writes a warning line to stderr. */
  warn(text: string): void {
    writeAll(Deno.stderr, encoder.encode(`dist: warning: ${text}\n`));
  },
  /** Prints rows as aligned columns. */
  table(header: string[], rows: string[][]): void {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const format = (row: string[]) =>
      row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join("  ");
    const lines = [format(header), ...rows.map(format)];
    writeAll(Deno.stdout, encoder.encode(lines.join("\n") + "\n"));
  },
};

function writeAll(file: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

// ---------------------------------------------------------------------------------------------
// Commands

/** What a command's `run` receives. */
interface Context {
  flags: Parsed["flags"];
  args: string[];
  /** The store root from `--root` or the environment. */
  root(): string;
}

/** One subcommand. */
interface Command {
  name: string;
  aliases?: string[];
  /** `dist NAME` followed by this, e.g. `[flags] DIGEST...`. */
  usage: string;
  summary: string;
  flags: FlagSpec[];
  /** Returns the exit code (default 0). */
  run(ctx: Context): Promise<number | void>;
}

/** Reads a string flag, or undefined when absent. */
function stringFlag(ctx: Context, name: string): string | undefined {
  return ctx.flags[name] as string | undefined;
}

/** Reads a repeatable flag as a list. */
function listFlag(ctx: Context, name: string): string[] {
  return (ctx.flags[name] as string[] | undefined) ?? [];
}

/** Reads a boolean flag. */
function boolFlag(ctx: Context, name: string): boolean {
  return ctx.flags[name] === true;
}

/** Requires at least `min` (and at most `max`) positional arguments. */
function expectArgs(ctx: Context, min: number, max = Infinity): void {
  if (ctx.args.length < min) throw new UsageError(`expected at least ${min} argument(s)`);
  if (ctx.args.length > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(ctx.args[max])}`);
  }
}

const COMMANDS: Command[] = [
  // ---- store commands (content/) ----

  // ---- registry commands (remotes/) ----

  // ---- image commands (fetch, pull, unpack, images, prune) ----

  // ---- archive commands (export, import) ----
];

// ---------------------------------------------------------------------------------------------
// Help and dispatch

function flagHelp(specs: FlagSpec[]): string {
  const rows = specs.map((s) => {
    const names = (s.short ? `-${s.short}, ` : "    ") + `--${s.name}` +
      (s.value ? ` ${s.value}` : "");
    return [names, s.description + (s.multiple ? " (repeatable)" : "")];
  });
  const width = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([n, d]) => `  ${n.padEnd(width)}  ${d}`).join("\n");
}

function commandHelp(command: Command): string {
  const aliases = command.aliases?.length ? `\nAliases: ${command.aliases.join(", ")}\n` : "";
  return `${command.summary}\n\nUsage: dist ${command.name} ${command.usage}\n${aliases}\nFlags:\n${
    flagHelp([...command.flags, ...GLOBAL_FLAGS])
  }\n`;
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const list = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n");
  return `dist: fetch container images from OCI and Docker registries into a local content store

Usage: dist COMMAND [flags] [args]

Commands:
${list}

Run "dist COMMAND --help" for a command's flags.
Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 authentication refused.
`;
}

/** Maps an error to an exit code and prints it as one line. */
function report(error: unknown, command?: Command): number {
  if (error instanceof UsageError) {
    out.error(error.message);
    out.error(`run "dist ${command ? command.name + " " : ""}--help" for usage`);
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
  if (error instanceof Deno.errors.BrokenPipe) return 0; // reader went away: `dist list | head`
  if (error instanceof Deno.errors.NotCapable) {
    out.error(`permission denied: ${(error as Error).message}`);
    return 1;
  }
  out.error(error instanceof Error ? error.message : String(error));
  return 1;
}

/** Runs `dist` with `argv` and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    out.line(mainHelp().trimEnd());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "version") {
    out.line("dist 0.1.0");
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name || c.aliases?.includes(name));
  if (!command) {
    out.error(`unknown command ${JSON.stringify(name)}`);
    out.error(`run "dist --help" for the list of commands`);
    return 2;
  }
  try {
    const { flags, args } = parseArgs(rest, command.flags);
    if (flags.help) {
      out.line(commandHelp(command).trimEnd());
      return 0;
    }
    const ctx: Context = {
      flags,
      args,
      root: () => (flags.root as string | undefined) ?? defaultRoot(),
    };
    return (await command.run(ctx)) ?? 0;
  } catch (error) {
    return report(error, command);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
