/** `dist serve` as a real process on a free loopback port, for tests. */
import { spawnDist } from "./cli.ts";
import { freePort } from "./temp.ts";

/** A running `dist serve`. */
export interface Served {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** The access log and messages so far. */
  log(): string;
  /** Stops it with SIGTERM and waits for its exit code. */
  stop(): Promise<number>;
  /** Kills it with SIGKILL (a crash), and waits. */
  kill(): Promise<void>;
}

/** Starts `dist serve --root ROOT --listen 127.0.0.1:PORT ...flags` and waits until it listens. */
export async function startServe(
  root: string,
  flags: string[] = [],
  port = freePort(),
): Promise<Served> {
  const child = spawnDist(["serve", "--root", root, "--listen", `127.0.0.1:${port}`, ...flags]);
  await child.stdin.close();
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  let listening: () => void;
  const ready = new Promise<void>((resolve) => (listening = resolve));
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      chunks.push(decoder.decode(chunk, { stream: true }));
      if (chunks.join("").includes("serving ")) listening();
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const exited = child.status.then((status) => {
    listening(); // a server that died at start fails the test at its first request
    return status;
  });
  await ready;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    log: () => chunks.join(""),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone already */ }
      const { code } = await exited;
      await drained;
      return code;
    },
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone already */ }
      await exited;
      await drained;
    },
  };
}
