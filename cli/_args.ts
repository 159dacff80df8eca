/**
 * Command-line parsing for `dist`: flag specs, the parser, and readers of flag values.
 *
 * @module
 */

/** One flag a command accepts. */
export interface FlagSpec {
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
export interface Parsed {
  flags: Record<string, string | boolean | string[] | undefined>;
  args: string[];
}

/** A command-line mistake: printed with a hint and exit code 2. */
export class UsageError extends Error {}

const HELP_FLAG: FlagSpec = {
  name: "help",
  short: "h",
  type: "boolean",
  description: "show this help",
};

const ROOT_FLAG: FlagSpec = {
  name: "root",
  type: "string",
  value: "DIR",
  description: "store root (default: $DIST_ROOT, else $XDG_DATA_HOME/dist, else " +
    "~/.local/share/dist)",
};

/** The flags a command takes: its own, `--root` unless it never opens the store, and `--help`. */
export function commandFlags(command: Command): FlagSpec[] {
  return [...command.flags, ...(command.storeless ? [] : [ROOT_FLAG]), HELP_FLAG];
}

export function parseArgs(argv: string[], all: FlagSpec[]): Parsed {
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
      if (spec.type === "string" && flags[spec.name] !== undefined) {
        throw new UsageError(`flag --${spec.name} given twice`);
      }
      flags[spec.name] = value;
    }
  }
  return { flags, args };
}

/** What a command's `run` receives. */
export interface Context {
  flags: Parsed["flags"];
  args: string[];
  /** The store root from `--root` or the environment. */
  root(): string;
}

/** One subcommand. */
export interface Command {
  name: string;
  aliases?: string[];
  /** `dist NAME` followed by this, e.g. `[flags] DIGEST...`. */
  usage: string;
  summary: string;
  /** More about the command, shown by its `--help` under the usage line. */
  description?: string;
  flags: FlagSpec[];
  /** True for commands that talk to a registry only and take no `--root`. */
  storeless?: boolean;
  /**
   * True for commands whose stdout is data (a blob, an archive): when the reader goes away before
   * the end they fail (exit 141, as SIGPIPE would), where a listing just stops (`dist list | head`).
   */
  streamsData?: boolean;
  /** Returns the exit code (default 0). */
  run(ctx: Context): Promise<number | void>;
}

/** Reads a string flag, or undefined when absent. */
export function stringFlag(ctx: Context, name: string): string | undefined {
  return ctx.flags[name] as string | undefined;
}

/** Reads a repeatable flag as a list. */
export function listFlag(ctx: Context, name: string): string[] {
  const value = ctx.flags[name] as string | string[] | undefined;
  return value === undefined ? [] : typeof value === "string" ? [value] : value;
}

/** Reads a boolean flag. */
export function boolFlag(ctx: Context, name: string): boolean {
  return ctx.flags[name] === true;
}

/** Requires at least `min` (and at most `max`) positional arguments. */
export function expectArgs(ctx: Context, min: number, max = Infinity): void {
  if (ctx.args.length < min) {
    const want = min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`;
    throw new UsageError(`missing argument: want ${want}, got ${ctx.args.length}`);
  }
  if (ctx.args.length > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(ctx.args[max])}`);
  }
}

/** `--max-unpacked-size`: bytes, or a number with K, M, G or T (powers of 1024). */
export function sizeFlag(ctx: Context, name: string): number | undefined {
  const value = stringFlag(ctx, name);
  if (value === undefined) return undefined;
  const match = /^(\d+)([KMGT]?)$/i.exec(value);
  if (!match) {
    throw new UsageError(`invalid size ${JSON.stringify(value)} for --${name}: want e.g. 500M`);
  }
  return Number(match[1]) * 1024 ** " KMGT".indexOf((match[2] || " ").toUpperCase());
}

/** A flag that must be a positive whole number, if given. */
export function positiveFlag(ctx: Context, name: string): number | undefined {
  const value = stringFlag(ctx, name);
  if (value !== undefined && !/^[1-9]\d*$/.test(value)) {
    throw new UsageError(`--${name} wants a positive number, got ${value}`);
  }
  return value === undefined ? undefined : Number(value);
}

/** Milliseconds per duration unit accepted by {@link parseDuration}. */
const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses `90s`, `30m`, `24h`, `7d` or sums like `1h30m` into milliseconds. */
export function parseDuration(flag: string, value: string): number {
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let matched = 0;
  for (let m; (m = part.exec(value)) !== null;) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    matched = part.lastIndex;
  }
  if (value === "" || matched !== value.length) {
    throw new UsageError(
      `invalid duration ${JSON.stringify(value)} for --${flag}: want e.g. 90s, 30m, 24h or 7d`,
    );
  }
  return total;
}

/** A duration that must be more than zero. */
export function positiveDuration(flag: string, value: string): number {
  const ms = parseDuration(flag, value);
  if (ms <= 0) throw new UsageError(`--${flag} wants a duration above zero, got ${value}`);
  return ms;
}
