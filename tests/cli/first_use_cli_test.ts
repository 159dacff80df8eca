/**
 * What a new user runs next: removing an image by the digest `dist images` shows, clearing a big
 * store, and watching a fetch on a small terminal.
 */
import assert from "node:assert/strict";
import { distCommandLine, runDist } from "../_helpers/cli.ts";
import { buildLayer, compressLayer, pushImage } from "../_helpers/images.ts";
import { randomBytes } from "../_helpers/bytes.ts";
import { startFaultProxy } from "../_helpers/fault_proxy.ts";
import { withRegistry } from "../_helpers/registry.ts";
import { requireTool } from "../_helpers/temp.ts";

Deno.test("dist images rm takes the short digest dist images prints and removes every name it has", async () => {
  await withRegistry(async (registry, dir) => {
    const root = `${dir}/store`;
    const image = await pushImage(registry.url, "byid/app", {
      layers: [await buildLayer({ "etc/a": "a\n" }, "gzip")],
      tag: "v1",
    });
    await pushImage(registry.url, "byid/other", {
      layers: [await buildLayer({ "etc/b": "b\n" }, "gzip")],
      tag: "v1",
    });
    const refs = [`byid/app:v1`, `byid/app:v1-again`, `byid/other:v1`];
    // the same manifest under two tags
    const tagged = await runDist([
      "copy",
      `${registry.host}/byid/app:v1`,
      `${registry.host}/byid/app:v1-again`,
    ]);
    assert.equal(tagged.code, 0, tagged.stderr);
    const fetched = await runDist([
      "fetch",
      "--root",
      root,
      "-q",
      ...refs.map((r) => `${registry.host}/${r}`),
    ]);
    assert.equal(fetched.code, 0, fetched.stderr);
    const listed = await runDist(["images", "--root", root]);
    const row = listed.stdout.split("\n").find((l) =>
      l.startsWith(`${registry.host}/byid/app:v1 `)
    );
    const short = /sha256:[0-9a-f]{12}/.exec(row ?? "")?.[0];
    assert.ok(short && image.manifest.digest.startsWith(short), listed.stdout);

    const removed = await runDist(["images", "rm", "--root", root, short]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(
      removed.stdout,
      `removed ${registry.host}/byid/app:v1\nremoved ${registry.host}/byid/app:v1-again\n`,
    );
    const left = await runDist(["images", "--root", root, "-q"]);
    assert.equal(left.stdout, `${registry.host}/byid/other:v1\n`);

    const missing = await runDist(["images", "rm", "--root", root, short, "sha256:zz"]);
    assert.equal(missing.code, 3, "the first failure, not found, sets the code");
    assert.equal(
      missing.stderr,
      `dist: no image record has digest ${short}\n` +
        `dist: invalid digest "sha256:zz": want sha256:<64 hex> or sha512:<128 hex>\n`,
    );
  });
});

Deno.test("dist delete says in one short line what it kept, however many blobs images use", async () => {
  await withRegistry(async (registry, dir) => {
    const root = `${dir}/store`;
    const layers = [];
    for (let i = 0; i < 12; i++) layers.push(await buildLayer({ [`etc/${i}`]: `${i}\n` }, "gzip"));
    await pushImage(registry.url, "many/layers", { layers, tag: "v1" });
    await pushImage(registry.url, "one/layer", { layers: [layers[0]], tag: "v1" });
    const fetched = await runDist([
      "fetch",
      "--root",
      root,
      "-q",
      `${registry.host}/many/layers:v1`,
      `${registry.host}/one/layer:v1`,
    ]);
    assert.equal(fetched.code, 0, fetched.stderr);
    const cleared = await new Deno.Command("bash", {
      args: [
        "-c",
        `set -euo pipefail; export DIST_ROOT='${root}'; ${distCommandLine()} list -q | ` +
        `xargs ${distCommandLine()} delete`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(cleared.stderr);
    assert.equal(cleared.code, 0, stderr);
    // 12 layers, 2 configs, 2 manifests; the shared layer counts for the first image that uses it
    assert.equal(
      stderr,
      `dist: warning: kept 16 blobs in use (14 by image ${registry.host}/many/layers:v1, ` +
        `2 by image ${registry.host}/one/layer:v1); --force deletes blobs images use anyway\n`,
    );
  });
});

/** Runs `command` in a pseudo-terminal of `columns` × `rows` and returns what it wrote. */
async function inTerminal(command: string, columns: number, rows: number): Promise<string> {
  await requireTool("script");
  const result = await new Deno.Command("script", {
    args: ["-qec", `stty cols ${columns} rows ${rows}; ${command}`, "/dev/null"],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(result.stdout);
}

/** The frames a progress display drew: each one the lines between two cursor moves. */
function frames(output: string): string[][] {
  // deno-lint-ignore no-control-regex
  return output.replaceAll("\r", "").split(/\x1b\[\d+F\x1b\[J/).map((frame) =>
    frame.split("\n").filter((l) => l !== "")
  );
}

Deno.test("fetch progress fits a narrow terminal, and its last frame at Ctrl-C is what dist active shows", async () => {
  await withRegistry(async (registry, dir) => {
    const image = await pushImage(registry.url, "narrow/app", {
      layers: [compressLayer(randomBytes(8 << 20), "none")],
      tag: "v1",
    });
    const proxy = await startFaultProxy(registry.url, { bytesPerSecond: 4 << 20 });
    try {
      const dist = distCommandLine();
      const fetch = (root: string) =>
        `DIST_ROOT='${root}' timeout -s INT 1.5 ${dist} fetch ${proxy.host}/narrow/app:v1; ` +
        `DIST_ROOT='${root}' ${dist} active`;
      const layer = image.layers[0].digest.slice(7, 19);

      // 40 columns: every line fits, and the ones in flight still show how far they got
      const output = await inTerminal(fetch(`${dir}/a`), 40, 10);
      const drawn = frames(output);
      const activeAt = drawn.at(-1)!.findIndex((l) => l.startsWith("REF "));
      assert.ok(activeAt > 0, output);
      const progress = drawn.flat().filter((l) => !/^(dist: |REF |layer-)/.test(l));
      assert.ok(progress.length > 2, output);
      for (const l of progress) assert.ok(l.length <= 39, `${JSON.stringify(l)} is too wide`);
      const last = drawn.at(-1)!.slice(0, activeAt).find((l) => l.includes(layer));
      const shown = /(\d+\.\d MiB\/8\.0 MiB)$/.exec(last ?? "")?.[1];
      assert.ok(shown, `the last frame shows the layer's bytes: ${JSON.stringify(last)}`);
      const active = drawn.at(-1)!.find((l) => l.startsWith(`layer-${image.layers[0].digest}`));
      assert.match(active ?? "", new RegExp(` ${shown.replace(".", "\\.")} `), output);

      // 16 columns: still nothing wraps
      const tiny = await inTerminal(fetch(`${dir}/b`), 16, 10);
      const lines = frames(tiny).flat().filter((l) => !/^(dist: |REF |layer-)/.test(l));
      assert.ok(lines.length > 2, tiny);
      for (const l of lines) assert.ok(l.length <= 15, `${JSON.stringify(l)} is too wide`);
    } finally {
      await proxy.stop();
    }
  });
});
