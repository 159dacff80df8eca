/**
 * The plain-HTTP/1.1 path to loopback registries, at the wire: a scripted server answers each
 * request with exactly the bytes a test gives, split across writes, so that framing (chunked,
 * close-delimited, interim replies), kept connections and malformed replies are each seen by
 * the registry client as a real server would send them.
 */
import assert from "node:assert/strict";
import { RegistryClient } from "../../remotes/client.ts";
import { RegistryError } from "../../remotes/errors.ts";
import { parseReference } from "../../content/reference.ts";
import { digestOf } from "../../content/digest.ts";
import type { Descriptor } from "../../content/descriptor.ts";
import { ChunkReader } from "../../content/internal/mod.ts";
import { assertRejects } from "../_helpers/rejects.ts";

const encoder = new TextEncoder();
const BLOB = encoder.encode("the bytes of a small blob, sent in pieces\n".repeat(50));
const DESCRIPTOR: Descriptor = {
  mediaType: "application/octet-stream",
  digest: digestOf(BLOB),
  size: BLOB.length,
};

/** What the server sends for one request: pieces written one by one, then maybe a close. */
interface Answer {
  pieces: (string | Uint8Array)[];
  close?: boolean;
}

/**
 * A loopback server that reads each request head and answers with `answer(head, n)` (n counts
 * requests over all connections). Reports the connections it accepted.
 */
function startScripted(answer: (head: string, n: number) => Answer) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns = new Set<Deno.Conn>();
  let accepted = 0;
  let requests = 0;
  const serve = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(64 << 10);
    let have = 0;
    try {
      for (;;) {
        const text = () => new TextDecoder().decode(buffer.subarray(0, have));
        while (!text().includes("\r\n\r\n")) {
          const n = await conn.read(buffer.subarray(have));
          if (n === null) return;
          have += n;
        }
        const head = text().slice(0, text().indexOf("\r\n\r\n"));
        have = 0;
        const { pieces, close } = answer(head, requests++);
        for (const piece of pieces) {
          await conn.write(typeof piece === "string" ? encoder.encode(piece) : piece);
          await new Promise((r) => setTimeout(r, 2)); // separate reads on the other side
        }
        if (close) return;
      }
    } catch {
      // the client went away
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      accepted++;
      conns.add(conn);
      void serve(conn);
    }
  })().catch(() => {});
  return {
    ref: (path = "app@" + DESCRIPTOR.digest) => parseReference(`127.0.0.1:${port}/${path}`),
    get accepted() {
      return accepted;
    },
    async stop() {
      listener.close();
      for (const conn of conns) conn.close();
      await accepting;
    },
  };
}

async function fetchBytes(client: RegistryClient, ref: ReturnType<typeof parseReference>) {
  const { stream } = await client.fetch(ref, DESCRIPTOR);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const quick = () => new RegistryClient({ credentials: {}, retry: { attempts: 2, baseDelayMs: 5 } });

Deno.test("http1: a chunked body with extensions and trailers arrives whole; the connection is kept", async () => {
  const chunked = (bytes: Uint8Array) => {
    const half = bytes.length >> 1;
    return [
      `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n`,
      `${half.toString(16)};name=value\r\n`,
      bytes.subarray(0, half),
      `\r\n${(bytes.length - half).toString(16)}\r\n`,
      bytes.subarray(half),
      "\r\n0\r\nx-trailer: yes\r\n\r\n",
    ];
  };
  const server = startScripted(() => ({ pieces: chunked(BLOB) }));
  const client = quick();
  try {
    assert.deepEqual(await fetchBytes(client, server.ref()), BLOB);
    assert.deepEqual(await fetchBytes(client, server.ref()), BLOB);
    assert.equal(server.accepted, 1, "the second request reuses the connection");
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("http1: an interim 100 reply is skipped; a body delimited by close arrives whole", async () => {
  const server = startScripted(() => ({
    pieces: [
      "HTTP/1.1 100 Continue\r\n\r\n",
      "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
      BLOB.subarray(0, 100),
      BLOB.subarray(100),
    ],
    close: true,
  }));
  const client = quick();
  try {
    assert.deepEqual(await fetchBytes(client, server.ref()), BLOB);
    assert.deepEqual(await fetchBytes(client, server.ref()), BLOB);
    assert.equal(server.accepted, 2, "a closed connection is not reused");
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("http1: a kept connection the server closed meanwhile is replaced, not a failure", async () => {
  const server = startScripted(() => ({
    pieces: [`HTTP/1.1 200 OK\r\ncontent-length: ${BLOB.length}\r\n\r\n`, BLOB],
    close: true, // without saying so: the client keeps the connection and finds it closed
  }));
  const retries: string[] = [];
  const client = new RegistryClient({
    credentials: {},
    retry: { attempts: 1 },
    onRetry: (e) => retries.push(e.reason),
  });
  try {
    for (let i = 0; i < 3; i++) assert.deepEqual(await fetchBytes(client, server.ref()), BLOB);
    assert.equal(server.accepted, 3);
    assert.deepEqual(retries, []);
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("http1: malformed replies fail the request, saying what was wrong", async () => {
  const cases: [string, (string | Uint8Array)[], RegExp][] = [
    [
      "both lengths",
      [`HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
      /both Transfer-Encoding and Content-Length/,
    ],
    [
      "a bad length",
      [`HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\nhello`],
      /invalid Content-Length "5, 6"/,
    ],
    [
      "a huge head",
      ["HTTP/1.1 200 OK\r\n" + `x-filler: ${"y".repeat(1000)}\r\n`.repeat(70)],
      /exceeds 65536 bytes/,
    ],
    ["not HTTP", ["\x15\x03\x03\x00\x02\x02\x46"], /invalid HTTP version parsed/],
    [
      "a bad chunk size",
      [`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n`],
      /invalid chunk size line/,
    ],
    ["a bare LF", [`HTTP/1.1 200 OK\ncontent-length: 0\n\n`], /does not end in CRLF/],
  ];
  for (const [name, pieces, expected] of cases) {
    const server = startScripted(() => ({ pieces, close: true }));
    const client = quick();
    try {
      const error = await assertRejects(() => fetchBytes(client, server.ref()), RegistryError);
      assert.match(error.message, expected, `${name}: ${error.message}`);
    } finally {
      client.close();
      await server.stop();
    }
  }
});

Deno.test("http1: a body cut short of its length resumes with Range on a new connection", async () => {
  const cut = 300;
  const server = startScripted((head) => {
    const range = /range: bytes=(\d+)-/i.exec(head);
    if (!range) {
      return {
        pieces: [
          `HTTP/1.1 200 OK\r\ncontent-length: ${BLOB.length}\r\n\r\n`,
          BLOB.subarray(0, cut),
        ],
        close: true,
      };
    }
    const from = Number(range[1]);
    return {
      pieces: [
        `HTTP/1.1 206 Partial Content\r\ncontent-length: ${BLOB.length - from}\r\n` +
        `content-range: bytes ${from}-${BLOB.length - 1}/${BLOB.length}\r\n\r\n`,
        BLOB.subarray(from),
      ],
    };
  });
  const client = quick();
  try {
    assert.deepEqual(await fetchBytes(client, server.ref()), BLOB);
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("http1: a body that stalls is cut by the idle timeout, which the error names", async () => {
  const server = startScripted(() => ({
    pieces: [`HTTP/1.1 200 OK\r\ncontent-length: ${BLOB.length}\r\n\r\n`, BLOB.subarray(0, 100)],
  })); // and then silence, on every connection
  const client = new RegistryClient({
    credentials: {},
    retry: { attempts: 2, baseDelayMs: 5 },
    timeoutMs: 200,
  });
  try {
    const error = await assertRejects(() => fetchBytes(client, server.ref()), RegistryError);
    assert.match(error.message, /at byte 100: no data for 0\.2s \(idle timeout\)/);
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("http1: giving up on a body already read to its end spares the connection it gave back", async () => {
  const server = startScripted(() => ({
    pieces: [`HTTP/1.1 200 OK\r\ncontent-length: ${BLOB.length}\r\n\r\n`, BLOB],
  }));
  const client = quick();
  try {
    const first = new ChunkReader((await client.fetch(server.ref(), DESCRIPTOR)).stream);
    while (await first.read());
    const { stream } = await client.fetch(server.ref(), DESCRIPTOR); // on the same connection
    await first.cancel(new Error("the consumer gave up after the end")); // a failed last write
    assert.deepEqual(new Uint8Array(await new Response(stream).arrayBuffer()), BLOB);
    assert.equal(server.accepted, 1);
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("http1: a malformed reply on a kept connection is not asked for again on each other one", async () => {
  let requests = 0;
  const server = startScripted(() => {
    requests++;
    return requests <= 4
      ? { pieces: [`HTTP/1.1 200 OK\r\ncontent-length: ${BLOB.length}\r\n\r\n`, BLOB] }
      : { pieces: ["HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n"] };
  });
  const client = new RegistryClient({ credentials: {}, retry: { attempts: 1 } });
  try {
    // four connections kept open, then a reply no retry can mend
    await Promise.all([1, 2, 3, 4].map(() => fetchBytes(client, server.ref())));
    assert.equal(server.accepted, 4);
    await assertRejects(() => fetchBytes(client, server.ref()), RegistryError);
    assert.equal(requests, 5, "one request, not one per kept connection");
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("http1: a manifest sent a byte a chunk arrives whole", async () => {
  const manifest = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: DESCRIPTOR,
    layers: [],
  }));
  const chunked = [...manifest].map((byte) => `1\r\n${String.fromCharCode(byte)}\r\n`).join("");
  const server = startScripted(() => ({
    pieces: [
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n" +
      "content-type: application/vnd.oci.image.manifest.v1+json\r\n\r\n" + chunked + "0\r\n\r\n",
    ],
  }));
  const client = quick();
  try {
    const desc = {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: digestOf(manifest),
      size: manifest.length,
    };
    assert.deepEqual(await client.fetchManifest(server.ref(`app@${desc.digest}`), desc), manifest);
  } finally {
    client.close();
    await server.stop();
  }
});
