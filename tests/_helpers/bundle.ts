/** The single-file bundle, built as the README's recipe and `deno task bundle` build it. */

const PROJECT = new URL("../../", import.meta.url).pathname;

/** Builds `dist.js` from this checkout's `cli.ts` into `dir`; returns its path. */
export async function buildBundle(dir: string): Promise<string> {
  const bundle = `${dir}/dist.js`;
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "--minify",
      "--keep-names",
      "-o",
      bundle,
      "cli.ts",
    ],
    cwd: PROJECT,
  }).output();
  if (!built.success) throw new Error(new TextDecoder().decode(built.stderr));
  return bundle;
}
