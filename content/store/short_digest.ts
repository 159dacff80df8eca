/**
 * Short digests: the 12 hex digits `dist images` and `dist list` print stand for the whole
 * digest wherever one is taken, as long as one blob alone starts with them.
 *
 * @module
 */
import { type Digest, isDigest } from "../digest.ts";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import type { Manager } from "./capabilities.ts";

/** `sha256:` and some hex digits, short of a whole digest. */
const SHORT = /^(sha256|sha512):([0-9a-f]+)$/;

/** Whether `text` looks like a digest cut short (`sha256:4b1c0ad7e2f3`). */
export function isShortDigest(text: string): boolean {
  return SHORT.test(text) && !isDigest(text);
}

/**
 * The one blob whose digest starts with `text`; a whole digest is returned as it is. Throws
 * {@link NotFoundError} when no blob matches, {@link InvalidArgumentError} listing them when
 * several do.
 */
export async function expandDigest(store: Manager, text: string): Promise<Digest> {
  if (isDigest(text) || !isShortDigest(text)) return text as Digest;
  const matches: Digest[] = [];
  for await (const info of store.list()) {
    if (info.digest.startsWith(text)) matches.push(info.digest);
  }
  if (matches.length === 1) return matches[0];
  if (matches.length === 0) throw new NotFoundError(`no content starts with ${text}`);
  throw new InvalidArgumentError(
    `${text} is ambiguous: ${matches.sort().join(", ")}; give more of the digest`,
  );
}
