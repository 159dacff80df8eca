/**
 * A rootless bundle that really runs: an unprivileged user (nobody) pulls an image with `dist`,
 * which makes a rootless bundle by default, and runs it with `runc` as that same user. The test
 * starts as root to become nobody; where the kernel gives unprivileged users no user namespace,
 * rootless runc cannot work and the test says so in its name.
 */
import { pushBusybox } from "../_helpers/busybox.ts";
import { buildBundle } from "../_helpers/bundle.ts";
import assert from "node:assert/strict";

import { withRegistry } from "../_helpers/registry.ts";
import { removeTree, requireTool } from "../_helpers/temp.ts";

const decoder = new TextDecoder();
/** nobody and nogroup on Debian. */
const NOBODY = 65534;
const AS_NOBODY = [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups"];

/** Why an unprivileged user cannot run runc here, or undefined when it can. */
function rootlessUnavailable(): string | undefined {
  if (Deno.uid() !== 0) {
    return "needs root to become an unprivileged user (tests run as another user)";
  }
  try {
    const probe = new Deno.Command("setpriv", {
      args: [...AS_NOBODY, "unshare", "--user", "--map-root-user", "true"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    if (!probe.success) return "unprivileged user namespaces are not allowed here";
  } catch {
    return "setpriv (util-linux) is not installed";
  }
  return undefined;
}

/** Runs `program` as nobody with a bare environment; its output as text. */
async function asNobody(home: string, program: string, args: string[]) {
  const result = await new Deno.Command("setpriv", {
    args: [
      ...AS_NOBODY,
      "env",
      "-i",
      `HOME=${home}`,
      `DENO_DIR=${home}/deno-dir`,
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "NO_COLOR=1",
      program,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: result.code,
    stdout: decoder.decode(result.stdout),
    stderr: decoder.decode(result.stderr),
  };
}

const reason = rootlessUnavailable();
Deno.test({
  name: `an unprivileged user runs the rootless bundle dist pull wrote with runc${
    reason ? ` (skipped: ${reason})` : ""
  }`,
  ignore: reason !== undefined,
  fn: async () => {
    await requireTool("runc");
    await requireTool("busybox");
    await withRegistry(async (registry) => {
      await pushBusybox(registry.url, "rootless/busybox", "hello, rootless\n", [
        "/bin/sh",
        "-c",
        "cat /etc/motd; hostname; id -u; touch /tmp-ok && echo rw",
      ]);

      // a home nobody owns, with what it runs: Deno (the test's own may sit under root's 0700
      // home) and dist as one bundled file
      const home = await Deno.makeTempDir({ prefix: "dist-rootless-" });
      const id = `dist-rootless-${crypto.randomUUID().slice(0, 8)}`;
      try {
        await Deno.chmod(home, 0o755);
        const deno = `${home}/deno`;
        await Deno.link(Deno.execPath(), deno).catch(() => Deno.copyFile(Deno.execPath(), deno));
        await buildBundle(home);
        await Deno.chown(home, NOBODY, NOBODY);
        await Deno.chown(`${home}/dist.js`, NOBODY, NOBODY);

        // no --rootless: it is the default for a user who is not root
        const pulled = await asNobody(home, deno, [
          "run",
          "--quiet",
          "-A",
          `${home}/dist.js`,
          "pull",
          "--root",
          `${home}/store`,
          `${registry.host}/rootless/busybox:v1`,
          `${home}/bundle`,
        ]);
        assert.equal(pulled.code, 0, pulled.stderr);
        const config = JSON.parse(await Deno.readTextFile(`${home}/bundle/config.json`));
        assert.deepEqual(config.linux.uidMappings, [{ containerID: 0, hostID: NOBODY, size: 1 }]);

        const run = await asNobody(home, "runc", [
          "--root",
          `${home}/runc`,
          "run",
          "--bundle",
          `${home}/bundle`,
          id,
        ]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal(run.stdout, "hello, rootless\ndist\n0\nrw\n");
      } finally {
        await asNobody(home, "runc", ["--root", `${home}/runc`, "delete", "-f", id]);
        await removeTree(home);
      }
    });
  },
});
