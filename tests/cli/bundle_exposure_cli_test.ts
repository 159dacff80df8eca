/**
 * What a bundle exposes to other local users: a bundle directory that was there before and is
 * open to them is warned about (dist leaves the caller's directory as it is), one dist creates
 * is 0700; file capabilities an image carries are kept.
 */
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { layerOf, writeImageLayout } from "../_helpers/layout.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";
import { withTempDir } from "../_helpers/temp.ts";

/** `security.capability` v2 data granting cap_net_raw, effective. */
function netRawCapability(): Uint8Array {
  const data = new DataView(new ArrayBuffer(20));
  data.setUint32(0, 0x02000001, true); // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
  data.setUint32(4, 1 << 13, true); // permitted: CAP_NET_RAW
  return new Uint8Array(data.buffer);
}

Deno.test("dist unpack warns of a bundle directory open to other users and keeps file capabilities", async () => {
  await withTempDir(async (dir) => {
    const tar = new Uint8Array(
      await new Response(writeTar([
        { header: { name: "bin/su", mode: 0o4755 }, body: new TextEncoder().encode("#!\n") },
        {
          header: {
            name: "bin/ping",
            mode: 0o755,
            xattrs: { "security.capability": netRawCapability() },
          },
          body: new TextEncoder().encode("#!\n"),
        },
      ])).arrayBuffer(),
    );
    const store = `${dir}/store`;
    const image = await writeImageLayout(store, [layerOf(tar, "gzip")]);

    await Deno.mkdir(`${dir}/open`);
    await Deno.chmod(`${dir}/open`, 0o755);
    const open = await runDist(["unpack", "--root", store, image.manifest, `${dir}/open`]);
    assert.equal(open.code, 0, open.stderr);
    assert.match(open.stderr, /bundle directory .*\/open is open to other users \(mode 0755\)/);
    assert.equal((await Deno.stat(`${dir}/open`)).mode! & 0o777, 0o755); // the caller's to change

    await Deno.mkdir(`${dir}/closed`, { mode: 0o700 });
    await Deno.chmod(`${dir}/closed`, 0o700);
    const closed = await runDist(["unpack", "--root", store, image.manifest, `${dir}/closed`]);
    assert.equal(closed.code, 0, closed.stderr);
    const made = await runDist(["unpack", "--root", store, image.manifest, `${dir}/a/b/made`]);
    assert.equal(made.code, 0, made.stderr);
    for (const result of [closed, made]) assert.doesNotMatch(result.stderr, /open to other users/);
    for (const path of ["a", "a/b", "a/b/made"]) {
      assert.equal((await Deno.stat(`${dir}/${path}`)).mode! & 0o777, 0o700, path);
    }

    if (Deno.uid() === 0) {
      // getcap (libcap2-bin) reads the capability back, where it is installed
      const caps = await new Deno.Command("getcap", {
        args: [`${dir}/a/b/made/rootfs/bin/ping`],
      }).output().catch(() => undefined);
      if (caps) assert.match(new TextDecoder().decode(caps.stdout), /cap_net_raw[=+]ep/);
    }
  });
});
