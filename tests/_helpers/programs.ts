/** Other programs the tests run: their output, and the digest skopeo reads at a reference. */
import assert from "node:assert/strict";
import { digestOf } from "../../content/digest.ts";

const decoder = new TextDecoder();

/** Runs `program` and returns its stdout; fails the test (with its stderr) when it fails. */
export async function run(program: string, args: string[]): Promise<string> {
  const result = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
    .output();
  assert.ok(result.success, `${program} ${args.join(" ")}: ${decoder.decode(result.stderr)}`);
  return decoder.decode(result.stdout);
}

/** The digest of the manifest `skopeo inspect --raw` reads at `ref` (plain HTTP allowed). */
export async function skopeoDigest(ref: string, creds?: string): Promise<string> {
  const args = ["inspect", "--raw", "--tls-verify=false", ...(creds ? ["--creds", creds] : [])];
  return digestOf(new TextEncoder().encode(await run("skopeo", [...args, `docker://${ref}`])));
}
