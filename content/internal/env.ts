/**
 * What the process may learn about its environment, asked without ever prompting: with scoped
 * permissions, Deno prompts on a terminal for anything outside them, and dist must never stop
 * at a prompt. Every permission is queried first; what is not granted reads as unknown.
 */

/** Whether `descriptor` is granted, asked without a prompt. */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Whether `descriptor` is granted, asked without a prompt (a query never prompts; a call that
 * needs a permission not granted does, on a terminal).
 */
export function permitted(descriptor: Deno.PermissionDescriptor): boolean {
  return granted(descriptor);
}

/**
 * Throws `Deno.errors.NotCapable`, as a denied call would without a terminal, unless `descriptor`
 * is granted: where Deno would stop at a prompt, dist stops with one line naming what it needs.
 * `what` is e.g. `net access to "host:443"`, `flag` e.g. `--allow-net`.
 */
export function requirePermission(
  descriptor: Deno.PermissionDescriptor,
  what: string,
  flag: string,
): void {
  if (!granted(descriptor)) {
    throw new Deno.errors.NotCapable(`Requires ${what}, run again with the ${flag} flag`);
  }
}

/** Reads an environment variable; undefined when unset, or when not permitted (never a prompt). */
export function readEnv(name: string): string | undefined {
  if (!granted({ name: "env", variable: name })) return undefined;
  return Deno.env.get(name) || undefined;
}

/** Whether an environment variable is set at all (to an empty string, say). */
export function envIsSet(name: string): boolean {
  return granted({ name: "env", variable: name }) && Deno.env.get(name) !== undefined;
}

/** The process's user and group ids, or undefined without `--allow-sys=uid,gid` (never a prompt). */
export function processIds(): { uid: number; gid: number } | undefined {
  if (!granted({ name: "sys", kind: "uid" }) || !granted({ name: "sys", kind: "gid" })) {
    return undefined;
  }
  const uid = Deno.uid();
  const gid = Deno.gid();
  return uid === null || gid === null ? undefined : { uid, gid };
}
