/**
 * The registry client the registry flags describe.
 *
 * @module
 */
import { RegistryClient } from "../remotes/client.ts";
import type { Credentials } from "../remotes/credentials.ts";
import { boolFlag, type Context, positiveDuration, stringFlag, UsageError } from "./_args.ts";
import { out } from "./_output.ts";

/** Builds a registry client from the registry flags; retries are reported as warnings. */
export async function registryClient(ctx: Context): Promise<RegistryClient> {
  const user = stringFlag(ctx, "user");
  const passwordStdin = boolFlag(ctx, "password-stdin");
  let credentials: Credentials | undefined;
  if (user !== undefined) {
    const colon = user.indexOf(":");
    const username = colon < 0 ? user : user.slice(0, colon);
    let password = colon < 0 ? undefined : user.slice(colon + 1);
    if (passwordStdin) {
      if (password !== undefined) {
        throw new UsageError("--password-stdin conflicts with --user USER:PASSWORD");
      }
      password = (await new Response(Deno.stdin.readable).text()).replace(/\r?\n$/, "");
      // nothing piped in (`< /dev/null`, an unset CI secret): not a password to send
      if (password === "") throw new UsageError("empty password on stdin");
    }
    if (username === "" || password === undefined) {
      throw new UsageError("--user needs USER:PASSWORD, or USER with --password-stdin");
    }
    credentials = { username, password };
  } else if (passwordStdin) {
    throw new UsageError("--password-stdin needs --user USER");
  }
  const tls = stringFlag(ctx, "ca-file") !== undefined || boolFlag(ctx, "insecure");
  const timeout = stringFlag(ctx, "timeout");
  return new RegistryClient({
    credentials,
    // explicit TLS settings mean TLS, also for a loopback registry
    plainHttp: boolFlag(ctx, "plain-http") ? true : tls ? false : undefined,
    insecure: boolFlag(ctx, "insecure"),
    caFile: stringFlag(ctx, "ca-file"),
    timeoutMs: timeout === undefined ? undefined : positiveDuration("timeout", timeout),
    onRetry: (e) =>
      out.warn(`${e.action}: ${e.reason}; retrying in ${(e.delayMs / 1000).toFixed(1)}s`),
  });
}
