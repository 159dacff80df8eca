/**
 * A real CNCF distribution registry (`docker-registry`), started on a free loopback port with a
 * temporary storage directory and stopped afterwards. See shared/notes/registry-token-auth.md.
 */
import { freePort, removeTree, requireTool, withTempDir } from "./temp.ts";

/** How the registry authenticates clients. */
export type RegistryAuth =
  | { kind: "none" }
  | { kind: "htpasswd"; user: string; password: string }
  | {
    kind: "token";
    /** URL of the token issuer the client is sent to. */
    realm: string;
    service: string;
    issuer: string;
    /** PEM certificate whose key signs the tokens. */
    certificatePath: string;
  };

/** A running registry. */
export interface Registry {
  /** `127.0.0.1:PORT`, the host part of references. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** The storage directory. */
  storage: string;
  /** Everything the registry logged so far (its request log included). */
  log(): string;
  /** Stops the registry and removes its files. */
  stop(): Promise<void>;
}

/** Options of {@link startRegistry}. */
export interface RegistryOptions {
  /** Run as a pull-through cache of this upstream registry URL (`proxy: remoteurl:`). */
  proxyOf?: string;
}

/** Starts `docker-registry` and waits until it answers. */
export async function startRegistry(
  auth: RegistryAuth = { kind: "none" },
  options: RegistryOptions = {},
): Promise<Registry> {
  await requireTool("docker-registry");
  const dir = await Deno.makeTempDir({ prefix: "dist-registry-" });
  const port = freePort();
  const storage = `${dir}/storage`;
  await Deno.mkdir(storage);
  let authConfig = "";
  if (auth.kind === "htpasswd") {
    // the registry accepts bcrypt hashes only; `htpasswd -B` (apache2-utils) makes them
    await requireTool("htpasswd");
    const htpasswd = `${dir}/htpasswd`;
    const made = await new Deno.Command("htpasswd", {
      args: ["-cbB", htpasswd, auth.user, auth.password],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!made.success) throw new Error("htpasswd could not write the password file");
    authConfig = `auth:\n  htpasswd:\n    realm: dist-test\n    path: ${htpasswd}\n`;
  } else if (auth.kind === "token") {
    authConfig = `auth:\n  token:\n    realm: ${auth.realm}\n    service: ${auth.service}\n` +
      `    issuer: ${auth.issuer}\n    rootcertbundle: ${auth.certificatePath}\n`;
  }
  const config = `${dir}/config.yml`;
  await Deno.writeTextFile(
    config,
    `version: 0.1\nlog: {level: info, accesslog: {disabled: false}}\n` +
      `storage:\n  filesystem: {rootdirectory: ${storage}}\n  delete: {enabled: true}\n` +
      // accept manifests with foreign (non-distributable) layers, which carry URLs
      `validation:\n  manifests:\n    urls:\n      allow: ['^https?://']\n` +
      `http:\n  addr: 127.0.0.1:${port}\n${authConfig}` +
      (options.proxyOf ? `proxy:\n  remoteurl: ${options.proxyOf}\n` : ""),
  );
  const child = new Deno.Command("docker-registry", {
    args: ["serve", config],
    stdout: "piped",
    stderr: "piped",
    env: { OTEL_TRACES_EXPORTER: "none" },
  }).spawn();
  const logChunks: string[] = [];
  const decoder = new TextDecoder();
  const drain = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeTo(
      new WritableStream({ write: (chunk) => void logChunks.push(decoder.decode(chunk)) }),
    ).catch(() => {});
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await drained;
    await removeTree(dir);
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const res = await fetch(`${url}/v2/`);
      await res.body?.cancel();
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`registry did not start on ${url}: ${logChunks.join("")}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { host: `127.0.0.1:${port}`, url, storage, log: () => logChunks.join(""), stop };
}

/** Runs `fn` with a fresh registry and a temporary directory; stops and removes both afterwards. */
export async function withRegistry<T>(
  fn: (registry: Registry, dir: string) => Promise<T>,
  auth?: RegistryAuth,
): Promise<T> {
  const registry = await startRegistry(auth);
  try {
    return await withTempDir((dir) => fn(registry, dir));
  } finally {
    await registry.stop();
  }
}
