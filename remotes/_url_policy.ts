/**
 * Which URLs a registry may send dist to. A registry's reply may name any URL (a redirect's
 * `Location`, a token realm, an upload session), and dist reads and sends credentials there:
 * - only `https:`, or `http:` where the registry itself is plain HTTP (a loopback registry, or
 *   `--plain-http`), never from HTTPS down to HTTP;
 * - no `file:`, `data:` or any other scheme, and no user name or password inside the URL;
 * - credentials and tokens travel in clear only to a loopback host.
 */
import { isLoopbackHost } from "../content/reference.ts";
import { RegistryError } from "./errors.ts";

/**
 * Throws {@link RegistryError} naming `url` unless dist may follow it for the registry it
 * reached at `registry` (`what` says what named it: "a redirect", "the token realm").
 */
export function checkFollowedUrl(url: URL, registry: URL, what: string): void {
  const refuse = (why: string) =>
    new RegistryError(`refusing ${what} to ${url.href}: ${why}`, { retryable: false });
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw refuse("only http and https URLs are followed");
  }
  if (url.username || url.password) throw refuse("it carries a user name or password");
  if (url.protocol === "http:" && registry.protocol !== "http:") {
    throw refuse(`plain HTTP from the HTTPS registry ${registry.host}`);
  }
}

/** Whether credentials may go to `url`: over HTTPS, or to a loopback host. */
export function mayCarryCredentials(url: URL): boolean {
  return url.protocol === "https:" || isLoopbackHost(url.host);
}
