/** Unpacking what an image may carry: bombs, trusted xattrs, setuid files; and Ctrl-C midway. */
import assert from "node:assert/strict";
import { runDist, spawnDist } from "../_helpers/cli.ts";
import { layerOf, writeImageLayout } from "../_helpers/layout.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";
import { seededBytes } from "../_helpers/bytes.ts";
import { withTempDir } from "../_helpers/temp.ts";

async function tarOf(entries: Parameters<typeof writeTar>[0]): Promise<Uint8Array> {
  return new Uint8Array(await new Response(writeTar(entries)).arrayBuffer());
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test("dist unpack makes the bundle 0700, drops trusted.* xattrs with a warning, stops a gzip bomb", async () => {
  await withTempDir(async (dir) => {
    const store = `${dir}/store`;
    const layer = layerOf(
      await tarOf([
        { header: { name: "bin/sh", mode: 0o4755 }, body: new TextEncoder().encode("#!\n") },
        {
          header: { name: "etc/tagged", xattrs: { "trusted.evil": "x", "user.kept": "y" } },
          body: new TextEncoder().encode("t\n"),
        },
      ]),
      "gzip",
    );
    const image = await writeImageLayout(store, [layer]);
    const unpacked = await runDist(["unpack", "--root", store, image.manifest, `${dir}/bundle`]);
    assert.equal(unpacked.code, 0, unpacked.stderr);
    assert.equal((await Deno.stat(`${dir}/bundle`)).mode! & 0o777, 0o700);
    assert.match(unpacked.stderr, /dropped extended attribute trusted\.evil/);
    assert.doesNotMatch(unpacked.stderr, /user\.kept/);

    // 64 MiB of zeros gzip to a few KiB; the limit stops it, and nothing stays
    const bomb = layerOf(
      await tarOf([{ header: { name: "zeros" }, body: new Uint8Array(64 << 20) }]),
      "gzip",
    );
    assert.ok(bomb.bytes.length < 1 << 20);
    const bombImage = await writeImageLayout(`${dir}/bombs`, [bomb]);
    const stopped = await runDist([
      "unpack",
      "--root",
      `${dir}/bombs`,
      "--max-unpacked-size",
      "8M",
      bombImage.manifest,
      `${dir}/bombed`,
    ]);
    assert.equal(stopped.code, 1, stopped.stderr);
    assert.match(
      stopped.stderr,
      /unpacks to more than 8388608 bytes \(the --max-unpacked-size limit\)/,
    );
    assert.equal(await exists(`${dir}/bombed`), false);
    const bad = await runDist([
      "unpack",
      "--root",
      store,
      "--max-unpacked-size",
      "lots",
      image.manifest,
      `${dir}/x`,
    ]);
    assert.equal(bad.code, 2, bad.stderr);
  });
});

Deno.test("Ctrl-C or SIGTERM at any point of an unpack exits 130/143 and leaves no partial rootfs", async () => {
  await withTempDir(async (dir) => {
    const store = `${dir}/store`;
    // ~48 MiB in 3,000 files: long enough to be stopped at several points
    const files = Array.from({ length: 3000 }, (_, i) => ({
      header: { name: `data/${i % 30}/f${i}` },
      body: seededBytes(16 << 10, i),
    }));
    for (const compression of ["gzip", "zstd"] as const) {
      const image = await writeImageLayout(`${store}-${compression}`, [
        layerOf(await tarOf(files), compression),
      ]);
      for (const [i, delayMs] of [150, 300, 500, 800].entries()) {
        const signal = i % 2 === 0 ? "SIGINT" : "SIGTERM";
        const bundle = `${dir}/bundle-${compression}-${i}`;
        const child = spawnDist([
          "unpack",
          "--root",
          `${store}-${compression}`,
          image.manifest,
          bundle,
        ]);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        try {
          child.kill(signal);
        } catch { /* it finished already */ }
        const { code, stderr } = await child.output();
        const text = new TextDecoder().decode(stderr);
        if (code === 0) continue; // done before the signal came: nothing to check
        assert.equal(
          code,
          signal === "SIGINT" ? 130 : 143,
          `${compression} after ${delayMs} ms: ${text}`,
        );
        assert.doesNotMatch(text, /TypeError|resume/);
        // a signal before dist listens for it ends the process at once: nothing was begun
        if (text !== "") assert.match(text, /unpack interrupted/);
        assert.equal(await exists(`${bundle}/.rootfs.partial`), false);
        assert.equal(await exists(`${bundle}/rootfs`), false);
      }
    }
  });
});
