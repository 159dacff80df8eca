/**
 * `deno task bench`: runs every benchmark under bench/ one after another (never side by side, so
 * they do not disturb each other's timings), then lists which met their targets.
 *
 *     deno run -A bench/run.ts [NAME...]     e.g. deno task bench ingest fetch
 */
// deno-lint-ignore-file no-console
const ALL = [
  "ingest",
  "store_list",
  "fetch_object",
  "fetch",
  "unpack",
  "export",
  "startup",
  "push",
  "serve",
];
const chosen = Deno.args.length > 0 ? Deno.args : ALL;
const unknown = chosen.filter((name) => !ALL.includes(name));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(", ")}: choose from ${ALL.join(", ")}`);
  Deno.exit(2);
}
const results: [string, boolean][] = [];
for (const name of chosen) {
  console.log(`\n=== bench/${name}.ts`);
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`./${name}.ts`, import.meta.url).pathname],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  results.push([name, success]);
}
console.log("\n=== summary");
for (const [name, success] of results) {
  console.log(`${name.padEnd(14)} ${success ? "met" : "MISSED"}`);
}
Deno.exit(results.every(([, success]) => success) ? 0 : 1);
