import assert from "node:assert/strict";
import {
  DEFAULT_PATH,
  runtimeSpec,
  writeRuntimeConfig,
} from "../../content/bundle/runtime_spec.ts";
import { unpackImage } from "../../content/bundle/unpack.ts";
import { writeTar } from "../../content/layers/tar_writer.ts";
import { NotFoundError } from "../../content/errors.ts";
import { requireTool, withTempDir } from "../_helpers/temp.ts";
import { assertRejects } from "../_helpers/rejects.ts";
import { layerOf, writeImageLayout } from "../_helpers/layout.ts";
import { Store } from "../../content/store/store.ts";

const PASSWD = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
app:x:1000:1001:App:/home/app:/bin/sh
nohome:x:1002:1002:::/bin/sh
`;
const GROUP = `root:x:0:
staff:x:50:app,other
app:x:1001:
audio:x:29:nohome,app
wheel:x:10:root
`;

async function rootfsWithUsers(dir: string): Promise<string> {
  const rootfs = `${dir}/rootfs`;
  await Deno.mkdir(`${rootfs}/etc`, { recursive: true });
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, PASSWD);
  await Deno.writeTextFile(`${rootfs}/etc/group`, GROUP);
  return rootfs;
}

Deno.test("runtimeSpec() derives args, env, cwd and annotations from the image config", async () => {
  await withTempDir(async (dir) => {
    const rootfs = await rootfsWithUsers(dir);
    const spec = await runtimeSpec({
      architecture: "amd64",
      os: "linux",
      config: {
        Entrypoint: ["/entry", "-x"],
        Cmd: ["serve"],
        Env: ["A=1"],
        WorkingDir: "/srv",
        Labels: { "org.example.label": "yes" },
        ExposedPorts: { "80/tcp": {}, "53/udp": {} },
        StopSignal: "SIGQUIT",
      },
    }, rootfs);
    assert.deepEqual(spec.process.args, ["/entry", "-x", "serve"]);
    assert.deepEqual(spec.process.env, [`PATH=${DEFAULT_PATH}`, "A=1", "HOME=/root"]);
    assert.equal(spec.process.cwd, "/srv");
    assert.equal(spec.process.terminal, false);
    assert.deepEqual(spec.process.user, { uid: 0, gid: 0, additionalGids: [10] });
    assert.deepEqual(spec.root, { path: "rootfs" });
    assert.equal(spec.annotations["org.example.label"], "yes");
    assert.equal(spec.annotations["org.opencontainers.image.exposedPorts"], "80/tcp,53/udp");
    assert.equal(spec.annotations["org.opencontainers.image.stopSignal"], "SIGQUIT");
    assert.deepEqual(
      spec.mounts.map((m) => m.destination),
      ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"],
    );
    assert.deepEqual(spec.linux.namespaces.map((n) => n.type), [
      "pid",
      "network",
      "ipc",
      "uts",
      "mount",
    ]);

    const bare = await runtimeSpec({ config: { Env: ["PATH=/only", "HOME=/h"] } }, rootfs);
    assert.deepEqual(bare.process.env, ["PATH=/only", "HOME=/h"]);
    assert.deepEqual(bare.process.args, []);
    assert.equal(bare.process.cwd, "/");
  });
});

Deno.test("runtimeSpec() resolves user and group names from the rootfs", async () => {
  await withTempDir(async (dir) => {
    const rootfs = await rootfsWithUsers(dir);
    const user = async (User: string) => {
      const spec = await runtimeSpec({ config: { User } }, rootfs);
      const home = spec.process.env.find((e) => e.startsWith("HOME="));
      return { ...spec.process.user, home };
    };
    assert.deepEqual(await user("app"), {
      uid: 1000,
      gid: 1001,
      additionalGids: [50, 29],
      home: "HOME=/home/app",
    });
    assert.deepEqual(await user("1000"), {
      uid: 1000,
      gid: 1001,
      additionalGids: [50, 29],
      home: "HOME=/home/app",
    });
    assert.deepEqual(await user("app:staff"), { uid: 1000, gid: 50, home: "HOME=/home/app" });
    assert.deepEqual(await user("app:7"), { uid: 1000, gid: 7, home: "HOME=/home/app" });
    assert.deepEqual(await user("4242"), { uid: 4242, gid: 0, home: undefined });
    assert.deepEqual(await user("4242:4243"), { uid: 4242, gid: 4243, home: undefined });
    assert.deepEqual(await user("nohome"), {
      uid: 1002,
      gid: 1002,
      additionalGids: [29],
      home: undefined,
    });
    await assertRejects(() => user("ghost"), NotFoundError, '"ghost"');
    await assertRejects(() => user("app:ghosts"), NotFoundError, '"ghosts"');
  });
});

Deno.test("runtimeSpec() reads /etc/passwd through symlinks only inside the rootfs", async () => {
  await withTempDir(async (dir) => {
    const rootfs = `${dir}/rootfs`;
    await Deno.mkdir(`${rootfs}/etc`, { recursive: true });
    await Deno.mkdir(`${rootfs}/lib`);
    await Deno.writeTextFile(`${dir}/passwd`, "evil:x:666:666::/evil:/bin/sh\n");
    await Deno.writeTextFile(`${rootfs}/lib/passwd`, "inside:x:5:6::/in:/bin/sh\n");
    // An escape through ".." stops at the rootfs: rootfs/passwd does not exist.
    await Deno.symlink("../../../../passwd", `${rootfs}/etc/passwd`);
    await assertRejects(
      () => runtimeSpec({ config: { User: "evil" } }, rootfs),
      NotFoundError,
      '"evil"',
    );
    await Deno.remove(`${rootfs}/etc/passwd`);
    await Deno.symlink("/lib/passwd", `${rootfs}/etc/passwd`); // absolute: from the rootfs
    const spec = await runtimeSpec({ config: { User: "inside" } }, rootfs);
    assert.deepEqual(spec.process.user, { uid: 5, gid: 6 });
  });
});

Deno.test("writeRuntimeConfig() writes config.json next to the rootfs", async () => {
  await withTempDir(async (dir) => {
    await rootfsWithUsers(dir);
    const path = await writeRuntimeConfig(dir, { config: { Cmd: ["/bin/sh"], User: "app" } });
    assert.equal(path, `${dir}/config.json`);
    const spec = JSON.parse(await Deno.readTextFile(path));
    assert.equal(spec.ociVersion, "1.0.2");
    assert.deepEqual(spec.process.user, { uid: 1000, gid: 1001, additionalGids: [50, 29] });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "config.json",
      "rootfs",
    ]);
  });
});

Deno.test("unpackImage() writes the same process settings as umoci unpack", async () => {
  await requireTool("umoci");
  await withTempDir(async (dir) => {
    const tar = new Uint8Array(
      await new Response(writeTar([
        { header: { name: "etc/passwd" }, body: new TextEncoder().encode(PASSWD) },
        { header: { name: "etc/group" }, body: new TextEncoder().encode(GROUP) },
      ])).arrayBuffer(),
    );
    const layout = `${dir}/layout`;
    const users = ["", "app", "1000", "app:staff", "4242", "nohome", "daemon:50"];
    for (const [i, User] of users.entries()) {
      const runtime = {
        User,
        Entrypoint: ["/bin/entry"],
        Cmd: ["arg"],
        Env: i % 2 ? ["PATH=/custom/bin", "X=1"] : ["X=1"],
        WorkingDir: i % 2 ? "/work" : "",
        Labels: { "org.example": String(i) },
      };
      const image = await writeImageLayout(layout, [layerOf(tar, "gzip")], {
        runtime,
        tag: `t${i}`,
        configExtra: { author: "dist tests", created: "2024-01-02T03:04:05Z" },
      });
      const umoci = await new Deno.Command("umoci", {
        args: ["unpack", "--image", `${layout}:t${i}`, `${dir}/umoci${i}`],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.ok(umoci.success, new TextDecoder().decode(umoci.stderr));
      await unpackImage(await Store.open(layout), image.manifest, `${dir}/dist${i}`);
      const theirs = JSON.parse(await Deno.readTextFile(`${dir}/umoci${i}/config.json`));
      const ours = JSON.parse(await Deno.readTextFile(`${dir}/dist${i}/config.json`));
      const label = `User ${JSON.stringify(User)}`;
      assert.deepEqual(ours.process.user, theirs.process.user, label);
      assert.deepEqual(ours.process.args, theirs.process.args, label);
      assert.equal(ours.process.cwd, theirs.process.cwd, label);
      // umoci also sets TERM, because its bundles default to a terminal.
      assert.deepEqual(
        ours.process.env,
        theirs.process.env.filter((e: string) => e !== "TERM=xterm"),
        label,
      );
      const nonEmpty = Object.fromEntries(
        Object.entries(theirs.annotations as Record<string, string>).filter(([, v]) => v !== ""),
      );
      assert.deepEqual(ours.annotations, nonEmpty, label);
      assert.deepEqual(ours.mounts, theirs.mounts, label);
      assert.deepEqual(ours.linux.namespaces, theirs.linux.namespaces, label);
    }
  });
});
