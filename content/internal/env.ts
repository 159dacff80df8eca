/** Environment variables, read without ever failing on a missing permission. */

/** Reads an environment variable; returns undefined when unset or when env access is denied. */
export function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env for this name: behave as if unset
  }
}
