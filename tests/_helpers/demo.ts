/**
 * `deno task demo`: dist's main job end to end on this machine, with no outside network. Starts a
 * real registry on loopback, pushes a two-platform image built from a few files, then runs the
 * `dist` commands a user would (fetch, images, pull, export, prune) against a temporary store,
 * printing each command and its output. Everything it starts or writes is removed at the end.
 */
// deno-lint-ignore-file no-console
import { buildLayer, pushImage, pushIndex } from "./images.ts";
import { startRegistry } from "./registry.ts";
import { removeTree } from "./temp.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

async function dist(...args: string[]): Promise<void> {
  console.log(`\n$ dist ${args.join(" ")}`);
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", CLI, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) throw new Error(`dist ${args[0]} exited with ${code}`);
}

const registry = await startRegistry();
const work = await Deno.makeTempDir({ prefix: "dist-demo-" });
try {
  const root = `${work}/store`;
  const repository = "demo/hello";
  const files = {
    "etc/os-release": 'NAME="dist demo"\n',
    "usr/local/bin/hello": { content: "#!/bin/sh\necho hello from a dist bundle\n", mode: 0o755 },
  };
  const platforms = [
    { os: "linux", architecture: "amd64" },
    { os: "linux", architecture: "arm64", variant: "v8" },
  ];
  const manifests = [];
  for (const platform of platforms) {
    const base = await buildLayer(files, "gzip");
    const extra = await buildLayer(
      { [`etc/arch-${platform.architecture}`]: "built for it\n" },
      "zstd",
    );
    manifests.push(
      (await pushImage(registry.url, repository, {
        layers: [base, extra],
        platform,
        config: { Entrypoint: ["/usr/local/bin/hello"], Env: ["GREETING=hi"], WorkingDir: "/" },
      })).manifest,
    );
  }
  await pushIndex(registry.url, repository, "v1", manifests);
  const image = `${registry.host}/${repository}:v1`;
  console.log(`registry ${registry.url} holds ${image} (linux/amd64 and linux/arm64)`);

  await dist("fetch", "--root", root, "--all-platforms", image);
  await dist("images", "--root", root);
  await dist("list", "--root", root);
  await dist("pull", "--root", root, "-q", image, `${work}/bundle`);
  console.log(`\n$ cat ${work}/bundle/rootfs/usr/local/bin/hello`);
  console.log(await Deno.readTextFile(`${work}/bundle/rootfs/usr/local/bin/hello`));
  const config = JSON.parse(await Deno.readTextFile(`${work}/bundle/config.json`));
  console.log(
    `config.json: args ${JSON.stringify(config.process.args)}, env ${
      JSON.stringify(config.process.env)
    }`,
  );
  await dist("export", "--root", root, "-o", `${work}/image.tar`, image);
  console.log(
    `image.tar: ${(await Deno.stat(`${work}/image.tar`)).size} bytes (docker load reads it)`,
  );
  await dist("images", "--root", root, "rm", image);
  await dist("prune", "--root", root);
  console.log("\ndemo finished: the store is empty again");
} finally {
  await registry.stop();
  await removeTree(work);
}
