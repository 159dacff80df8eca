/**
 * `dist serve`: the store as an OCI registry.
 *
 * @module
 */
import { Store } from "../content/store/store.ts";
import { boolFlag, type Context, expectArgs, stringFlag, UsageError } from "./_args.ts";
import { out } from "./_output.ts";

/** `dist serve` */
export async function serveCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 0, 0);
  const listen = stringFlag(ctx, "listen") ?? "127.0.0.1:5000";
  const where = /^unix:(.+)$/.exec(listen) ?? /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  if (!where) {
    throw new UsageError(
      `invalid --listen ${JSON.stringify(listen)}: want ADDR:PORT or unix:PATH`,
    );
  }
  const unix = listen.startsWith("unix:");
  const read = async (flag: string) => {
    const path = stringFlag(ctx, flag);
    return path === undefined ? undefined : await Deno.readTextFile(path);
  };
  const json = boolFlag(ctx, "json");
  const { serveStore } = await import("../remotes/serve/server.ts");
  const store = await Store.open(ctx.root());
  const stop = new AbortController();
  const server = await serveStore(store, {
    ...(unix ? { path: where[1] } : { hostname: where[1] || "0.0.0.0", port: Number(where[2]) }),
    allowPush: boolFlag(ctx, "allow-push"),
    allowDelete: boolFlag(ctx, "allow-delete"),
    htpasswd: stringFlag(ctx, "htpasswd"),
    cert: await read("cert"),
    key: await read("key"),
    insecure: boolFlag(ctx, "insecure"),
    signal: stop.signal,
    onListen: (address) => out.log(`dist: serving ${store.root} on ${address}`),
    onAccess: (e) =>
      out.log(
        json ? JSON.stringify(e) : `${e.method} ${e.path} ${e.status} ${e.bytes} ${e.ms}ms`,
      ),
  });
  const onStop = () => stop.abort();
  Deno.addSignalListener("SIGINT", onStop);
  Deno.addSignalListener("SIGTERM", onStop);
  try {
    await server.finished;
  } finally {
    Deno.removeSignalListener("SIGINT", onStop);
    Deno.removeSignalListener("SIGTERM", onStop);
  }
}
