/** Pulling through a real pull-through cache (a second docker-registry in proxy mode). */
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { pushMultiPlatform } from "../_helpers/images.ts";
import { startRegistry, withRegistry } from "../_helpers/registry.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";

Deno.test("dist fetch --mirror fills a pull-through cache, says which host served each blob, and falls back", async () => {
  await withRegistry(async (upstream, dir) => {
    await pushMultiPlatform(upstream.url, "team/app");
    // the proxy counts what reaches the upstream
    const counter = await startFaultProxy(upstream.url);
    const mirror = await startRegistry({ kind: "none" }, { proxyOf: counter.url });
    try {
      const ref = `${counter.host}/team/app:v1`;
      const fetchInto = async (root: string, extra: string[]) => {
        const result = await runDist(["fetch", "--root", root, "--json", ...extra, ref]);
        assert.equal(result.code, 0, result.stderr);
        return result.stdout.trim().split("\n").map((line) => JSON.parse(line));
      };
      const first = await fetchInto(`${dir}/a`, ["--mirror", mirror.host]);
      const blobs = first.filter((e) =>
        e.status === "done" && (e.kind === "layer" || e.kind === "config")
      );
      assert.ok(blobs.length >= 3);
      assert.ok(blobs.every((e) => e.host === mirror.host), JSON.stringify(blobs));
      const blobGets = () =>
        counter.requests.filter((r) => r.method === "GET" && r.path.includes("/blobs/")).length;
      const afterFirst = blobGets();
      assert.ok(afterFirst >= blobs.length); // the cache filled itself from the upstream
      await fetchInto(`${dir}/b`, ["--mirror", mirror.host]);
      // the second fetch into another store is served by the cache alone
      assert.equal(blobGets(), afterFirst);
      await mirror.stop();
      // the mirror is down: the upstream serves
      const fallback = await fetchInto(`${dir}/c`, ["--mirror", mirror.host]);
      const served = fallback.filter((e) => e.status === "done" && e.kind === "layer");
      assert.ok(served.length > 0 && served.every((e) => e.host === counter.host));
    } finally {
      await mirror.stop().catch(() => {});
      await counter.stop();
    }
  });
});

Deno.test("dist fetch --hosts-dir reads containerd's hosts.toml", async () => {
  await withRegistry(async (upstream, dir) => {
    await pushMultiPlatform(upstream.url, "team/app");
    const mirror = await startRegistry({ kind: "none" }, { proxyOf: upstream.url });
    try {
      const hostsDir = `${dir}/certs.d`;
      await Deno.mkdir(`${hostsDir}/${upstream.host.replace(":", "_")}`, { recursive: true });
      await Deno.writeTextFile(
        `${hostsDir}/${upstream.host.replace(":", "_")}/hosts.toml`,
        `server = "http://${upstream.host}"\n\n[host."http://${mirror.host}"]\n  capabilities = ["pull", "resolve"]  # a cache\n`,
      );
      const result = await runDist([
        "fetch",
        "--root",
        `${dir}/a`,
        "--json",
        "--hosts-dir",
        hostsDir,
        `${upstream.host}/team/app:v1`,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const events = result.stdout.trim().split("\n").map((line) => JSON.parse(line));
      assert.ok(events.some((e) => e.status === "done" && e.host === mirror.host));
      await Deno.writeTextFile(
        `${hostsDir}/${upstream.host.replace(":", "_")}/hosts.toml`,
        `[host."ftp://x"]\n`,
      );
      const bad = await runDist([
        "fetch",
        "--root",
        `${dir}/b`,
        "--hosts-dir",
        hostsDir,
        `${upstream.host}/team/app:v1`,
      ]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /hosts\.toml \[host\.ftp:\/\/x\]: "ftp:\/\/x" is not http or https/);
    } finally {
      await mirror.stop();
    }
  });
});
