/**
 * Ctrl-C and SIGTERM are heard wherever an unpack is: inside one large file, and while the data
 * after a layer's end blocks is read. The process exits 130/143 promptly and leaves no bundle.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { spawnDist } from "../_helpers/cli.ts";
import { type LayoutLayer, writeImageLayout } from "../_helpers/layout.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";
import { withTempDir } from "../_helpers/temp.ts";

/**
 * A gzip layer of several members (each part compressed alone). Its diff_id is never reached:
 * every unpack of it is stopped, and hashing gigabytes here would only slow the test.
 */
function layerOfParts(parts: Uint8Array[]): LayoutLayer {
  const members: Uint8Array[] = [];
  const compressed = new Map<Uint8Array, Uint8Array>(); // a part given many times is compressed once
  for (const part of parts) {
    if (!compressed.has(part)) compressed.set(part, gzipSync(part, { level: 1 }));
    members.push(compressed.get(part)!);
  }
  const bytes = new Uint8Array(members.reduce((n, m) => n + m.length, 0));
  let at = 0;
  for (const m of members) (bytes.set(m, at), at += m.length);
  return {
    bytes,
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    diffId: `sha256:${"0".repeat(64)}`,
  };
}

async function tarBytes(entries: Parameters<typeof writeTar>[0]): Promise<Uint8Array> {
  return new Uint8Array(await new Response(writeTar(entries)).arrayBuffer());
}

/** The header block writeTar makes for an entry, without producing its body. */
async function headerOnly(header: { name: string; size: number }): Promise<Uint8Array> {
  const body = new ReadableStream<Uint8Array>({
    pull: (controller) => controller.enqueue(new Uint8Array(1 << 20)),
  });
  const reader = writeTar([{ header, body }]).getReader();
  let bytes = new Uint8Array(0);
  while (bytes.length < 512) {
    const { value } = await reader.read();
    bytes = new Uint8Array([...bytes, ...value!.subarray(0, 512 - bytes.length)]);
  }
  await reader.cancel();
  return bytes;
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test("Ctrl-C or SIGTERM inside one large file or after the end blocks stops dist unpack at once", async () => {
  await withTempDir(async (dir) => {
    const zeros = new Uint8Array(32 << 20);
    // one file of 8 GiB: a header, its body in pieces, the end blocks (only a run that does not
    // stop writes it all)
    const header = await headerOnly({ name: "big", size: 8 * 2 ** 30 });
    const oneFile = layerOfParts([header, ...Array(256).fill(zeros), new Uint8Array(1024)]);
    // a small archive, then 32 GiB of zeros after its end blocks (read, hashed, never written)
    const small = await tarBytes([{ header: { name: "etc/motd" }, body: new Uint8Array(10) }]);
    const tail = layerOfParts([small, ...Array(1024).fill(zeros)]);
    for (
      const [what, layer] of [["one large file", oneFile], ["after the end blocks", tail]] as const
    ) {
      const store = `${dir}/store-${what.replaceAll(" ", "-")}`;
      const image = await writeImageLayout(store, [layer]);
      for (const [i, delayMs] of [0, 50, 150, 300].entries()) {
        const signal = i % 2 === 0 ? "SIGINT" : "SIGTERM";
        const bundle = `${dir}/bundle-${i}`;
        const child = spawnDist(["unpack", "--json", "--root", store, image.manifest, bundle]);
        // wait for the layer to begin: the signal lands inside it
        const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let seen = "";
        while (!seen.includes('"unpacking"')) {
          const { value, done } = await lines.read();
          if (done) break;
          seen += value;
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        const sent = performance.now();
        child.kill(signal);
        const [{ code }, stderr] = await Promise.all([
          child.status,
          new Response(child.stderr).text(),
          lines.cancel(),
        ]);
        const seconds = (performance.now() - sent) / 1000;
        const label = `${what}, ${signal} after ${delayMs} ms: ${stderr}`;
        assert.equal(code, signal === "SIGINT" ? 130 : 143, label);
        assert.match(stderr, /unpack interrupted/, label);
        assert.doesNotMatch(stderr, /TypeError|resume/, label);
        // it stops within milliseconds (a second or so on a loaded machine); running to the end
        // of the layer takes 10 s or more
        assert.ok(seconds < 5, `${label}: exited ${seconds.toFixed(1)} s after the signal`);
        assert.equal(await exists(bundle), false, label);
      }
    }
  });
});
