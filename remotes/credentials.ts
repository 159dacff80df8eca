/**
 * Registry credentials from the places docker and podman keep them: the docker CLI's
 * `config.json` (`auths`, `credsStore`, `credHelpers` run as `docker-credential-<helper> get`)
 * and the containers `auth.json` files. Secrets never appear in error messages.
 *
 * @example
 * ```ts
 * import { lookupCredentials } from "./credentials.ts";
 * const credentials = await lookupCredentials("docker.io", { repository: "library/redis" });
 * console.assert(credentials === undefined || typeof credentials === "object");
 * ```
 *
 * @module
 */
import { CorruptContentError, InvalidArgumentError } from "../content/errors.ts";
import { permitted, readEnv, requirePermission } from "../content/internal/mod.ts";
import { DOCKER_HUB } from "../content/reference.ts";

/** What a client can present to a registry or its token server. */
export interface Credentials {
  /** The user name (Basic auth, or the token server's basic auth). */
  username?: string;
  /** The password or access token paired with `username`. */
  password?: string;
  /** An OAuth2 refresh token (`identitytoken`), exchanged at the token server. */
  identityToken?: string;
  /** A bearer token sent to the registry as is (`registrytoken`). */
  registryToken?: string;
}

/** Finds credentials for a registry (as users name it, e.g. `docker.io`) and repository. */
export type CredentialProvider = (
  registry: string,
  repository: string,
) => Promise<Credentials | undefined>;

/** Options for {@link lookupCredentials}. */
export interface LookupCredentialsOptions {
  /** The repository, for `auth.json` entries keyed by `host/namespace`. */
  repository?: string;
  /** Reads an environment variable (default: the process environment). */
  env?: (name: string) => string | undefined;
}

/** The key docker uses for Docker Hub in `config.json`. */
export const DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/";

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/**
 * Looks up credentials for `registry`: first the docker CLI config (`$DOCKER_CONFIG/config.json`,
 * else `~/.docker/config.json`), then the containers `auth.json` files (`$REGISTRY_AUTH_FILE`, else
 * `$XDG_RUNTIME_DIR/containers/auth.json` and `$XDG_CONFIG_HOME/containers/auth.json`, which
 * defaults to `~/.config/containers/auth.json`). Returns undefined when none has an entry.
 */
export async function lookupCredentials(
  registry: string,
  options: LookupCredentialsOptions = {},
): Promise<Credentials | undefined> {
  const env = options.env ?? readEnv;
  const repository = options.repository ?? "";
  const home = env("HOME");
  const dockerDir = env("DOCKER_CONFIG") ?? (home ? `${home}/.docker` : undefined);
  const files: string[] = [];
  if (dockerDir) files.push(`${dockerDir}/config.json`);
  const authFile = env("REGISTRY_AUTH_FILE");
  if (authFile) {
    files.push(authFile);
  } else {
    const runtimeDir = env("XDG_RUNTIME_DIR");
    if (runtimeDir) files.push(`${runtimeDir}/containers/auth.json`);
    const configHome = env("XDG_CONFIG_HOME") ?? (home ? `${home}/.config` : undefined);
    if (configHome) files.push(`${configHome}/containers/auth.json`);
  }
  for (const path of files) {
    const file = await readAuthFile(path);
    if (!file) continue;
    const found = await credentialsFromFile(file, registry, repository);
    if (found) return found;
  }
  return undefined;
}

/** Reads and parses one auth file; undefined when it is missing or unreadable. */
async function readAuthFile(path: string): Promise<AuthFile | undefined> {
  // a file --allow-read does not cover is passed over, as a missing one: never a prompt
  if (!permitted({ name: "read", path })) return undefined;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) {
      return undefined;
    }
    throw error;
  }
  try {
    const parsed = JSON.parse(text);
    if (parsed === null || typeof parsed !== "object") throw new Error("not an object");
    return parsed as AuthFile;
  } catch {
    // the parser's message quotes the text, which holds secrets: name the file only
    throw new CorruptContentError(`cannot parse credentials file ${path}: not valid JSON`);
  }
}

async function credentialsFromFile(
  file: AuthFile,
  registry: string,
  repository: string,
): Promise<Credentials | undefined> {
  const helpers = file.credHelpers ?? {};
  const helperKey = bestKey(Object.keys(helpers), registry, repository);
  const helper = helperKey !== undefined ? helpers[helperKey] : file.credsStore;
  if (helper) {
    const found = await runCredentialHelper(helper, registry);
    if (found) return found;
  }
  const auths = file.auths ?? {};
  const key = bestKey(Object.keys(auths), registry, repository);
  return key === undefined ? undefined : decodeEntry(auths[key], key);
}

/** Picks the most specific key naming `registry` (or `registry/namespace…` of `repository`). */
function bestKey(keys: string[], registry: string, repository: string): string | undefined {
  const full = `${registry}/${repository}`;
  let best: string | undefined;
  let bestLength = -1;
  for (const key of keys) {
    const normalized = normalizeKey(key);
    const matches = normalized === registry || (repository !== "" &&
      (full === normalized || full.startsWith(normalized + "/")));
    if (matches && normalized.length > bestLength) {
      best = key;
      bestLength = normalized.length;
    }
  }
  return best;
}

/**
 * Turns a config key into `host` or `host/namespace`: `https://index.docker.io/v1/` and
 * `registry-1.docker.io` become `docker.io`; URL forms lose their scheme and path.
 */
function normalizeKey(key: string): string {
  let value = key.trim();
  const scheme = /^[a-z]+:\/\//i.exec(value);
  if (scheme) {
    value = value.slice(scheme[0].length);
    const slash = value.indexOf("/");
    if (slash >= 0) value = value.slice(0, slash); // legacy URL keys carry an API path
  }
  value = value.replace(/\/+$/, "");
  const slash = value.indexOf("/");
  const host = slash < 0 ? value : value.slice(0, slash);
  const path = slash < 0 ? "" : value.slice(slash);
  const aliases = ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];
  return (aliases.includes(host) ? DOCKER_HUB : host) + path;
}

function decodeEntry(entry: AuthEntry | undefined, key: string): Credentials | undefined {
  if (!entry || typeof entry !== "object") return undefined;
  const credentials: Credentials = {};
  if (typeof entry.auth === "string" && entry.auth !== "") {
    let decoded: string;
    try {
      decoded = new TextDecoder().decode(Uint8Array.from(atob(entry.auth), (c) => c.charCodeAt(0)));
    } catch {
      throw new CorruptContentError(`cannot decode the "auth" field of credentials for ${key}`);
    }
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw new CorruptContentError(`the "auth" field of credentials for ${key} has no ":"`);
    }
    credentials.username = decoded.slice(0, colon);
    credentials.password = decoded.slice(colon + 1);
  } else if (entry.username) {
    credentials.username = entry.username;
    credentials.password = entry.password ?? "";
  }
  if (entry.identitytoken) credentials.identityToken = entry.identitytoken;
  if (entry.registrytoken) credentials.registryToken = entry.registrytoken;
  return Object.keys(credentials).length > 0 ? credentials : undefined;
}

/**
 * Runs `docker-credential-<helper> get` with the server URL on stdin. Returns undefined when the
 * helper has no credentials for it. The helper's output holds secrets and is never quoted.
 */
export async function runCredentialHelper(
  helper: string,
  registry: string,
): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) {
    throw new InvalidArgumentError(`invalid credential helper name ${JSON.stringify(helper)}`);
  }
  const program = `docker-credential-${helper}`;
  const serverUrl = registry === DOCKER_HUB ? DOCKER_HUB_CONFIG_KEY : registry;
  // checked first: on a terminal, Deno would stop at a prompt for it
  requirePermission(
    { name: "run", command: program },
    `run access to ${JSON.stringify(program)}`,
    "--allow-run",
  );
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args: ["get"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error; // the CLI names the permission
    // the local configuration names a helper that cannot run: no registry refused anything
    const why = error instanceof Deno.errors.NotFound
      ? "it is not installed"
      : (error as Error).message;
    throw new CorruptContentError(`cannot get credentials for ${registry} from ${program}: ${why}`);
  }
  try {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(serverUrl));
    await writer.close();
  } catch (error) {
    // a helper may exit without reading stdin: its exit status and reply decide below
    if (!(error instanceof Deno.errors.BrokenPipe)) {
      child.kill();
      await child.output().catch(() => {});
      throw error;
    }
  }
  const output = await child.output();
  const stdout = new TextDecoder().decode(output.stdout);
  // A helper that fails or answers nonsense is a local fault (exit 1), not a registry's refusal
  if (!output.success) {
    if (/credentials not found/i.test(stdout)) return undefined;
    throw new CorruptContentError(
      `cannot get credentials for ${registry} from ${program}: it exited with code ${output.code}`,
    );
  }
  let reply: { Username?: unknown; Secret?: unknown };
  try {
    reply = JSON.parse(stdout);
  } catch {
    throw new CorruptContentError(
      `cannot get credentials for ${registry} from ${program}: its reply is not valid JSON`,
    );
  }
  const username = typeof reply.Username === "string" ? reply.Username : "";
  const secret = typeof reply.Secret === "string" ? reply.Secret : "";
  if (username === "" && secret === "") return undefined;
  // "<token>" as the user name marks an identity (refresh) token, as in the docker CLI
  if (username === "<token>") return { identityToken: secret };
  return { username, password: secret };
}
