/**
 * Store wiring shared by the store and image commands.
 *
 * @module
 */
import { type Digest, parseDigest } from "../content/digest.ts";
import { requirePermission } from "../content/internal/mod.ts";
import { expandDigest, isShortDigest } from "../content/store/short_digest.ts";
import type { Store } from "../content/store/store.ts";
import { type Context, expectArgs } from "./_args.ts";

/**
 * How commands that only read or remove open the store: they create nothing, and a store that
 * does not exist yet reads as empty (`dist list --root /typo` must not leave a store at /typo).
 */
export const READ_ONLY = { create: false };

/** The digests the arguments name, short ones (`sha256:4b1c0ad7e2f3`) expanded in `store`. */
export async function digestArguments(ctx: Context, store: Store, min = 1): Promise<Digest[]> {
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
export function requireStoreWrite(store: Store): void {
  requirePermission(
    { name: "write", path: store.root },
    `write access to ${JSON.stringify(store.root)}`,
    "--allow-write",
  );
}
