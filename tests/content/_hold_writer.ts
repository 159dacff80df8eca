/**
 * A child process for the store tests: opens a writer on REF, writes the first HALF bytes of
 * FILE, prints `ready OFFSET` and then holds the lock. A line `commit` on stdin makes it write
 * the rest of FILE, commit it as DIGEST and exit; otherwise it waits to be killed.
 *
 * Usage: deno run -A _hold_writer.ts ROOT REF FILE HALF DIGEST
 */
import { Store } from "../../content/store/store.ts";
import { parseDigest } from "../../content/digest.ts";

const [root, ref, file, half, digestText] = Deno.args;
const digest = parseDigest(digestText);
const content = await Deno.readFile(file);
const store = await Store.open(root);
const writer = await store.writer(ref, { expected: digest, total: content.length });
// chunks of 64 KiB and more go to disk at once, so the bytes are there when we say ready
await writer.write(content.subarray(writer.offset, Number(half)));
await Deno.stdout.write(new TextEncoder().encode(`ready ${writer.offset}\n`));

for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  if (line.trim() === "commit") {
    await writer.write(content.subarray(writer.offset));
    await writer.commit(content.length, digest);
    Deno.exit(0);
  }
}
setInterval(() => {}, 60_000); // stdin closed: keep holding the lock until killed
