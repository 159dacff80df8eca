/**
 * `dist` never stops at a Deno permission prompt. On a terminal Deno asks for any permission a
 * call needs and the flags do not grant; dist asks Deno what is granted first and either does
 * without (a credentials file it may not read) or stops with one line naming the flag. Each case
 * runs under script(1), which gives it a terminal, with scoped flags that leave one thing out.
 */
import assert from "node:assert/strict";
import { buildLayer, pushImage } from "../_helpers/images.ts";
import { type Registry, startRegistry } from "../_helpers/registry.ts";
import { requireTool, withTempDir } from "../_helpers/temp.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const ENV =
  "DIST_ROOT,XDG_DATA_HOME,HOME,DOCKER_CONFIG,REGISTRY_AUTH_FILE,XDG_RUNTIME_DIR,XDG_CONFIG_HOME,SSL_CERT_FILE";
const quoted = (s: string) => `'${s.replaceAll("'", `'"'"'`)}'`;

/**
 * Runs dist with `flags` in a terminal (HOME is `home`); what it wrote (stdout and stderr, as a
 * terminal shows them) and its exit code. A prompt would wait for an answer that never comes:
 * `timeout` kills it (Deno ignores SIGTERM while it prompts).
 */
async function distInTerminal(home: string, flags: string, args: string) {
  await requireTool("script");
  const command = `timeout -s KILL 20 '${Deno.execPath()}' run --quiet ${flags} '${CLI}' ${args}`;
  const result = await new Deno.Command("script", {
    args: ["-qec", command, "/dev/null"],
    cwd: home,
    clearEnv: true,
    env: {
      HOME: home,
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      NO_COLOR: "1",
      // the test's own module cache (npm packages included): nothing is downloaded
      DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const output = (decoder.decode(result.stdout) + decoder.decode(result.stderr))
    .replaceAll("\r", "");
  return { code: result.code, output };
}

function assertNoPrompt(output: string): void {
  assert.doesNotMatch(output, /Deno requests|Allow\?/, output);
}

/** A registry holding `app:v1`; with `auth`, one that wants a password. */
async function withApp(
  auth: boolean,
  fn: (registry: Registry, home: string) => Promise<void>,
): Promise<void> {
  const registry = await startRegistry(
    auth ? { kind: "htpasswd", user: "u", password: "p" } : { kind: "none" },
  );
  try {
    await pushImage(registry.url, "app", {
      layers: [await buildLayer({ "etc/a": "a\n", "bin/x": "x\n" }, "gzip")],
      tag: "v1",
    }, auth ? { headers: { authorization: `Basic ${btoa("u:p")}` } } : {});
    await withTempDir((home) => fn(registry, home));
  } finally {
    await registry.stop();
  }
}

Deno.test("on a terminal, a registry that wants a password is answered from the files dist may read, never with a prompt", async () => {
  await withApp(true, async (registry, home) => {
    const store = `${home}/.local/share/dist`;
    // the README's fetch flags: ~/.config/containers/auth.json is not among the readable paths
    const flags = `--allow-net=${registry.host} --allow-env=${ENV} ` +
      `--allow-read=${store},${home}/.docker --allow-write=${store}`;
    const anonymous = await distInTerminal(home, flags, `fetch -q ${registry.host}/app:v1`);
    assertNoPrompt(anonymous.output);
    assert.equal(anonymous.code, 4, anonymous.output);
    assert.match(anonymous.output, /no credentials found/);

    // a credential helper the flags do not let dist run: one line naming the flag
    await Deno.mkdir(`${home}/.docker`);
    await Deno.writeTextFile(`${home}/.docker/config.json`, '{"credsStore":"nosuch"}');
    const helper = await distInTerminal(home, flags, `fetch -q ${registry.host}/app:v1`);
    assertNoPrompt(helper.output);
    assert.equal(helper.code, 1, helper.output);
    assert.equal(
      helper.output,
      `dist: permission denied: Requires run access to "docker-credential-nosuch", run again ` +
        `with the --allow-run flag\n`,
    );
  });
});

Deno.test("on a terminal, a host --allow-net leaves out, a store --allow-read leaves out and a scoped pull each stop in one line", async () => {
  await withApp(false, async (registry, home) => {
    const store = `${home}/.local/share/dist`;
    const files = `--allow-env=${ENV} --allow-read=${store},${home}/.docker --allow-write=${store}`;

    const net = await distInTerminal(
      home,
      `--allow-net=localhost:1 ${files}`,
      `fetch -q ${registry.host}/app:v1`,
    );
    assertNoPrompt(net.output);
    assert.equal(net.code, 1, net.output);
    assert.equal(
      net.output,
      `dist: permission denied: Requires net access to "${registry.host}", run again with the ` +
        `--allow-net flag\n`,
    );

    const listed = await distInTerminal(home, `--allow-env=${ENV} --allow-read=/etc`, "images");
    assertNoPrompt(listed.output);
    assert.equal(listed.code, 1, listed.output);
    assert.match(listed.output, /^dist: permission denied: Requires read access to ".*dist"/);

    // pull with read and write scoped: refused before anything is downloaded
    const pulled = await distInTerminal(
      home,
      `--allow-net=${registry.host} --allow-sys=uid,gid --allow-env=${ENV} ` +
        `--allow-read=${store},${home} --allow-write=${store},${home}`,
      `pull ${registry.host}/app:v1 ${home}/bundle`,
    );
    assertNoPrompt(pulled.output);
    assert.equal(pulled.code, 1, pulled.output);
    assert.match(pulled.output, /Requires read access to every path .*--allow-read flag\n$/);
    const blobs = await Array.fromAsync(Deno.readDir(`${store}/blobs/sha256`)).catch(() => []);
    assert.deepEqual(blobs, [], "nothing was fetched");

    // export: the archive is written beside FILE, which the flags must cover
    const fetched = await distInTerminal(
      home,
      `--allow-net=${registry.host} ${files}`,
      `fetch -q ${registry.host}/app:v1`,
    );
    assert.equal(fetched.code, 0, fetched.output);
    const exported = await distInTerminal(
      home,
      `--allow-env=${ENV} --allow-read=${store} --allow-write=${store},${home}/app.tar`,
      `export -o ${quoted(`${home}/app.tar`)} ${registry.host}/app:v1`,
    );
    assertNoPrompt(exported.output);
    assert.equal(exported.code, 1, exported.output);
    assert.match(exported.output, new RegExp(`Requires write access to "${home}"`));
  });
});
