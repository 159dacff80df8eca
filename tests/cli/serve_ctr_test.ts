/** containerd's ctr pulls from `dist serve`: a client of another family than skopeo and dist. */
import assert from "node:assert/strict";
import { runDist } from "../_helpers/cli.ts";
import { pushMultiPlatform } from "../_helpers/images.ts";
import { withRegistry } from "../_helpers/registry.ts";
import { startServe } from "../_helpers/serve.ts";
import { removeTree, requireTool } from "../_helpers/temp.ts";

Deno.test("ctr content fetch and ctr images pull --plain-http from dist serve keep the digests", async () => {
  await requireTool("containerd");
  await requireTool("ctr");
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const served = await startServe(`${dir}/served`, ["--allow-push"]);
    // a containerd of the test's own, on a socket in the test's directory
    const ctd = await Deno.makeTempDir({ prefix: "dist-containerd-" });
    const socket = `${ctd}/containerd.sock`;
    await Deno.writeTextFile(
      `${ctd}/config.toml`,
      `version = 2\nroot = "${ctd}/root"\nstate = "${ctd}/state"\n` +
        `disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${socket}"\n`,
    );
    const containerd = new Deno.Command("containerd", {
      args: ["--config", `${ctd}/config.toml`],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const ctr = (...args: string[]) =>
      new Deno.Command("ctr", {
        args: ["--address", socket, ...args],
        stdout: "piped",
        stderr: "piped",
      })
        .output();
    try {
      for (let i = 0; i < 100 && !(await ctr("version")).success; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const copied = await runDist([
        "copy",
        "--all-platforms",
        `${registry.host}/src/app:v1`,
        `${served.host}/team/app:v1`,
      ]);
      assert.equal(copied.code, 0, copied.stderr);
      const ref = `${served.host}/team/app:v1`;
      const fetched = await ctr("content", "fetch", "--plain-http", ref);
      assert.ok(fetched.success, new TextDecoder().decode(fetched.stderr));
      const pulled = await ctr("images", "pull", "--plain-http", ref);
      assert.ok(pulled.success, new TextDecoder().decode(pulled.stderr));
      const listed = new TextDecoder().decode((await ctr("images", "ls")).stdout);
      const resolved = await runDist(["resolve", "--json", ref]);
      assert.ok(listed.includes(JSON.parse(resolved.stdout).digest), listed);
    } finally {
      containerd.kill("SIGTERM");
      await containerd.status;
      await served.stop();
      await removeTree(ctd);
    }
  });
});

Deno.test("podman pull from dist serve keeps the digest", async () => {
  await requireTool("podman");
  await withRegistry(async (registry, dir) => {
    await pushMultiPlatform(registry.url, "src/app");
    const served = await startServe(`${dir}/served`, ["--allow-push"]);
    // podman's storage of the test's own, as root with the vfs driver (no kernel overlay needed)
    const storage = [
      "--root",
      `${dir}/podman/root`,
      "--runroot",
      `${dir}/podman/run`,
      "--storage-driver",
      "vfs",
    ];
    try {
      const copied = await runDist([
        "copy",
        "--all-platforms",
        `${registry.host}/src/app:v1`,
        `${served.host}/team/app:v1`,
      ]);
      assert.equal(copied.code, 0, copied.stderr);
      const pulled = await new Deno.Command("podman", {
        args: [...storage, "pull", "--tls-verify=false", `${served.host}/team/app:v1`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(pulled.success, new TextDecoder().decode(pulled.stderr));
      const images = await new Deno.Command("podman", {
        args: [...storage, "images", "--digests", "--format", "{{.Digest}}"],
        stdout: "piped",
      }).output();
      const resolved = JSON.parse(
        (await runDist(["resolve", "--json", `${served.host}/team/app:v1`])).stdout,
      );
      assert.equal(new TextDecoder().decode(images.stdout).trim(), resolved.digest);
    } finally {
      await served.stop();
      await removeTree(`${dir}/podman`);
    }
  });
});
