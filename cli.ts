/**
 * `dist`: the command line over the library. Parsing, wiring and output only: every subcommand
 * is a few lines over calls into `content/` and `remotes/`. This entry finds the command in
 * `cli/commands.ts` and parses its flags; the command's own module (`cli/*_commands.ts`) is
 * imported only then, so that a command loads only what it uses.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 authentication refused; 130 and
 * 143 when Ctrl-C or SIGTERM stopped it, 141 when stdout closed before a blob or archive ended.
 *
 * @module
 */
import {
  type Command,
  commandFlags,
  type Context,
  type FlagSpec,
  parseArgs,
  UsageError,
} from "./cli/_args.ts";
import { encoder, out, report, writeAll } from "./cli/_output.ts";
import { COMMANDS } from "./cli/commands.ts";
import { envIsSet, readEnv } from "./content/internal/mod.ts";
import { defaultRoot } from "./content/store/root.ts";

function flagHelp(specs: FlagSpec[]): string {
  const rows = specs.map((s) => {
    const names = (s.short ? `-${s.short}, ` : "    ") + `--${s.name}` +
      (s.value ? ` ${s.value}` : "");
    return [names, s.description + (s.multiple ? " (repeatable)" : "")];
  });
  const width = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([n, d]) => `  ${n.padEnd(width)}  ${d}`).join("\n");
}

/** `text` broken into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) (lines.push(line), line = word);
    else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line].join("\n");
}

function commandHelp(command: Command): string {
  const aliases = command.aliases?.length ? `\nAliases: ${command.aliases.join(", ")}\n` : "";
  const more = command.description ? `\n${wrap(command.description, 80)}\n` : "";
  return `${command.summary}\n\nUsage: dist ${command.name} ${command.usage}\n${aliases}${more}\nFlags:\n${
    flagHelp(commandFlags(command))
  }\n`;
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const list = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n");
  return `dist: fetch container images from OCI and Docker registries into a local content store

Usage: dist COMMAND [flags] [args]

Commands:
${list}

Run "dist COMMAND --help" or "dist help COMMAND" for a command's flags.
Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 authentication refused,
130/143 stopped by Ctrl-C/SIGTERM, 141 stdout closed before a blob or archive ended.
`;
}

/**
 * The store root from `--root`, else the environment. An empty one is refused: it would resolve
 * to the current directory and scatter a store there.
 */
function storeRoot(flag: string | undefined): string {
  if (flag === "") throw new UsageError('invalid --root ""');
  if (flag !== undefined) return flag;
  // set but empty: refused (readEnv reads "" as unset, and never prompts)
  if (envIsSet("DIST_ROOT") && readEnv("DIST_ROOT") === undefined) {
    throw new UsageError('invalid DIST_ROOT ""');
  }
  return defaultRoot();
}

/** Runs `dist` with `argv` and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    // no command is a usage error: the help goes to stderr, not into a pipe
    writeAll(Deno.stderr, encoder.encode(mainHelp()));
    return 2;
  }
  if (name === "help" && rest.length > 0) return await main([...rest, "--help"]); // dist help list
  if (name === "--help" || name === "-h" || name === "help") {
    out.line(mainHelp().trimEnd());
    return 0;
  }
  if (name === "--version" || name === "version") {
    out.line("dist 0.1.0");
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name || c.aliases?.includes(name));
  if (!command) {
    out.error(`unknown command ${JSON.stringify(name)} (see dist --help)`);
    return 2;
  }
  try {
    const { flags, args } = parseArgs(rest, commandFlags(command));
    if (flags.help) {
      out.line(commandHelp(command).trimEnd());
      return 0;
    }
    if (flags.quiet === true && flags.json === true) {
      throw new UsageError("-q/--quiet and --json cannot be used together");
    }
    const ctx: Context = { flags, args, root: () => storeRoot(flags.root as string | undefined) };
    return (await command.run(ctx)) ?? 0;
  } catch (error) {
    return report(error, command);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
