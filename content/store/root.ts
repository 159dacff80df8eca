/**
 * Where the store lives when no root is given.
 *
 * @module
 */
import { readEnv } from "../internal/env.ts";

/**
 * The default store root: `DIST_ROOT`, else `$XDG_DATA_HOME/dist`, else `~/.local/share/dist`.
 */
export function defaultRoot(): string {
  const explicit = readEnv("DIST_ROOT");
  if (explicit) return explicit;
  const dataHome = readEnv("XDG_DATA_HOME");
  if (dataHome) return `${dataHome}/dist`;
  const home = readEnv("HOME");
  if (!home) throw new Error("cannot locate the store: set --root, DIST_ROOT or HOME");
  return `${home}/.local/share/dist`;
}
