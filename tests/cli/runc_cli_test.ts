/**
 * Bundles that really run: `dist pull` writes one, runc runs it. As root only (runc runs rootless
 * bundles only where user namespaces are allowed); the rootless config is checked against the
 * shape `runc spec --rootless` makes.
 */
import { pushBusybox } from "../_helpers/busybox.ts";
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";

import { withRegistry } from "../_helpers/registry.ts";
import { removeTree, requireTool } from "../_helpers/temp.ts";

const decoder = new TextDecoder();

/** Why runc cannot run a container here, or undefined when it can (root, runc installed). */
function runcUnavailable(): string | undefined {
  if (Deno.uid() !== 0) return "runc bundles need root here (tests run as another user)";
  return undefined;
}

const reason = runcUnavailable();
Deno.test({
  name: `runc runs the bundle dist pull wrote${reason ? ` (skipped: ${reason})` : ""}`,
  ignore: reason !== undefined,
  fn: async () => {
    await requireTool("runc");
    await withRegistry(async (registry, dir) => {
      await pushBusybox(registry.url, "run/busybox", "hello from the image\n", [
        "/bin/sh",
        "-c",
        "cat /etc/motd; hostname; id -u",
      ]);
      const bundle = `${dir}/bundle`;
      const pulled = await runDist([
        "pull",
        "--root",
        `${dir}/store`,
        "--hostname",
        "box",
        "--read-only",
        `${registry.host}/run/busybox:v1`,
        bundle,
      ]);
      assert.equal(pulled.code, 0, pulled.stderr);
      const id = `dist-test-${crypto.randomUUID().slice(0, 8)}`;
      const state = `${dir}/runc-state`;
      try {
        const run = await new Deno.Command("runc", {
          args: ["--root", state, "run", "--bundle", bundle, id],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(run.code, 0, decoder.decode(run.stderr));
        assert.equal(decoder.decode(run.stdout), "hello from the image\nbox\n0\n");
      } finally {
        await new Deno.Command("runc", {
          args: ["--root", state, "delete", "-f", id],
          stderr: "null",
        })
          .output();
        await removeTree(state);
      }
    });
  },
});

Deno.test("a rootless bundle's config has the shape runc spec --rootless makes", async () => {
  await requireTool("runc");
  await withRegistry(async (registry, dir) => {
    await pushBusybox(registry.url, "run/busybox", "hello from the image\n", [
      "/bin/sh",
      "-c",
      "cat /etc/motd; hostname; id -u",
    ]);
    const pulled = await runDist([
      "pull",
      "--root",
      `${dir}/store`,
      "--rootless",
      "--terminal",
      `${registry.host}/run/busybox:v1`,
      `${dir}/bundle`,
    ]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const ours = JSON.parse(await Deno.readTextFile(`${dir}/bundle/config.json`));
    await Deno.mkdir(`${dir}/reference`);
    const spec = await new Deno.Command("runc", {
      args: ["spec", "--rootless", "--bundle", `${dir}/reference`],
    }).output();
    assert.ok(spec.success);
    const theirs = JSON.parse(await Deno.readTextFile(`${dir}/reference/config.json`));
    const uid = Deno.uid()!;
    const gid = Deno.gid()!;
    assert.deepEqual(ours.linux.uidMappings, [{ containerID: 0, hostID: uid, size: 1 }]);
    assert.deepEqual(ours.linux.gidMappings, [{ containerID: 0, hostID: gid, size: 1 }]);
    assert.deepEqual(theirs.linux.uidMappings[0].containerID, 0);
    const types = (spec: { linux: { namespaces: { type: string }[] } }) =>
      spec.linux.namespaces.map((n) => n.type).sort();
    assert.deepEqual(types(ours), types(theirs));
    assert.equal(ours.linux.resources, undefined);
    assert.equal(theirs.linux.resources, undefined);
    const mount = (spec: { mounts: { destination: string }[] }, where: string) =>
      spec.mounts.find((m) => m.destination === where);
    for (const where of ["/sys", "/dev/pts"]) {
      assert.deepEqual(mount(ours, where), mount(theirs, where));
    }
    assert.deepEqual(ours.process.user, { uid: 0, gid: 0 });
    assert.equal(ours.process.terminal, true);
  });
});
