/**
 * `dist` as a CI image-prefetch step: the GitHub Actions workflow of the README, run command for
 * command against a real registry (only `docker load` is replaced by `skopeo inspect`, as no
 * Docker daemon runs here), a warm cache that sends no blob request, and the exit codes a CI
 * script branches on.
 */
import { buildBundle } from "../_helpers/bundle.ts";
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { runDist } from "../_helpers/cli.ts";
import { buildLayer, pushImage } from "../_helpers/images.ts";
import { type Registry, startRegistry } from "../_helpers/registry.ts";
import { requireTool, withTempDir } from "../_helpers/temp.ts";

/** The workflow's `DIST_ENV`: the environment variables dist reads. */
const DIST_ENV =
  "DIST_ROOT,XDG_DATA_HOME,HOME,DOCKER_CONFIG,REGISTRY_AUTH_FILE,XDG_RUNTIME_DIR,XDG_CONFIG_HOME,SSL_CERT_FILE";
const README = new URL("../../README.md", import.meta.url).pathname;

/** The workflow's "Install dist" step. */
const INSTALL = [
  'mkdir -p "$HOME/.local/bin"',
  'curl -fsSL -o "$HOME/.local/bin/dist.js" "$DIST_JS"',
  `printf '#!/bin/sh\\nexec deno run --quiet --allow-net --allow-env=%s --allow-read=%s --allow-write=%s "%s" "$@"\\n' "$DIST_ENV" "$DIST_ROOT,$HOME/.docker,$PWD" "$DIST_ROOT,$PWD" "$HOME/.local/bin/dist.js" > "$HOME/.local/bin/dist"`,
  'chmod +x "$HOME/.local/bin/dist"',
  'echo "$HOME/.local/bin" >> "$GITHUB_PATH"',
];
/** The workflow's "Resolve the images" step: the cache key. */
const RESOLVE = [
  'key=$(for image in $IMAGES; do dist resolve --json "$image" | jq -r .digest; done | sha256sum | cut -c1-16)',
  'echo "key=$key" >> "$GITHUB_OUTPUT"',
];
/** The workflow's "Prefetch the images" step. */
const FETCH = ['dist fetch --root "$DIST_ROOT" $IMAGES'];
/** The workflow's "Load the images into Docker" step, up to `docker load`. */
const EXPORT = ['dist export --root "$DIST_ROOT" -o images.tar $IMAGES'];

interface Workspace {
  dir: string;
  env: Record<string, string>;
}

/** Runs workflow lines with bash in the job's working directory, failing on the first error. */
async function step(ws: Workspace, lines: string[], env: Record<string, string> = {}) {
  const result = await new Deno.Command("bash", {
    args: ["-c", ["set -euo pipefail", ...lines].join("\n")],
    cwd: `${ws.dir}/work`,
    env: { ...ws.env, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  assert.ok(result.success, `${lines.join("\n")}\nfailed: ${decoder.decode(result.stderr)}`);
}

/** A job's environment: HOME, GITHUB_OUTPUT/GITHUB_PATH files, deno and the installed dist on PATH. */
async function workspace(dir: string, images: string[]): Promise<Workspace> {
  await Deno.mkdir(`${dir}/work`);
  await Deno.mkdir(`${dir}/home`);
  // the release's dist.js, which the workflow downloads with curl (here from a file:// URL)
  const bundle = await buildBundle(dir);
  return {
    dir,
    env: {
      HOME: `${dir}/home`,
      PATH: `${dir}/home/.local/bin:${dirname(Deno.execPath())}:${Deno.env.get("PATH")}`,
      GITHUB_OUTPUT: `${dir}/github-output`,
      GITHUB_PATH: `${dir}/github-path`,
      IMAGES: images.join(" "),
      DIST_ROOT: `${dir}/cache`,
      DIST_JS: `file://${bundle}`,
      DIST_ENV: DIST_ENV,
      NO_COLOR: "1",
    },
  };
}

/** The registry's requests from now until `done` (marked by a request of our own). */
async function requestsDuring(registry: Registry, body: () => Promise<void>): Promise<string[]> {
  const start = registry.log().length;
  await body();
  // access log lines arrive asynchronously: a marker request made afterwards shows they are in
  const marker = crypto.randomUUID();
  await (await fetch(`${registry.url}/v2/?marker=${marker}`)).body?.cancel();
  const deadline = Date.now() + 5000;
  while (!registry.log().includes(marker)) {
    if (Date.now() > deadline) throw new Error("the registry did not log the marker request");
    await new Promise((r) => setTimeout(r, 20));
  }
  const requests = [
    ...registry.log().slice(start).matchAll(/"([A-Z]+) (\/v2\/\S*) HTTP\/[\d.]+" (\d+)/g),
  ]
    .map((m) => `${m[1]} ${m[2]} ${m[3]}`);
  return requests.filter((r) => !r.includes(marker));
}

async function key(ws: Workspace): Promise<string> {
  const lines = (await Deno.readTextFile(ws.env.GITHUB_OUTPUT)).trim().split("\n");
  const last = lines.at(-1)!;
  assert.match(last, /^key=[0-9a-f]{16}$/);
  return last.slice(4);
}

Deno.test("the CI workflow's steps prefetch into a cache path, and a warm cache fetches no blob", async () => {
  await requireTool("jq");
  await requireTool("skopeo");
  const registry = await startRegistry();
  try {
    await withTempDir(async (dir) => {
      const base = await buildLayer({ "etc/os-release": "ID=ci\n" }, "gzip");
      const a = await pushImage(registry.url, "ci/a", {
        layers: [base, await buildLayer({ "a": "a\n" }, "none")],
        tag: "v1",
      });
      const b = await pushImage(registry.url, "ci/b", {
        layers: [base, await buildLayer({ "b": "b\n" }, "zstd")],
        tag: "v1",
      });
      const refs = [`${registry.host}/ci/a:v1`, `${registry.host}/ci/b:v1`];
      const ws = await workspace(dir, refs);

      // cold: install, resolve, fetch into the (empty) cache directory, export
      const cold = await requestsDuring(registry, async () => {
        await step(ws, INSTALL);
        assert.equal(await Deno.readTextFile(ws.env.GITHUB_PATH), `${ws.env.HOME}/.local/bin\n`);
        await step(ws, [...RESOLVE, ...FETCH, ...EXPORT]);
      });
      assert.ok(cold.some((r) => r.includes("/blobs/")), "the cold fetch downloads blobs");
      const coldKey = await key(ws);
      const archive = await Deno.readFile(`${dir}/work/images.tar`);
      for (const [i, ref] of refs.entries()) {
        const output = await new Deno.Command("skopeo", {
          args: ["inspect", "--config", `docker-archive:${dir}/work/images.tar:${ref}`],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(output.success, new TextDecoder().decode(output.stderr));
        const config = JSON.parse(new TextDecoder().decode(output.stdout));
        const layers = [a, b][i].layers.length;
        assert.equal(config.rootfs.diff_ids.length, layers);
      }

      // warm: a new job installs dist and the cache restores the store (here to another path);
      // the same steps send only resolves
      await new Deno.Command("cp", { args: ["-a", `${dir}/cache`, `${dir}/restored`] }).output();
      await Deno.remove(`${dir}/work/images.tar`);
      const restored = { DIST_ROOT: `${dir}/restored` };
      await step(ws, INSTALL, restored);
      const warm = await requestsDuring(registry, async () => {
        await step(ws, [...RESOLVE, ...FETCH, ...EXPORT], restored);
      });
      assert.deepEqual(warm.sort(), [
        "HEAD /v2/ci/a/manifests/v1 200", // dist resolve
        "HEAD /v2/ci/a/manifests/v1 200", // dist fetch
        "HEAD /v2/ci/b/manifests/v1 200",
        "HEAD /v2/ci/b/manifests/v1 200",
      ]);
      assert.equal(await key(ws), coldKey);
      assert.deepEqual(await Deno.readFile(`${dir}/work/images.tar`), archive);

      // a tag that moves changes the key
      await pushImage(registry.url, "ci/b", { layers: [base], tag: "v1" });
      await step(ws, RESOLVE);
      assert.notEqual(await key(ws), coldKey);
    });
  } finally {
    await registry.stop();
  }
});

Deno.test("dist fetch and resolve exit 3 for what does not exist, 4 for refused credentials, 1 otherwise", async () => {
  const registry = await startRegistry({ kind: "htpasswd", user: "ci", password: "s3cret" });
  try {
    await withTempDir(async (dir) => {
      const auth = { authorization: `Basic ${btoa("ci:s3cret")}` };
      await pushImage(registry.url, "ci/app", {
        layers: [await buildLayer({ "x": "x\n" }, "gzip")],
        tag: "v1",
      }, { headers: auth });
      // an empty HOME: no docker or podman credentials of the machine running the tests
      const env = { HOME: dir, XDG_CONFIG_HOME: `${dir}/.config`, XDG_RUNTIME_DIR: `${dir}/run` };
      const root = `${dir}/store`;
      const dist = (args: string[]) => runDist(args, { env });
      const cases: [string, string[], number, RegExp][] = [
        [
          "unknown repository",
          ["fetch", "--root", root, "-u", "ci:s3cret", `${registry.host}/ci/none:v1`],
          3,
          /not found/,
        ],
        [
          "unknown tag",
          ["fetch", "--root", root, "-u", "ci:s3cret", `${registry.host}/ci/app:v9`],
          3,
          /not found/,
        ],
        [
          "unknown tag (resolve)",
          ["resolve", "--json", "-u", "ci:s3cret", `${registry.host}/ci/app:v9`],
          3,
          /not found/,
        ],
        [
          "wrong password",
          ["fetch", "--root", root, "-u", "ci:wrong", `${registry.host}/ci/app:v1`],
          4,
          /refused access/,
        ],
        [
          "no credentials",
          ["fetch", "--root", root, `${registry.host}/ci/app:v1`],
          4,
          /refused access/,
        ],
      ];
      for (const [label, args, code, message] of cases) {
        const result = await dist(args);
        assert.equal(result.code, code, `${label}: ${result.stderr}`);
        assert.match(result.stderr, message, label);
        assert.ok(!result.stderr.includes("s3cret"), label);
      }
      // any other failure: the store path is taken by a file
      await Deno.writeTextFile(`${dir}/file`, "");
      const other = await dist([
        "fetch",
        "--root",
        `${dir}/file`,
        "-u",
        "ci:s3cret",
        `${registry.host}/ci/app:v1`,
      ]);
      assert.equal(other.code, 1, other.stderr);
      const ok = await dist([
        "fetch",
        "--root",
        root,
        "-q",
        "-u",
        "ci:s3cret",
        `${registry.host}/ci/app:v1`,
      ]);
      assert.equal(ok.code, 0, ok.stderr);
    });
  } finally {
    await registry.stop();
  }
});

Deno.test("the README's CI workflow runs exactly the commands these tests run", async () => {
  const readme = await Deno.readTextFile(README);
  for (const line of [...INSTALL, ...RESOLVE, ...FETCH, ...EXPORT, "docker load -i images.tar"]) {
    assert.ok(readme.includes(`          ${line}\n`), `README.md lacks the workflow line: ${line}`);
  }
  assert.ok(readme.includes(`  DIST_ENV: ${DIST_ENV}\n`), "README.md's workflow lacks DIST_ENV");
});
