/** Temporary directories that are always removed. */

/** Runs `fn` with a fresh temporary directory and removes the directory afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "dist-test-" });
  try {
    return await fn(dir);
  } finally {
    await removeTree(dir);
  }
}

/** Removes a tree even where read-only blobs or directories without write permission are in it. */
export async function removeTree(dir: string): Promise<void> {
  try {
    await Deno.remove(dir, { recursive: true });
  } catch {
    await new Deno.Command("chmod", { args: ["-R", "u+rwx", dir] }).output();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Returns a free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Throws a clear error when a program the tests need is not installed (never skips). */
export async function requireTool(name: string): Promise<void> {
  const which = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`] }).output();
  if (!which.success) {
    throw new Error(`${name} is not installed: run .ci/run (or apt-get install it) first`);
  }
}
