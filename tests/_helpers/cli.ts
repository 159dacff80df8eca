/** Runs the `dist` CLI as a real child process, as a user would. */

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** What a finished `dist` process left behind. */
export interface DistResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@link runDist}. */
export interface RunOptions {
  /** Bytes or text fed to stdin (stdin is closed either way). */
  stdin?: Uint8Array | string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory (default: a neutral /tmp, to prove cli.ts runs from anywhere). */
  cwd?: string;
  /** Deno permission flags (default -A). */
  permissions?: string[];
}

/** Runs `deno run cli.ts ...args` and collects its output. */
export async function runDist(args: string[], options: RunOptions = {}): Promise<DistResult> {
  const child = spawnDist(args, options);
  const input = typeof options.stdin === "string"
    ? new TextEncoder().encode(options.stdin)
    : options.stdin;
  const writer = child.stdin.getWriter();
  try {
    if (input) await writer.write(input);
    await writer.close();
  } catch {
    // the child may exit before reading all of stdin (content already present)
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** Starts `deno run cli.ts ...args` with piped stdio and returns the child. */
export function spawnDist(args: string[], options: RunOptions = {}): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...(options.permissions ?? ["-A"]), CLI, ...args],
    cwd: options.cwd ?? "/tmp",
    env: { NO_COLOR: "1", ...options.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** The shell command line that runs dist, for `sh -c` pipelines in tests. */
export function distCommandLine(): string {
  return `'${Deno.execPath()}' run --quiet -A '${CLI}'`;
}
