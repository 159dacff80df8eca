/**
 * `dist`: the command line over the library. Parsing, wiring and output only: every subcommand
 * is a few lines over calls into `content/` and `remotes/`.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 authentication refused; 130 and
 * 143 when Ctrl-C or SIGTERM stopped it, 141 when stdout closed before a blob or archive ended.
 *
 * @module
 */
import {
  CorruptContentError,
  DistError,
  InUseError,
  InvalidArgumentError,
  NotFoundError,
} from "./content/errors.ts";
import type { Info, Status } from "./content/store/capabilities.ts";
import type { RuntimeOptions } from "./content/bundle/runtime_spec.ts";
import type { ProgressEvent } from "./content/images/copy.ts";
import type { Mirror } from "./remotes/mirrors.ts";
import type { ArchiveFormat } from "./content/archives/export.ts";
import { defaultRoot } from "./content/store/root.ts";
import { RegistryClient } from "./remotes/client.ts";
import type { Credentials } from "./remotes/credentials.ts";
import { fetchObject } from "./remotes/fetch_object.ts";
import {
  formatReference,
  parseObjectReference,
  parseReference,
  type Reference,
} from "./content/reference.ts";
import type { Descriptor } from "./content/descriptor.ts";
import { shortDigest } from "./content/digest.ts";
import { blobDeleter, collectGarbage } from "./content/images/gc.ts";
import { resolveManifest, summarizeImage } from "./content/images/graph.ts";
import { findImage, Images } from "./content/images/records.ts";
import { parsePlatform } from "./content/platform.ts";
import { Store } from "./content/store/store.ts";
import { writeBlob } from "./content/store/write_blob.ts";
import { expandDigest, isShortDigest } from "./content/store/short_digest.ts";
import { type Digest, parseDigest } from "./content/digest.ts";
import { checkBundle, unpackImage } from "./content/bundle/unpack.ts";
import {
  envIsSet,
  fileStream,
  openFileStream,
  processIds,
  readEnv,
  requirePermission,
  writeFileAtomic,
} from "./content/internal/mod.ts";
import {
  DEFAULT_MAX_CONCURRENT_DOWNLOADS,
  fetchImage,
  type FetchImageOptions,
  type FetchImageResult,
} from "./remotes/copy.ts";

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
function commandFlags(command: Command): FlagSpec[] {
  return [...command.flags, ...(command.storeless ? [] : [ROOT_FLAG]), HELP_FLAG];
}

function parseArgs(argv: string[], all: FlagSpec[]): Parsed {
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

// ---------------------------------------------------------------------------------------------
// Output

const encoder = new TextEncoder();

/** The one place the CLI writes to stdout and stderr. */
const out = {
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

function writeAll(file: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
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
function stringFlag(ctx: Context, name: string): string | undefined {
  return ctx.flags[name] as string | undefined;
}

/** Reads a repeatable flag as a list. */
function listFlag(ctx: Context, name: string): string[] {
  const value = ctx.flags[name] as string | string[] | undefined;
  return value === undefined ? [] : typeof value === "string" ? [value] : value;
}

/** Reads a boolean flag. */
function boolFlag(ctx: Context, name: string): boolean {
  return ctx.flags[name] === true;
}

/** Requires at least `min` (and at most `max`) positional arguments. */
function expectArgs(ctx: Context, min: number, max = Infinity): void {
  if (ctx.args.length < min) {
    const want = min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`;
    throw new UsageError(`missing argument: want ${want}, got ${ctx.args.length}`);
  }
  if (ctx.args.length > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(ctx.args[max])}`);
  }
}

// ---- registry wiring (remotes/): shared by resolve, fetch-object, fetch, pull ----

/** Flags of every command that talks to a registry. */
const REGISTRY_FLAGS: FlagSpec[] = [
  {
    name: "user",
    short: "u",
    type: "string",
    value: "USER[:PASSWORD]",
    description: "registry credentials (default: docker/podman config files)",
  },
  { name: "password-stdin", type: "boolean", description: "read the --user password from stdin" },
  {
    name: "plain-http",
    type: "boolean",
    description: "talk plain HTTP (default for localhost, 127.0.0.0/8 and [::1])",
  },
  { name: "insecure", type: "boolean", description: "skip TLS certificate verification" },
  {
    name: "ca-file",
    type: "string",
    value: "FILE",
    description: "trust the CA certificates in FILE",
  },
  {
    name: "timeout",
    type: "string",
    value: "DURATION",
    description:
      "give up on a registry silent this long: before its reply (connecting included) or within a body, which then resumes (default 30s)",
  },
];

/** Builds a registry client from {@link REGISTRY_FLAGS}; retries are reported as warnings. */
async function registryClient(ctx: Context): Promise<RegistryClient> {
  const user = stringFlag(ctx, "user");
  const passwordStdin = boolFlag(ctx, "password-stdin");
  let credentials: Credentials | undefined;
  if (user !== undefined) {
    const colon = user.indexOf(":");
    const username = colon < 0 ? user : user.slice(0, colon);
    let password = colon < 0 ? undefined : user.slice(colon + 1);
    if (passwordStdin) {
      if (password !== undefined) {
        throw new UsageError("--password-stdin conflicts with --user USER:PASSWORD");
      }
      password = (await new Response(Deno.stdin.readable).text()).replace(/\r?\n$/, "");
      // nothing piped in (`< /dev/null`, an unset CI secret): not a password to send
      if (password === "") throw new UsageError("empty password on stdin");
    }
    if (username === "" || password === undefined) {
      throw new UsageError("--user needs USER:PASSWORD, or USER with --password-stdin");
    }
    credentials = { username, password };
  } else if (passwordStdin) {
    throw new UsageError("--password-stdin needs --user USER");
  }
  const tls = stringFlag(ctx, "ca-file") !== undefined || boolFlag(ctx, "insecure");
  const timeout = stringFlag(ctx, "timeout");
  return new RegistryClient({
    credentials,
    // explicit TLS settings mean TLS, also for a loopback registry
    plainHttp: boolFlag(ctx, "plain-http") ? true : tls ? false : undefined,
    insecure: boolFlag(ctx, "insecure"),
    caFile: stringFlag(ctx, "ca-file"),
    timeoutMs: timeout === undefined ? undefined : positiveDuration("timeout", timeout),
    onRetry: (e) =>
      out.warn(`${e.action}: ${e.reason}; retrying in ${(e.delayMs / 1000).toFixed(1)}s`),
  });
}

/** `fetch-object` arguments: `REF [HINT...]` or the seed's `LOCATOR OBJECT [HINT...]`. */
function objectArguments(ctx: Context): { ref: Reference; mediaType?: string; size?: number } {
  expectArgs(ctx, 1);
  const [first, ...hints] = ctx.args;
  // an OBJECT is a tag or a digest, neither of which can start like a hint
  const object = hints.length && !/^(mediatype|size):/.test(hints[0]) ? hints.shift() : undefined;
  const ref = object === undefined ? parseReference(first) : parseObjectReference(first, object);
  let mediaType: string | undefined;
  let size: number | undefined;
  for (const hint of hints) {
    const colon = hint.indexOf(":");
    const [key, value] = [hint.slice(0, colon), hint.slice(colon + 1)];
    if (key === "mediatype" && value !== "") {
      mediaType = value;
    } else if (key === "size" && /^\d+$/.test(value)) {
      size = Number(value);
    } else {
      throw new UsageError(`unknown hint ${JSON.stringify(hint)}: want mediatype:TYPE or size:N`);
    }
  }
  return { ref, mediaType, size };
}

// ---- image wiring (fetch, pull, unpack, images, prune): progress and interrupts ----

/** Flags of the commands that fetch images. */
const FETCH_FLAGS: FlagSpec[] = [
  {
    name: "platform",
    type: "string",
    multiple: true,
    value: "OS/ARCH[/VARIANT]",
    description: "platform to fetch (default: this machine's)",
  },
  { name: "all-platforms", type: "boolean", description: "fetch every platform and attestation" },
  {
    name: "mirror",
    type: "string",
    multiple: true,
    value: "HOST",
    description:
      "try this registry mirror first (pull and resolve), then the next, then the upstream",
  },
  {
    name: "hosts-dir",
    type: "string",
    value: "DIR",
    description: "containerd-style registry hosts: DIR/<registry>/hosts.toml names mirrors",
  },
  {
    name: "max-concurrent-downloads",
    type: "string",
    value: "N",
    description:
      `blobs downloaded at once (default ${DEFAULT_MAX_CONCURRENT_DOWNLOADS}; one over 16 MiB counts as two)`,
  },
  { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
  { name: "quiet", short: "q", type: "boolean", description: "print only the image descriptor" },
];

/** The fetch options from {@link FETCH_FLAGS}. */
/** `pull` unpacks one platform: the fetch flags with a single `--platform` and no `--all-platforms`. */
/** What unpacking takes besides the platform: the limit on what layers may unpack to. */
const UNPACK_LIMIT_FLAG: FlagSpec = {
  name: "max-unpacked-size",
  type: "string",
  value: "SIZE",
  description:
    "stop when the layers unpack to more than SIZE (bytes, or 500M, 20G; default: no limit)",
};

/** How the bundle runs (see `RuntimeOptions`): the flags of `pull` and `unpack`. */
const BUNDLE_FLAGS: FlagSpec[] = [
  UNPACK_LIMIT_FLAG,
  {
    name: "rootless",
    type: "boolean",
    description:
      "a bundle for an unprivileged runtime, as runc spec --rootless (default when not root; --rootless=false to turn off)",
  },
  { name: "read-only", type: "boolean", description: "mount the root filesystem read-only" },
  { name: "terminal", type: "boolean", description: "give the process a terminal" },
  {
    name: "hostname",
    type: "string",
    value: "NAME",
    description: "the container's hostname (default dist)",
  },
];

/** The runtime options {@link BUNDLE_FLAGS} ask for. */
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

const PULL_FLAGS: FlagSpec[] = [
  ...FETCH_FLAGS.filter((f) => f.name !== "all-platforms").map((f) =>
    f.name === "platform"
      ? { ...f, multiple: false, description: "platform to pull (default: this machine's)" }
      : f
  ),
  ...BUNDLE_FLAGS,
];

/** `--max-unpacked-size`: bytes, or a number with K, M, G or T (powers of 1024). */
function sizeFlag(ctx: Context, name: string): number | undefined {
  const value = stringFlag(ctx, name);
  if (value === undefined) return undefined;
  const match = /^(\d+)([KMGT]?)$/i.exec(value);
  if (!match) {
    throw new UsageError(`invalid size ${JSON.stringify(value)} for --${name}: want e.g. 500M`);
  }
  return Number(match[1]) * 1024 ** " KMGT".indexOf((match[2] || " ").toUpperCase());
}

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
    import("./remotes/hosts.ts"),
    import("./remotes/mirrors.ts"),
  ]);
  const hosts = mirrors.map(mirrorHost);
  if (dir) hosts.push(...(await loadHosts(dir, ref.registry)));
  return mirrorsOf(hosts, ref.registry);
}

/** A flag that must be a positive whole number, if given. */
function positiveFlag(ctx: Context, name: string): number | undefined {
  const value = stringFlag(ctx, name);
  if (value !== undefined && !/^[1-9]\d*$/.test(value)) {
    throw new UsageError(`--${name} wants a positive number, got ${value}`);
  }
  return value === undefined ? undefined : Number(value);
}

/** Runs `task` with the progress output `--json` / `-q` / plain asks for. */
async function withProgress<T>(
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

/** `12.3 MiB` */
function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
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
async function interruptible(
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

// ---- store wiring (ingest, active, list, path, delete, abort, prune) ----

/** Milliseconds per duration unit accepted by {@link parseDuration}. */
const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses `90s`, `30m`, `24h`, `7d` or sums like `1h30m` into milliseconds. */
function parseDuration(flag: string, value: string): number {
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
function positiveDuration(flag: string, value: string): number {
  const ms = parseDuration(flag, value);
  if (ms <= 0) throw new UsageError(`--${flag} wants a duration above zero, got ${value}`);
  return ms;
}

/** `4s ago`, `12m ago`, `3h ago`, `2d ago`. */
function formatAge(date: Date, now = Date.now()): string {
  const seconds = Math.max(0, Math.floor((now - date.getTime()) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86_400)}d ago`;
}

/**
 * Standard input in chunks, reusing one buffer (the consumer is done with a chunk before it asks
 * for the next). `readSync`, because an async read of stdin costs a thread-pool round trip for
 * every 64 KiB a pipe delivers: 1 GiB hashed took 1.4 s with `read()`, 1.1 s with `readSync()`
 * and 2.0 s with `Deno.stdin.readable` (which also doubled the peak RSS).
 */
function* stdinChunks(): Generator<Uint8Array> {
  const buffer = new Uint8Array(1 << 20);
  for (;;) {
    const n = Deno.stdin.readSync(buffer);
    if (n === null) return;
    yield buffer.subarray(0, n);
  }
}

/**
 * How commands that only read or remove open the store: they create nothing, and a store that
 * does not exist yet reads as empty (`dist list --root /typo` must not leave a store at /typo).
 */
const READ_ONLY = { create: false };

/** Validates every argument as a digest before anything touches the store. */
/** The digests the arguments name, short ones (`sha256:4b1c0ad7e2f3`) expanded in `store`. */
async function digestArguments(ctx: Context, store: Store, min = 1): Promise<Digest[]> {
  expectArgs(ctx, min);
  const digests: Digest[] = [];
  for (const arg of ctx.args) {
    digests.push(isShortDigest(arg) ? await expandDigest(store, arg) : parseDigest(arg));
  }
  return digests;
}

/**
 * Write access to the store, for commands that open it without creating it and then change it
 * (delete, abort, images rm): asked first, since on a terminal Deno would prompt for it.
 */
function requireStoreWrite(store: Store): void {
  requirePermission(
    { name: "write", path: store.root },
    `write access to ${JSON.stringify(store.root)}`,
    "--allow-write",
  );
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

/**
 * Runs `action` for each item, reporting failures one line each and going on with the rest;
 * returns the exit code of the first failure (0 when all succeeded).
 */
async function forEachReporting<T>(
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

const COMMANDS: Command[] = [
  // ---- store commands (content/) ----
  {
    name: "ingest",
    usage: "--expected-digest DIGEST --expected-size N [flags] REF",
    summary: "write stdin into the store as one blob, verified against its digest and size",
    flags: [
      {
        name: "expected-digest",
        type: "string",
        value: "DIGEST",
        description: "digest the content must have (required)",
      },
      {
        name: "expected-size",
        type: "string",
        value: "N",
        description: "size in bytes the content must have (required)",
      },
    ],
    async run(ctx) {
      const digestFlag = stringFlag(ctx, "expected-digest");
      if (digestFlag === undefined) throw new UsageError("--expected-digest is required");
      const digest = parseDigest(digestFlag); // before anything: never build a path from it
      const sizeFlag = stringFlag(ctx, "expected-size");
      if (sizeFlag === undefined) throw new UsageError("--expected-size is required");
      if (!/^\d+$/.test(sizeFlag) || !Number.isSafeInteger(Number(sizeFlag))) {
        throw new UsageError(`invalid --expected-size ${JSON.stringify(sizeFlag)}: want bytes`);
      }
      expectArgs(ctx, 1, 1);
      const store = await Store.open(ctx.root());
      // Stdin cannot seek. When an earlier, interrupted `dist ingest` of this ref left N bytes,
      // the writer resumes at N and writeBlob drops the first N bytes of stdin, which replays
      // the blob from its start (containerd does the same); the commit still verifies the whole.
      // Content already present (or committed by a concurrent writer we waited for) is success.
      await writeBlob(store, ctx.args[0], stdinChunks(), { digest, size: Number(sizeFlag) });
    },
  },
  {
    name: "active",
    usage: "[flags]",
    summary: "list ingests in progress (REF, OFFSET/TOTAL, STARTED, UPDATED)",
    flags: [{ name: "json", type: "boolean", description: "print one JSON object a line" }],
    async run(ctx) {
      expectArgs(ctx, 0, 0);
      const statuses = await (await Store.open(ctx.root(), READ_ONLY)).listStatuses();
      if (boolFlag(ctx, "json")) {
        if (statuses.length) out.line(statuses.map((s) => JSON.stringify(s)).join("\n"));
        return;
      }
      const now = Date.now();
      out.table(
        ["REF", "OFFSET/TOTAL", "STARTED", "UPDATED"],
        statuses.map((s) => [
          s.ref,
          `${formatBytes(s.offset)}/${s.total === undefined ? "?" : formatBytes(s.total)}`,
          formatAge(s.startedAt, now),
          formatAge(s.updatedAt, now),
        ]),
      );
    },
  },
  {
    name: "list",
    aliases: ["ls"],
    usage: "[flags]",
    summary: "list committed blobs (DIGEST, SIZE, AGE)",
    flags: [
      { name: "quiet", short: "q", type: "boolean", description: "print digests only" },
      { name: "json", type: "boolean", description: "print one JSON object a line" },
    ],
    async run(ctx) {
      expectArgs(ctx, 0, 0);
      const store = await Store.open(ctx.root(), READ_ONLY);
      const infos = (await Array.fromAsync(store.list()))
        .sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
      if (boolFlag(ctx, "quiet") || boolFlag(ctx, "json")) {
        const lines = infos.map((i) => (boolFlag(ctx, "json") ? JSON.stringify(i) : i.digest));
        if (lines.length) out.line(lines.join("\n")); // one write: 10,000 lines stay fast
        return;
      }
      const now = Date.now();
      out.table(
        ["DIGEST", "SIZE", "AGE"],
        infos.map((i) => [i.digest, formatBytes(i.size), formatAge(i.createdAt, now)]),
      );
    },
  },
  {
    name: "path",
    usage: "[flags] DIGEST...",
    summary: "print the file path of committed blobs (DIGEST PATH)",
    flags: [{ name: "quiet", short: "q", type: "boolean", description: "print paths only" }],
    async run(ctx) {
      expectArgs(ctx, 1);
      const store = await Store.open(ctx.root(), READ_ONLY);
      const digests = await digestArguments(ctx, store);
      return await forEachReporting(digests, async (digest) => {
        await store.info(digest); // not found: exit 3
        const path = store.blobPath(digest);
        out.line(boolFlag(ctx, "quiet") ? path : `${digest} ${path}`);
      });
    },
  },
  {
    name: "delete",
    aliases: ["rm"],
    usage: "[flags] [DIGEST...]",
    summary:
      "delete committed blobs, printing each digest deleted; blobs images use are kept (exit 0)",
    flags: [
      {
        name: "force",
        type: "boolean",
        description: "also delete blobs an image record uses (the image breaks)",
      },
    ],
    async run(ctx) {
      // no digest is nothing to do: `dist list -q | xargs dist delete` on an empty store
      if (ctx.args.length === 0) return 0;
      const store = await Store.open(ctx.root(), READ_ONLY);
      requireStoreWrite(store);
      const digests = await digestArguments(ctx, store);
      // a blob a record uses (a manifest, a layer) would leave that image broken: --force only.
      // Keeping it is what the clear-out pipeline wants, so it is no failure: one line says so.
      const remove = await blobDeleter(store, { force: boolFlag(ctx, "force") });
      // who keeps how many: "image NAME" or "a fetch or import in progress"
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
    },
  },
  {
    name: "abort",
    usage: "[flags] REF...",
    summary: "remove ingests and their data, printing each ref removed",
    flags: [],
    async run(ctx) {
      expectArgs(ctx, 1);
      const store = await Store.open(ctx.root(), READ_ONLY);
      requireStoreWrite(store);
      return await forEachReporting(ctx.args, async (ref) => {
        await store.abort(ref);
        out.line(ref);
      });
    },
  },
  {
    name: "prune",
    usage: "[--ingests] [--older-than DURATION] [--dry-run] [flags]",
    summary: "remove blobs no image reaches and abandoned ingests",
    flags: [
      {
        name: "ingests",
        type: "boolean",
        description: "remove only ingests not updated for --older-than, no blobs",
      },
      {
        name: "older-than",
        type: "string",
        value: "DURATION",
        description: "age of the last update, e.g. 90s, 30m, 24h, 7d (default 24h)",
      },
      {
        name: "dry-run",
        type: "boolean",
        description: "print what would be removed, remove nothing",
      },
    ],
    async run(ctx) {
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
    },
  },

  // ---- registry commands (remotes/) ----
  {
    name: "resolve",
    storeless: true,
    usage: "[flags] REF",
    summary: "resolve a reference to its manifest descriptor",
    flags: [
      ...REGISTRY_FLAGS,
      { name: "json", type: "boolean", description: "print the descriptor only, as JSON" },
    ],
    async run(ctx) {
      expectArgs(ctx, 1, 1);
      const ref = parseReference(ctx.args[0]);
      const client = await registryClient(ctx);
      try {
        const desc = await client.resolve(ref);
        if (!boolFlag(ctx, "json")) out.line(formatReference(ref));
        out.json(desc);
      } finally {
        client.close();
      }
    },
  },
  {
    name: "fetch-object",
    storeless: true,
    streamsData: true,
    usage: "[flags] (REF | LOCATOR OBJECT) [mediatype:TYPE] [size:N]",
    summary: "write one manifest or blob from a registry to stdout, raw and verified",
    flags: REGISTRY_FLAGS,
    async run(ctx) {
      const { ref, mediaType, size } = objectArguments(ctx);
      const client = await registryClient(ctx);
      try {
        await fetchObject(client, ref, { mediaType, size, write: out.bytes });
      } finally {
        client.close();
      }
    },
  },
  // ---- image commands (fetch, pull, unpack, images, prune) ----
  {
    name: "fetch",
    usage: "[flags] REF...",
    summary: "fetch images (for the chosen platforms) from a registry into the store",
    flags: [...FETCH_FLAGS, ...REGISTRY_FLAGS],
    run(ctx) {
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
    },
  },
  {
    name: "pull",
    usage: "[flags] REF [DIR]",
    summary: "fetch an image and unpack it into a runtime bundle DIR (default: its name)",
    flags: [...PULL_FLAGS, ...REGISTRY_FLAGS],
    run(ctx) {
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
        await checkBundle(dir); // a DIR unpack would refuse is refused before the download
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
    },
  },
  {
    name: "unpack",
    usage: "[flags] NAME|DIGEST DIR",
    summary: "unpack an image from the store into a runtime bundle DIR",
    flags: [
      {
        name: "platform",
        type: "string",
        value: "OS/ARCH[/VARIANT]",
        description: "platform of a multi-platform image (default: this machine's)",
      },
      ...BUNDLE_FLAGS,
      { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
      { name: "quiet", short: "q", type: "boolean", description: "print nothing on success" },
    ],
    run(ctx) {
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
    },
  },
  {
    name: "images",
    usage: "[flags] | rm NAME|DIGEST...",
    summary:
      "list image records (NAME DIGEST SIZE PLATFORMS), or remove them (by DIGEST: every name it has)",
    flags: [
      { name: "json", type: "boolean", description: "print one JSON object a record" },
      { name: "quiet", short: "q", type: "boolean", description: "print names only" },
    ],
    async run(ctx) {
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
    },
  },
  {
    name: "check",
    usage: "[--repair] [flags] [NAME|DIGEST...]",
    summary:
      "verify that images (default: every record) are whole and every blob matches its digest",
    flags: [
      {
        name: "repair",
        type: "boolean",
        description:
          "delete blobs that do not match and fetch what is missing from the image's registry",
      },
      { name: "json", type: "boolean", description: "print one JSON object an image" },
      ...REGISTRY_FLAGS,
    ],
    run(ctx) {
      const repair = boolFlag(ctx, "repair");
      return interruptible("check interrupted", async (signal) => {
        const store = await Store.open(ctx.root(), repair ? undefined : READ_ONLY);
        const names = ctx.args.length
          ? ctx.args
          : (await new Images(store.root).list()).map((r) => r.name);
        const client = repair ? await registryClient(ctx) : undefined;
        try {
          return await forEachReporting(names, async (name) => {
            const image = await findImage(store, name);
            const label = image.name ?? image.target.digest;
            const { checkImage } = await import("./content/images/check.ts");
            let problems = await checkImage(store, image.target, { name: label, signal });
            if (problems.length && client && image.name !== undefined) {
              for (const { descriptor, problem } of problems) {
                if (problem === "corrupt") await store.delete(descriptor.digest);
              }
              // the platforms the store held, fetched again: what is missing comes back
              const { platforms } = await summarizeImage(store, image.target);
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
    },
  },
  {
    name: "serve",
    usage: "[--listen ADDR:PORT|unix:PATH] [--allow-push] [--allow-delete] [flags]",
    summary: "serve the store as an OCI registry (pull; push and delete when allowed)",
    description: "Records HOST/REPO:TAG are served as REPO:TAG (the host dropped); a pushed tag " +
      "is recorded as SERVER/REPO:TAG, SERVER as the client names it. Uploads are ingests: " +
      "they show in dist active and survive a restart. One access-log line a request on stderr. " +
      "Ctrl-C or SIGTERM stops it (exit 0).",
    flags: [
      {
        name: "listen",
        type: "string",
        value: "ADDR:PORT|unix:PATH",
        description: "where to listen (default 127.0.0.1:5000)",
      },
      { name: "allow-push", type: "boolean", description: "accept uploads and manifests" },
      {
        name: "allow-delete",
        type: "boolean",
        description: "accept DELETE of manifests and blobs (never of blobs an image uses)",
      },
      {
        name: "htpasswd",
        type: "string",
        value: "FILE",
        description: "require Basic auth from the users of FILE (bcrypt, htpasswd -B)",
      },
      { name: "cert", type: "string", value: "FILE", description: "TLS certificate chain (PEM)" },
      { name: "key", type: "string", value: "FILE", description: "TLS private key (PEM)" },
      {
        name: "insecure",
        type: "boolean",
        description: "allow --htpasswd over plain HTTP on a non-loopback address",
      },
      { name: "json", type: "boolean", description: "log one JSON object a request" },
    ],
    async run(ctx) {
      expectArgs(ctx, 0, 0);
      const listen = stringFlag(ctx, "listen") ?? "127.0.0.1:5000";
      const where = /^unix:(.+)$/.exec(listen) ?? /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
      if (!where) {
        throw new UsageError(
          `invalid --listen ${JSON.stringify(listen)}: want ADDR:PORT or unix:PATH`,
        );
      }
      const unix = listen.startsWith("unix:");
      const read = async (flag: string) => {
        const path = stringFlag(ctx, flag);
        return path === undefined ? undefined : await Deno.readTextFile(path);
      };
      const json = boolFlag(ctx, "json");
      const { serveStore } = await import("./remotes/serve/server.ts");
      const store = await Store.open(ctx.root());
      const stop = new AbortController();
      const server = await serveStore(store, {
        ...(unix
          ? { path: where[1] }
          : { hostname: where[1] || "0.0.0.0", port: Number(where[2]) }),
        allowPush: boolFlag(ctx, "allow-push"),
        allowDelete: boolFlag(ctx, "allow-delete"),
        htpasswd: stringFlag(ctx, "htpasswd"),
        cert: await read("cert"),
        key: await read("key"),
        insecure: boolFlag(ctx, "insecure"),
        signal: stop.signal,
        onListen: (address) => out.log(`dist: serving ${store.root} on ${address}`),
        onAccess: (e) =>
          out.log(
            json ? JSON.stringify(e) : `${e.method} ${e.path} ${e.status} ${e.bytes} ${e.ms}ms`,
          ),
      });
      const onStop = () => stop.abort();
      Deno.addSignalListener("SIGINT", onStop);
      Deno.addSignalListener("SIGTERM", onStop);
      try {
        await server.finished;
      } finally {
        Deno.removeSignalListener("SIGINT", onStop);
        Deno.removeSignalListener("SIGTERM", onStop);
      }
    },
  },
  // ---- archive commands (export, import) ----
  {
    name: "export",
    streamsData: true,
    usage: "-o FILE|- [flags] NAME|DIGEST...",
    summary: "write images from the store to a tar archive that docker load (or an OCI tool) reads",
    flags: [
      {
        name: "output",
        short: "o",
        type: "string",
        value: "FILE",
        description: "where the archive goes (required); - for stdout. A file appears only " +
          "once it is complete",
      },
      {
        name: "format",
        type: "string",
        value: "docker|oci",
        description: "docker: a docker-archive for docker load, also an OCI layout (default); " +
          "oci: an OCI image-layout archive with every platform in the store",
      },
      {
        name: "platform",
        type: "string",
        value: "OS/ARCH[/VARIANT]",
        description: "docker format: the platform of a multi-platform image (default: this " +
          "machine's)",
      },
    ],
    run(ctx) {
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
        const { exportImages } = await import("./content/archives/export.ts");
        const archive = await exportImages(store, ctx.args, {
          format: format as ArchiveFormat,
          platform,
          signal,
        });
        if (output !== "-") return await writeFileAtomic(output, archive);
        for await (const chunk of archive) out.bytes(chunk);
      });
    },
  },
  {
    name: "import",
    usage: "[flags] FILE|-",
    summary: "read a docker-archive or OCI-archive tar (- for stdin) into the store, recording " +
      "its images",
    flags: [
      { name: "json", type: "boolean", description: "print one JSON object an image" },
      { name: "quiet", short: "q", type: "boolean", description: "print image names only" },
    ],
    run(ctx) {
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
        const { importArchive } = await import("./content/archives/import.ts");
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
    },
  },
  {
    name: "push",
    usage: "[flags] NAME [DEST-REF]",
    summary: "push an image from the store to a registry, every platform the store holds of it",
    flags: [
      {
        name: "max-concurrent-uploads",
        type: "string",
        value: "N",
        description:
          `blobs uploaded at once (default ${DEFAULT_MAX_CONCURRENT_DOWNLOADS}; one over 16 MiB counts as two)`,
      },
      { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
      {
        name: "quiet",
        short: "q",
        type: "boolean",
        description: "print only the image descriptor",
      },
      ...REGISTRY_FLAGS,
    ],
    run(ctx) {
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
            const { pushImage } = await import("./remotes/push.ts");
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
    },
  },
  {
    name: "copy",
    aliases: ["cp"],
    usage: "[flags] SRC DEST",
    summary: "copy an image between registries, OCI layouts and archives, without the store",
    storeless: true,
    description: "SRC and DEST are registry references (docker://REF or REF), oci:DIR[:NAME], " +
      "oci-archive:FILE[:NAME] or docker-archive:FILE[:NAME], as skopeo names them. Between " +
      "registries every blob streams straight through, verified, and is mounted when both are " +
      "repositories of one registry. Of a multi-platform image one platform's manifest is copied " +
      "(--platform, default this machine's), or the whole index with --all-platforms.",
    flags: [
      {
        name: "platform",
        type: "string",
        value: "OS/ARCH[/VARIANT]",
        description: "platform to copy of a multi-platform image (default: this machine's)",
      },
      { name: "all-platforms", type: "boolean", description: "copy the whole index" },
      {
        name: "referrers",
        type: "boolean",
        description: "also copy the signatures and attestations that refer to the image (OCI 1.1)",
      },
      {
        name: "max-concurrent-downloads",
        type: "string",
        value: "N",
        description: `blobs copied at once (default ${DEFAULT_MAX_CONCURRENT_DOWNLOADS})`,
      },
      { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
      { name: "quiet", short: "q", type: "boolean", description: "print only the descriptor" },
      ...REGISTRY_FLAGS,
    ],
    async run(ctx) {
      expectArgs(ctx, 2, 2);
      const { copyLocation, parseLocation } = await import("./remotes/transports.ts");
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
    },
  },
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

/** Maps an error to an exit code and prints it as one line. */
function report(error: unknown, command?: Command): number {
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
