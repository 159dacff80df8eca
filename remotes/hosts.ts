/**
 * Registry hosts as containerd reads them: a `hosts.toml` per registry under a config directory
 * (`DIR/<registry>/hosts.toml`, else `DIR/_default/hosts.toml`), naming mirrors tried in order
 * before the upstream, each with what it may be used for.
 *
 * ```toml
 * server = "https://registry.example"        # the upstream (default: the registry itself)
 *
 * [host."http://127.0.0.1:5001"]
 *   capabilities = ["pull", "resolve"]       # default: pull, resolve, push
 *   skip_verify = false                      # TLS without certificate checks
 *   ca = "/etc/certs/mirror.pem"             # a CA file (or a list of them: the first is used)
 *   override_path = false                    # the URL's path replaces `/v2`
 * ```
 *
 * @module
 */
import { InvalidArgumentError } from "../content/errors.ts";
import { requirePermission } from "../content/internal/mod.ts";

/** What a host may be used for. */
export type HostCapability = "pull" | "resolve" | "push";

/** One registry host: a mirror or the upstream. */
export interface RegistryHost {
  /** `host[:port]`, as references name registries. */
  host: string;
  /** `http` or `https`. */
  scheme: "http" | "https";
  /** The path the API is served under (`/v2` unless `override_path` names another). */
  apiRoot: string;
  /** What the host is asked for. */
  capabilities: HostCapability[];
  /** Skip TLS certificate checks. */
  skipVerify: boolean;
  /** A CA certificate file to trust. */
  ca?: string;
}

const ALL: HostCapability[] = ["pull", "resolve", "push"];

/** A mirror given on the command line (`--mirror HOST`): pull and resolve, HTTPS unless loopback. */
export function mirrorHost(text: string): RegistryHost {
  const url = parseHostUrl(text.includes("://") ? text : `//${text}`, `--mirror ${text}`);
  return {
    ...url,
    apiRoot: apiRoot(url.apiRoot),
    capabilities: ["pull", "resolve"],
    skipVerify: false,
  };
}

/**
 * The hosts `DIR/<registry>/hosts.toml` (else `DIR/_default/hosts.toml`) names for `registry`,
 * mirrors first and the upstream last; just the upstream when there is no file.
 */
export async function loadHosts(dir: string, registry: string): Promise<RegistryHost[]> {
  for (const name of [registry.replace(/:/g, "_"), registry, "_default"]) {
    const path = `${dir}/${name}/hosts.toml`;
    requirePermission(
      { name: "read", path },
      `read access to ${JSON.stringify(dir)}`,
      "--allow-read",
    );
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    return parseHostsToml(text, registry, path);
  }
  return [];
}

/** The hosts of a `hosts.toml` text (see the module doc), mirrors in order, then the server. */
export function parseHostsToml(
  text: string,
  registry: string,
  file = "hosts.toml",
): RegistryHost[] {
  const tables = parseToml(text, file);
  const top = tables.get("") ?? {};
  const hosts: RegistryHost[] = [];
  for (const [key, values] of tables) {
    const match = /^host\.(.+)$/.exec(key);
    if (!match) continue;
    hosts.push(hostOf(match[1], values, `${file} [${key}]`));
  }
  const server = top.server;
  if (server !== undefined && typeof server !== "string") {
    throw new InvalidArgumentError(`invalid ${file}: server must be a string`);
  }
  if (server !== undefined) {
    const upstream = hostOf(server, {}, `${file} server`);
    hosts.push({ ...upstream, capabilities: ALL });
  }
  if (!hosts.some((h) => h.host === registry) && server === undefined) {
    // without `server`, the registry itself stays the last resort
    hosts.push({
      host: registry,
      scheme: "https",
      apiRoot: "/v2",
      capabilities: ALL,
      skipVerify: false,
    });
  }
  return hosts;
}

type TomlValue = string | boolean | number | string[];

function hostOf(url: string, values: Record<string, TomlValue>, where: string): RegistryHost {
  const parsed = parseHostUrl(url, where);
  const capabilities = values.capabilities ?? ALL;
  if (
    !Array.isArray(capabilities) || capabilities.some((c) => !ALL.includes(c as HostCapability))
  ) {
    throw new InvalidArgumentError(
      `invalid ${where}: capabilities must list pull, resolve or push`,
    );
  }
  const flag = (name: string) => {
    const value = values[name] ?? false;
    if (typeof value !== "boolean") {
      throw new InvalidArgumentError(`invalid ${where}: ${name} must be true or false`);
    }
    return value;
  };
  const ca = Array.isArray(values.ca) ? values.ca[0] : values.ca;
  if (ca !== undefined && typeof ca !== "string") {
    throw new InvalidArgumentError(`invalid ${where}: ca must be a path`);
  }
  return {
    ...parsed,
    apiRoot: flag("override_path") ? parsed.apiRoot : apiRoot(parsed.apiRoot),
    capabilities: capabilities as HostCapability[],
    skipVerify: flag("skip_verify"),
    ...(ca ? { ca } : {}),
  };
}

/** The API root below a host URL's path: containerd appends `/v2` unless it is there. */
function apiRoot(path: string): string {
  return `${path.replace(/\/v2$/, "")}/v2`;
}

function parseHostUrl(
  text: string,
  where: string,
): Omit<RegistryHost, "capabilities" | "skipVerify"> {
  let url: URL;
  try {
    url = new URL(text, "https://placeholder.invalid");
  } catch {
    throw new InvalidArgumentError(`invalid ${where}: ${JSON.stringify(text)} is not a URL`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== "http" && scheme !== "https") {
    throw new InvalidArgumentError(
      `invalid ${where}: ${JSON.stringify(text)} is not http or https`,
    );
  }
  if (
    url.username || url.password || url.search || url.hash || url.host === "placeholder.invalid"
  ) {
    throw new InvalidArgumentError(`invalid ${where}: ${JSON.stringify(text)} is not a host URL`);
  }
  const explicit = text.includes("://");
  const loopback = /^(localhost|127(\.\d+){3}|\[::1\])(:\d+)?$/.test(url.host);
  return {
    host: url.host,
    scheme: explicit ? scheme : loopback ? "http" : "https",
    apiRoot: url.pathname.replace(/\/+$/, ""),
  };
}

/**
 * Parses the part of TOML that `hosts.toml` uses: `[table."quoted".keys]`, `key = value` with
 * strings, booleans, integers and arrays of strings, and comments. Returns the tables by their
 * dotted name with quotes removed (`host.https://mirror`), the top level under "".
 */
function parseToml(text: string, file: string): Map<string, Record<string, TomlValue>> {
  const tables = new Map<string, Record<string, TomlValue>>([["", {}]]);
  let current = tables.get("")!;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    let line = stripComment(lines[n]).trim();
    if (line === "") continue;
    const fail = (why: string) => new InvalidArgumentError(`invalid ${file} line ${n + 1}: ${why}`);
    if (line.startsWith("[")) {
      if (!line.endsWith("]") || line.startsWith("[[")) throw fail("want [table]");
      const name = keyPath(line.slice(1, -1), fail).join(".");
      if (tables.has(name)) throw fail(`table [${name}] appears twice`);
      current = {};
      tables.set(name, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq < 0) throw fail("want key = value");
    const key = keyPath(line.slice(0, eq), fail).join(".");
    let value = line.slice(eq + 1).trim();
    // an array may go on over several lines
    while (value.startsWith("[") && !balanced(value) && n + 1 < lines.length) {
      line = stripComment(lines[++n]).trim();
      value += " " + line;
    }
    if (key in current) throw fail(`${key} appears twice`);
    current[key] = tomlValue(value, fail);
  }
  return tables;
}

function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#") return line.slice(0, i);
  }
  return line;
}

function balanced(value: string): boolean {
  return stripComment(value).trim().endsWith("]");
}

function keyPath(text: string, fail: (why: string) => Error): string[] {
  const parts: string[] = [];
  const pattern = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(\.|$)/y;
  let at = 0;
  while (at < text.length) {
    pattern.lastIndex = at;
    const match = pattern.exec(text);
    if (!match) throw fail(`invalid key ${JSON.stringify(text.trim())}`);
    parts.push(match[1] !== undefined ? unescape(match[1], fail) : match[2] ?? match[3]);
    at = pattern.lastIndex;
    if (match[4] === "") break;
  }
  if (parts.length === 0) throw fail("empty key");
  return parts;
}

function tomlValue(text: string, fail: (why: string) => Error): TomlValue {
  if (text === "true" || text === "false") return text === "true";
  if (/^[+-]?\d+$/.test(text)) return Number(text);
  if (text.startsWith('"') && text.endsWith('"') && text.length >= 2) {
    return unescape(text.slice(1, -1), fail);
  }
  if (text.startsWith("'") && text.endsWith("'") && text.length >= 2) return text.slice(1, -1);
  if (text.startsWith("[") && text.endsWith("]")) {
    const inner = text.slice(1, -1).trim();
    if (inner === "") return [];
    const items = inner.replace(/,\s*$/, "").split(",").map((item) => tomlValue(item.trim(), fail));
    if (items.some((item) => typeof item !== "string")) throw fail("arrays hold strings only");
    return items as string[];
  }
  throw fail(`invalid value ${text}`);
}

function unescape(text: string, fail: (why: string) => Error): string {
  return text.replace(/\\(["\\bfnrt]|u[0-9a-fA-F]{4})|\\(.)/g, (_, known, bad) => {
    if (bad !== undefined) throw fail(`invalid escape \\${bad}`);
    const simple: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
    if (known.length === 1) return simple[known] ?? known;
    return String.fromCharCode(parseInt(known.slice(1), 16));
  });
}
