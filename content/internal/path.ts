/**
 * Path helpers without `node:path`, whose import costs every short-lived command several
 * milliseconds. POSIX paths only, as the store is.
 *
 * @module
 */

/** `path` made absolute against the working directory, with `.`, `..` and `//` folded away. */
export function absolutePath(path: string): string {
  const full = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const parts: string[] = [];
  for (const part of full.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

/** The directory part of a path: everything before its last `/` (`.` when it has none). */
export function parentDirectory(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}
