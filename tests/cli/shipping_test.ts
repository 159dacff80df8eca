/**
 * The three ways `dist` ships: `deno run` with the README's least-privilege flags, the
 * single-file bundle, and the compiled binary (when a Deno runtime for `deno compile` exists).
 */
import { buildBundle } from "../_helpers/bundle.ts";
import assert from "node:assert/strict";
import { pushImage } from "../_helpers/images.ts";
import { layerOf } from "../_helpers/layout.ts";
import { type TarWriteEntry, writeTar } from "../../content/layers/tar_writer.ts";
import { type Registry, startRegistry } from "../_helpers/registry.ts";
import { withTempDir } from "../_helpers/temp.ts";

const PROJECT = new URL("../../", import.meta.url).pathname;
const text = (s: string) => new TextEncoder().encode(s);
const DENO = Deno.execPath();

/** Starts a registry holding `app:latest`, a one-layer image with a runtime config. */
async function withAppImage(fn: (registry: Registry) => Promise<void>): Promise<void> {
  const registry = await startRegistry();
  try {
    // a real rootfs has symlinks, hardlinks, setuid files and (as root) device nodes
    const entries: TarWriteEntry[] = [
      { header: { name: "bin/", type: "directory" } },
      { header: { name: "bin/hello", mode: 0o755 }, body: text("#!/bin/sh\necho hi\n") },
      { header: { name: "bin/hi", type: "symlink", linkname: "hello" } },
      { header: { name: "bin/hello-again", type: "link", linkname: "bin/hello" } },
      { header: { name: "bin/su", mode: 0o4755 }, body: text("setuid\n") },
      { header: { name: "dev/", type: "directory" } },
      { header: { name: "dev/null", type: "char-device", devmajor: 1, devminor: 3, mode: 0o666 } },
    ];
    const tar = new Uint8Array(await new Response(writeTar(entries)).arrayBuffer());
    const layer = layerOf(tar, "gzip");
    await pushImage(registry.url, "app", {
      layers: [layer],
      tag: "latest",
      config: { Cmd: ["/bin/hello"], Env: ["GREETING=hi"] },
    });
    await fn(registry);
  } finally {
    await registry.stop();
  }
}

async function sh(script: string, options: { cwd: string; env: Record<string, string> }) {
  const result = await new Deno.Command("sh", {
    args: ["-c", script],
    cwd: options.cwd,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", NO_COLOR: "1", ...options.env },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    stdout: decoder.decode(result.stdout),
    stderr: decoder.decode(result.stderr),
  };
}

/**
 * The README's least-privilege block, with this test's registry and `cli` path substituted: the
 * variable assignments, then one entry per command (continuation lines joined).
 */
async function readmeCommands(
  registryHost: string,
  cliPath: string,
): Promise<{ preamble: string; fetch: string; pull: string }> {
  const readme = await Deno.readTextFile(`${PROJECT}README.md`);
  const match =
    /<!-- least-privilege:start -->\s*```sh\n([\s\S]*?)```\s*<!-- least-privilege:end -->/
      .exec(readme);
  assert.ok(match, "README.md has no least-privilege block");
  const lines = match[1].replaceAll("\\\n", " ").split("\n").filter((line) => line.trim());
  const preamble = lines.filter((line) => /^[A-Z_]+=/.test(line)).join("\n");
  assert.match(preamble, /^REGISTRY=localhost:5000$/m);
  const command = (verb: string) => {
    const line = lines.find((l) => l.startsWith("deno run ") && l.includes(` cli.ts ${verb} `));
    assert.ok(line, `README.md's least-privilege block has no ${verb} command`);
    return line.replace(/^deno run /, `'${DENO}' run --quiet `).replace(
      " cli.ts ",
      ` '${cliPath}' `,
    );
  };
  return {
    preamble: preamble.replace(/^REGISTRY=localhost:5000$/m, `REGISTRY=${registryHost}`),
    fetch: command("fetch"),
    pull: command("pull"),
  };
}

Deno.test("fetch and pull work under exactly the README's least-privilege flags", async () => {
  await withAppImage((registry) =>
    withTempDir(async (home) => {
      const readme = await readmeCommands(registry.host, `${PROJECT}cli.ts`);
      const script = [readme.preamble, readme.fetch, readme.pull].join("\n");
      const result = await sh(`set -e\n${script}`, { cwd: home, env: { HOME: home } });
      assert.equal(result.code, 0, result.stderr);
      const config = JSON.parse(await Deno.readTextFile(`${home}/app/config.json`));
      assert.deepEqual(config.process.args, ["/bin/hello"]);
      assert.ok(config.process.env.includes("GREETING=hi"));
      const rootfs = `${home}/app/rootfs`;
      assert.equal(await Deno.readTextFile(`${rootfs}/bin/hello`), "#!/bin/sh\necho hi\n");
      assert.equal(await Deno.readLink(`${rootfs}/bin/hi`), "hello");
      assert.equal(
        (await Deno.lstat(`${rootfs}/bin/hello-again`)).ino,
        (await Deno.lstat(`${rootfs}/bin/hello`)).ino,
      );
      assert.equal((await Deno.stat(`${rootfs}/bin/su`)).mode! & 0o7777, 0o4755);
      if (Deno.uid() === 0) {
        const device = await Deno.lstat(`${rootfs}/dev/null`);
        assert.ok(device.isCharDevice, "the device node was made");
      }
      // the store went where the README says, and nothing else was needed
      const images = await Deno.readTextFile(`${home}/.local/share/dist/index.json`);
      assert.match(images, new RegExp(`${registry.host}/app:latest`));
    })
  );
});

Deno.test("under a terminal, the README's pull asks for no permission", async () => {
  await withAppImage((registry) =>
    withTempDir(async (home) => {
      const readme = await readmeCommands(registry.host, `${PROJECT}cli.ts`);
      // script(1) gives the commands a terminal, where Deno would prompt for anything not granted
      const quoted = (s: string) => `'${s.replaceAll("'", `'"'"'`)}'`;
      const inTerminal = (cmd: string) =>
        `script -qec ${quoted(`${readme.preamble}\n${cmd}`)} /dev/null`;
      const result = await sh(`set -e\n${inTerminal(readme.fetch)}\n${inTerminal(readme.pull)}`, {
        cwd: home,
        env: { HOME: home },
      });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.doesNotMatch(result.stdout + result.stderr, /requests|Allow\?|⚠️/);
      assert.ok((await Deno.stat(`${home}/app/config.json`)).isFile);
    })
  );
});

Deno.test("a least-privilege fetch without network permission fails in one line", async () => {
  await withAppImage((registry) =>
    withTempDir(async (home) => {
      const readme = await readmeCommands(registry.host, `${PROJECT}cli.ts`);
      const fetch = readme.fetch.replace("--allow-net=$REGISTRY ", "");
      assert.notEqual(fetch, readme.fetch);
      const result = await sh(`${readme.preamble}\n${fetch}`, { cwd: home, env: { HOME: home } });
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /^dist: .*net/);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    })
  );
});

Deno.test("the bundle runs a real fetch with an empty DENO_DIR", async () => {
  await withAppImage((registry) =>
    withTempDir(async (dir) => {
      const readme = await readmeCommands(registry.host, await buildBundle(dir));
      const script = `${readme.preamble}\n${readme.fetch}`;
      await Deno.mkdir(`${dir}/deno-dir`);
      const result = await sh(`set -e\n${script}`, {
        cwd: dir,
        env: { HOME: dir, DENO_DIR: `${dir}/deno-dir`, DENO_NO_UPDATE_CHECK: "1" },
      });
      assert.equal(result.code, 0, result.stderr);
      const list = await sh(
        `'${DENO}' run --quiet -A '${dir}/dist.js' images -q --root '${dir}/.local/share/dist'`,
        {
          cwd: dir,
          env: { HOME: dir, DENO_DIR: `${dir}/deno-dir` },
        },
      );
      assert.equal(list.stdout.trim(), `${registry.host}/app:latest`);
    })
  );
});

/** A `denort` for `deno compile`: $DENORT_BIN, else one Deno already downloaded into its cache. */
async function findRuntime(): Promise<string | undefined> {
  const explicit = Deno.env.get("DENORT_BIN");
  if (explicit) return explicit;
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
  const version = Deno.version.deno;
  for (
    const name of ["denort-x86_64-unknown-linux-gnu.zip", "denort-aarch64-unknown-linux-gnu.zip"]
  ) {
    const cached = `${denoDir}/dl/release/v${version}/${name}`;
    try {
      await Deno.stat(cached);
      return cached;
    } catch { /* not cached */ }
  }
  return undefined;
}

const runtime = await findRuntime();
if (!runtime) {
  // deno-lint-ignore no-console
  console.log(
    "compiled dist binary: skipped: no Deno runtime for `deno compile` (set DENORT_BIN to a " +
      `denort ${Deno.version.deno}; Deno's release host cannot be reached from this machine)`,
  );
}

Deno.test({
  name: "compiled dist binary fetches an image with its baked-in permissions",
  ignore: runtime === undefined,
  fn: async () => {
    await withAppImage((registry) =>
      withTempDir(async (dir) => {
        // the task writes ./dist in the checkout (ignored by git); move it out of the way
        const compile = await new Deno.Command(DENO, {
          args: ["task", "--quiet", "compile"],
          cwd: PROJECT,
          env: runtime?.endsWith(".zip") ? {} : { DENORT_BIN: runtime! },
        }).output();
        assert.ok(compile.success, new TextDecoder().decode(compile.stderr));
        await Deno.rename(`${PROJECT}dist`, `${dir}/dist`);
        const result = await sh(
          `'${dir}/dist' fetch -q --root '${dir}/store' ${registry.host}/app:latest`,
          { cwd: dir, env: { HOME: dir } },
        );
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /sha256:[0-9a-f]{64}/);
      })
    );
  },
});

Deno.test("the README's put-dist-on-PATH recipe works as written in an empty home", async () => {
  const readme = await Deno.readTextFile(`${PROJECT}README.md`);
  const match = /<!-- path-recipe:start -->\s*```sh\n([\s\S]*?)```\s*<!-- path-recipe:end -->/.exec(
    readme,
  );
  assert.ok(match, "README.md has no path-recipe block");
  await withAppImage((registry) =>
    withTempDir(async (home) => {
      // a PATH without deno: only what a fresh machine has (node, npx, coreutils)
      const node = new TextDecoder().decode(
        (await new Deno.Command("sh", { args: ["-c", "command -v npx"], stdout: "piped" }).output())
          .stdout,
      ).trim();
      assert.ok(node, "npx is on the PATH");
      const path = `${
        node.slice(0, node.lastIndexOf("/"))
      }:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin`;
      const script =
        `set -e\ncd '${PROJECT}'\n${match[1]}\ndist fetch -q ${registry.host}/app:latest\n` +
        `rm -f '${PROJECT}dist.js'`;
      const result = await new Deno.Command("sh", {
        args: ["-c", script],
        clearEnv: true,
        // the caches of the real home (npm's, Deno's): the recipe downloads nothing twice
        env: {
          HOME: home,
          PATH: path,
          NO_COLOR: "1",
          npm_config_cache: `${Deno.env.get("HOME")}/.npm`,
          DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
      assert.equal(result.code, 0, out);
      assert.match(out, /Usage: dist COMMAND/);
      assert.ok(await Deno.stat(`${home}/.local/share/dist/index.json`));
    })
  );
});
