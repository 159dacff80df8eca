/**
 * The content store, in the spirit of containerd's content test suite: writers, commits and
 * their failures, resume after a killed writer, locking across processes, abort, delete, walk,
 * hostile digests and prune.
 */
import assert from "node:assert/strict";
import { Store, type Writer } from "../../content/store/mod.ts";
import { type Digest, Digester, digestOf } from "../../content/digest.ts";
import {
  AlreadyExistsError,
  DigestMismatchError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  SizeMismatchError,
} from "../../content/errors.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import { withTempDir } from "../_helpers/temp.ts";
import { bytesOf, seededBytes } from "../_helpers/bytes.ts";

const HOLD_WRITER = new URL("./_hold_writer.ts", import.meta.url).pathname;

async function ingestDirs(root: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${root}/ingest`))).map((e) => e.name);
}

async function commitBytes(store: Store, ref: string, bytes: Uint8Array): Promise<Digest> {
  const digest = digestOf(bytes);
  const writer = await store.writer(ref, { expected: digest, total: bytes.length });
  await writer.write(bytes);
  await writer.commit(bytes.length, digest);
  return digest;
}

/** Starts tests/content/_hold_writer.ts and waits until it holds the lock with `half` bytes. */
async function holdWriter(
  root: string,
  ref: string,
  file: string,
  half: number,
  digest: Digest,
): Promise<{ child: Deno.ChildProcess; stdin: WritableStreamDefaultWriter<Uint8Array> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", HOLD_WRITER, root, ref, file, String(half), digest],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  assert.equal(value?.trim(), `ready ${half}`);
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { child, stdin: child.stdin.getWriter() };
}

Deno.test("Store.open() creates an OCI image layout and keeps an existing index", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    const store = await Store.open(root);
    assert.equal(store.root, root);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${root}/oci-layout`)), {
      imageLayoutVersion: "1.0.0",
    });
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${root}/index.json`)), {
      schemaVersion: 2,
      manifests: [],
    });
    assert.ok((await Deno.stat(`${root}/blobs/sha256`)).isDirectory);
    assert.ok((await Deno.stat(`${root}/ingest`)).isDirectory);
    const index = '{"schemaVersion":2,"manifests":[{"x":1}]}';
    await Deno.writeTextFile(`${root}/index.json`, index);
    await Store.open(root);
    assert.equal(await Deno.readTextFile(`${root}/index.json`), index);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(root))).map((e) => e.name).sort(), [
      "blobs",
      "index.json",
      "ingest",
      "oci-layout",
    ]);
  });
});

Deno.test("writer.commit() stores content that info(), read() and readBytes() return", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(3 << 20);
    const digest = digestOf(bytes);
    const writer = await store.writer(`layer-${digest}`, { expected: digest, total: bytes.length });
    assert.equal(writer.offset, 0);
    // small chunks, one big one, then small again
    await writer.write(bytes.subarray(0, 1000));
    await writer.write(bytes.subarray(1000, 2 << 20));
    for (let at = 2 << 20; at < bytes.length; at += 4096) {
      await writer.write(bytes.subarray(at, Math.min(at + 4096, bytes.length)));
    }
    assert.equal(writer.status().offset, bytes.length);
    assert.equal(writer.status().total, bytes.length);
    assert.equal(writer.status().expected, digest);
    const info = await writer.commit(bytes.length, digest);
    assert.equal(info.digest, digest);
    assert.equal(info.size, bytes.length);
    assert.ok(Math.abs(info.createdAt.getTime() - Date.now()) < 5000);

    assert.deepEqual(await store.info(digest), info);
    assert.equal(await store.has(digest), true);
    assert.deepEqual(await bytesOf(await store.read(digest)), bytes);
    assert.deepEqual(
      await bytesOf(await store.read(digest, { offset: 12345 })),
      bytes.subarray(12345),
    );
    assert.deepEqual(
      await bytesOf(await store.read(digest, { offset: bytes.length })),
      new Uint8Array(),
    );
    assert.deepEqual(await store.readBytes(digest), bytes);
    await assert.rejects(store.readBytes(digest, { maxSize: 1024 }), SizeMismatchError);

    const path = store.blobPath(digest);
    assert.equal(path, `${root}/blobs/sha256/${digest.slice(7)}`);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o444);
    assert.deepEqual(await ingestDirs(root), []);
    await assert.rejects(store.status(`layer-${digest}`), NotFoundError);
    await writer.close(); // after commit: nothing to do
  });
});

Deno.test("a writer of more than 64 MiB, flushed to disk as it goes, commits it", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const chunk = seededBytes(1 << 20, 16);
    const digester = new Digester();
    const writer = await store.writer("big");
    for (let i = 0; i < 70; i++) {
      digester.update(chunk);
      // alternately through the synchronous (64 KiB) and asynchronous (1 MiB) write paths
      if (i % 2) await writer.write(chunk);
      else {for (let at = 0; at < chunk.length; at += 65536) {
          await writer.write(chunk.subarray(at, at + 65536));
        }}
    }
    const digest = digester.digest();
    const info = await writer.commit(70 << 20, digest);
    assert.equal(info.size, 70 << 20);
    const stored = await store.read(digest, { offset: 69 << 20 });
    assert.deepEqual(await bytesOf(stored), chunk);
  });
});

Deno.test("read() streams a large blob in chunks of at most 1 MiB", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes((5 << 20) + 17, 2);
    const digest = await commitBytes(store, "big", bytes);
    const sizes: number[] = [];
    for await (const chunk of await store.read(digest)) sizes.push(chunk.length);
    assert.deepEqual(sizes, [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 17]);
    const stream = await store.read(digest);
    await stream.cancel(); // closes the file without reading it
  });
});

Deno.test("writer.writable accepts a piped stream and commit() follows", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const parts = [seededBytes(10, 3), seededBytes(70_000, 4), seededBytes(300_000, 5)];
    const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (whole.set(p, at), at + p.length), 0);
    const digest = digestOf(whole);
    const writer = await store.writer("piped");
    await ReadableStream.from(parts).pipeTo(writer.writable);
    assert.equal(writer.offset, whole.length);
    await writer.commit(whole.length, digest);
    assert.deepEqual(await store.readBytes(digest), whole);
  });
});

Deno.test("writer.commit() rejects a size mismatch, naming both sizes, and keeps nothing", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(1000);
    const digest = digestOf(bytes);
    const writer = await store.writer("short");
    await writer.write(bytes.subarray(0, 900));
    await assert.rejects(writer.commit(1000, digest), (error: Error) => {
      assert.ok(error instanceof SizeMismatchError);
      assert.equal(error.message, "cannot commit short: expected size 1000, got 900");
      return true;
    });
    assert.equal(await store.has(digest), false);
    assert.equal(writer.offset, 0); // the bad bytes are gone; the writer may try again
    await writer.write(bytes);
    await writer.commit(1000, digest);
    assert.equal(await store.has(digest), true);
  });
});

Deno.test("writer.commit() rejects a digest mismatch, naming both digests, and keeps nothing", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(100_000);
    const wrong = digestOf(seededBytes(100_000, 9));
    const writer = await store.writer("bad");
    await writer.write(bytes);
    await assert.rejects(writer.commit(bytes.length, wrong), (error: Error) => {
      assert.ok(error instanceof DigestMismatchError);
      assert.equal(
        error.message,
        `cannot commit bad: expected digest ${wrong}, got ${digestOf(bytes)}`,
      );
      return true;
    });
    assert.equal(await store.has(wrong), false);
    assert.equal(await store.has(digestOf(bytes)), false);
    assert.equal((await store.status("bad")).offset, 0);
    await writer.close(); // an ingest without data is not kept
    assert.deepEqual(await ingestDirs(root), []);
    assert.deepEqual(await Array.fromAsync(store.list()), []);
  });
});

Deno.test("writer.commit() of content that exists throws AlreadyExistsError", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(5000);
    const digest = digestOf(bytes);
    const first = await store.writer("one");
    const second = await store.writer("two");
    await first.write(bytes);
    await second.write(bytes);
    await first.commit(bytes.length, digest);
    await assert.rejects(second.commit(bytes.length, digest), AlreadyExistsError);
    await second.close();
    assert.deepEqual(await ingestDirs(root), []);
    // asking for a writer of committed content fails at once
    await assert.rejects(store.writer("three", { expected: digest }), AlreadyExistsError);
    assert.deepEqual(await ingestDirs(root), []);
  });
});

Deno.test("Store.writer() locks a ref within one process and says since when", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const before = Date.now();
    const writer = await store.writer("ref");
    await assert.rejects(store.writer("ref"), (error: Error) => {
      assert.ok(error instanceof LockedError);
      assert.ok(error.since && error.since.getTime() >= before - 1000);
      assert.match(error.message, /^cannot write ref: locked by another writer since \d{4}-/);
      assert.match(error.message, new RegExp(`\\(pid ${Deno.pid}\\)$`));
      return true;
    });
    // another store object on the same root is no different
    await assert.rejects((await Store.open(root)).writer("ref"), LockedError);
    await writer.close();
  });
});

Deno.test("Store.writer() with wait resumes what the holder leaves when it closes", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(200_000);
    const digest = digestOf(bytes);
    const first = await store.writer("shared", { expected: digest });
    await first.write(bytes.subarray(0, 150_000));
    let waited = false;
    const pending = store.writer("shared", { expected: digest, wait: true }).then((w) => {
      waited = true;
      return w;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(waited, false);
    await first.close();
    const second = await pending;
    assert.equal(second.offset, 150_000);
    await second.write(bytes.subarray(150_000));
    await second.commit(bytes.length, digest);
    assert.deepEqual(await store.readBytes(digest), bytes);
  });
});

Deno.test("Store.writer() with wait throws AlreadyExistsError when the holder commits", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(1000);
    const digest = digestOf(bytes);
    const first = await store.writer("shared", { expected: digest });
    const pending = store.writer("shared", { expected: digest, wait: true });
    await first.write(bytes);
    await first.commit(bytes.length, digest);
    await assert.rejects(pending, AlreadyExistsError);
    assert.deepEqual(await ingestDirs(root), []);
  });
});

Deno.test("Store.writer() stops waiting when its signal aborts", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const writer = await store.writer("ref");
    const controller = new AbortController();
    const pending = store.writer("ref", { wait: true, signal: controller.signal });
    setTimeout(() => controller.abort(new Error("gave up")), 30);
    await assert.rejects(pending, /gave up/);
    await writer.close();
  });
});

Deno.test("a writer resumes after the writing process was killed with SIGKILL", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    const file = `${dir}/content`;
    const bytes = seededBytes(3 << 20, 7);
    const digest = digestOf(bytes);
    await Deno.writeFile(file, bytes);
    const half = (3 << 20) / 2;
    const { child } = await holdWriter(root, "killed", file, half, digest);
    const store = await Store.open(root);
    try {
      const status = await store.status("killed");
      assert.equal(status.offset, half);
      assert.equal(status.total, bytes.length);
      assert.equal(status.expected, digest);
      await assert.rejects(store.writer("killed"), (error: Error) => {
        assert.ok(error instanceof LockedError);
        assert.match(error.message, new RegExp(`\\(pid ${child.pid}\\)$`));
        return true;
      });
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    const writer = await store.writer("killed", { expected: digest, total: bytes.length });
    assert.equal(writer.offset, half); // the digest state of the first half is rebuilt
    await writer.write(bytes.subarray(half));
    await writer.commit(bytes.length, digest);
    assert.deepEqual(await store.readBytes(digest), bytes);
  });
});

Deno.test("two processes contend for one ref: the waiter sees the other's commit", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    const file = `${dir}/content`;
    const bytes = seededBytes(200_000, 8);
    const digest = digestOf(bytes);
    await Deno.writeFile(file, bytes);
    const { child, stdin } = await holdWriter(root, "contended", file, 100_000, digest);
    try {
      const store = await Store.open(root);
      await assert.rejects(store.writer("contended"), LockedError);
      const waiting = store.writer("contended", { expected: digest, wait: true });
      await stdin.write(new TextEncoder().encode("commit\n"));
      await assert.rejects(waiting, AlreadyExistsError);
      assert.equal((await child.status).code, 0);
      assert.deepEqual(await store.readBytes(digest), bytes);
      assert.deepEqual(await store.listStatuses(), []);
    } finally {
      await stdin.close().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch {
        // exited already
      }
      await child.status;
    }
  });
});

Deno.test("reopening a closed ingest resumes it; truncate(0) restarts it", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(100_000, 10);
    const digest = digestOf(bytes);
    const first = await store.writer("resume", { total: bytes.length });
    await first.write(bytes.subarray(0, 40_000));
    await first.close();
    const status = await store.status("resume");
    assert.equal(status.offset, 40_000);
    assert.equal(status.total, bytes.length);

    const second = await store.writer("resume", { total: bytes.length });
    assert.equal(second.offset, 40_000);
    assert.equal(second.status().startedAt.getTime(), status.startedAt.getTime());
    await second.truncate(0);
    assert.equal(second.offset, 0);
    await second.write(bytes);
    await second.commit(bytes.length, digest);
    assert.deepEqual(await store.readBytes(digest), bytes);
  });
});

Deno.test("an ingest left for another digest or size restarts from zero", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const old = seededBytes(50_000, 11);
    const stale = await store.writer("ref", { expected: digestOf(old), total: old.length });
    await stale.write(old.subarray(0, 20_000));
    await stale.close();
    const bytes = seededBytes(30_000, 12);
    const digest = digestOf(bytes);
    const writer = await store.writer("ref", { expected: digest, total: bytes.length });
    assert.equal(writer.offset, 0);
    assert.equal((await store.status("ref")).expected, digest);
    await writer.write(bytes);
    await writer.commit(bytes.length, digest);
    assert.deepEqual(await store.readBytes(digest), bytes);
  });
});

Deno.test("writeBlob() drops from its source what a resumed ingest already holds", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(500_000, 13);
    const digest = digestOf(bytes);
    const first = await store.writer("blob", { expected: digest, total: bytes.length });
    await first.write(bytes.subarray(0, 123_456));
    await first.close();
    const chunks = function* () {
      for (let at = 0; at < bytes.length; at += 65536) yield bytes.subarray(at, at + 65536);
    };
    const info = await writeBlob(store, "blob", chunks(), { digest, size: bytes.length });
    assert.equal(info.size, bytes.length);
    assert.deepEqual(await store.readBytes(digest), bytes);
    // present already: the source is not read at all
    const untouched: Iterable<Uint8Array> = {
      [Symbol.iterator]: () => {
        throw new Error("read");
      },
    };
    assert.deepEqual(await writeBlob(store, "blob", untouched, { digest, size: 500_000 }), info);
    // too long a source: nothing committed, the ingest is gone
    const other = seededBytes(10, 14);
    await assert.rejects(
      writeBlob(store, "long", [other], { digest: digestOf(other.subarray(0, 5)), size: 5 }),
      /cannot commit long: expected size 5, got 10/,
    );
    assert.deepEqual(await store.listStatuses(), []);
  });
});

Deno.test("Store.abort() removes an ingest; absent or held refs are errors", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const writer = await store.writer("left");
    await writer.write(seededBytes(1000));
    await writer.close();
    const held = await store.writer("held");
    await held.write(seededBytes(1000));
    await assert.rejects(store.abort("held"), LockedError);
    await store.abort("left");
    await assert.rejects(store.status("left"), NotFoundError);
    await assert.rejects(store.abort("left"), NotFoundError);
    await assert.rejects(store.abort("never"), NotFoundError);
    assert.deepEqual((await store.listStatuses()).map((s) => s.ref), ["held"]);
    await held.discard();
    assert.deepEqual(await ingestDirs(root), []);
  });
});

Deno.test("Store.delete() removes a blob; absent content is NotFoundError", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const digest = await commitBytes(store, "x", seededBytes(100));
    await store.delete(digest);
    assert.equal(await store.has(digest), false);
    await assert.rejects(store.delete(digest), NotFoundError);
    await assert.rejects(store.info(digest), (error: Error) => {
      assert.ok(error instanceof NotFoundError);
      assert.equal(error.message, `content ${digest} not found`);
      return true;
    });
    await assert.rejects(store.read(digest), NotFoundError);
    await assert.rejects(store.readBytes(digest), NotFoundError);
    await assert.rejects(store.status("nothing"), NotFoundError);
  });
});

Deno.test("hostile digests are rejected before any path is built", async () => {
  await withTempDir(async (dir) => {
    const root = `${dir}/store`;
    const store = await Store.open(root);
    await Deno.writeTextFile(`${dir}/victim`, "keep me");
    const hex = "a".repeat(64);
    const hostile = [
      "sha256:../../etc/passwd",
      "sha256:../../../victim",
      `sha256:${hex}/../../../../victim`,
      `sha256:${"A".repeat(64)}`,
      `sha256:${hex.slice(1)}`,
      `sha256:${hex}\n`,
      `md5:${hex.slice(32)}`,
      `sha256/${hex}`,
      "",
    ] as Digest[];
    const writer = await store.writer("w");
    await writer.write(seededBytes(10));
    for (const digest of hostile) {
      assert.throws(() => store.blobPath(digest), InvalidArgumentError);
      await assert.rejects(store.info(digest), InvalidArgumentError);
      await assert.rejects(store.has(digest), InvalidArgumentError);
      await assert.rejects(store.read(digest), InvalidArgumentError);
      await assert.rejects(store.readBytes(digest), InvalidArgumentError);
      await assert.rejects(store.delete(digest), InvalidArgumentError);
      await assert.rejects(store.writer("x", { expected: digest }), InvalidArgumentError);
      await assert.rejects(writer.commit(10, digest), InvalidArgumentError);
    }
    assert.equal(writer.offset, 10); // a refused digest leaves the ingest as it was
    await writer.discard();
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep me");
    assert.deepEqual(await Array.fromAsync(store.list()), []);
    assert.deepEqual(await ingestDirs(root), []);
    await assert.rejects(store.writer(""), InvalidArgumentError);
  });
});

Deno.test("Store.list() walks thousands of blobs and skips foreign files", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    // laid out as a commit leaves them (blobs/sha256/<hex>), written directly for speed
    const expected = new Map<string, number>();
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 4000; i++) {
      const bytes = new TextEncoder().encode(`blob ${i} `.repeat(i % 7 + 1));
      const digest = digestOf(bytes);
      expected.set(digest, bytes.length);
      writes.push(Deno.writeFile(store.blobPath(digest), bytes));
      if (writes.length === 64) await Promise.all(writes.splice(0));
    }
    await Promise.all(writes);
    await Deno.writeTextFile(`${root}/blobs/sha256/README`, "not a blob");
    await Deno.mkdir(`${root}/blobs/sha256/${"b".repeat(64)}`); // a directory is no blob either
    const sha512 = await commitBytes(store, "x", seededBytes(10, 15)).then(async (digest) => {
      // the same bytes under sha512, committed through a writer
      const bytes = await store.readBytes(digest);
      const writer = await store.writer("x512");
      await writer.write(bytes);
      const d512 = digestOf(bytes, "sha512");
      await writer.commit(bytes.length, d512);
      expected.set(digest, 10);
      expected.set(d512, 10);
      return d512;
    });
    const seen = new Map<string, number>();
    for await (const info of store.list()) seen.set(info.digest, info.size);
    assert.equal(seen.size, 4002);
    assert.deepEqual(seen, expected);
    assert.equal(store.blobPath(sha512), `${root}/blobs/sha512/${sha512.slice(7)}`);
  });
});

Deno.test("Store.listStatuses() filters by prefix and by pattern", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const writers: Writer[] = [];
    for (const ref of ["layer-sha256:aa", "layer-sha256:bb", "config-sha256:aa", "other"]) {
      const writer = await store.writer(ref, { total: 100 });
      await writer.write(seededBytes(70_000));
      writers.push(writer);
    }
    const refs = (statuses: { ref: string }[]) => statuses.map((s) => s.ref);
    assert.deepEqual(refs(await store.listStatuses()), [
      "config-sha256:aa",
      "layer-sha256:aa",
      "layer-sha256:bb",
      "other",
    ]);
    assert.deepEqual(refs(await store.listStatuses({ prefix: "layer-" })), [
      "layer-sha256:aa",
      "layer-sha256:bb",
    ]);
    assert.deepEqual(refs(await store.listStatuses({ pattern: /sha256:aa$/g })), [
      "config-sha256:aa",
      "layer-sha256:aa",
    ]);
    assert.deepEqual(refs(await store.listStatuses({ prefix: "layer-", pattern: /aa/ })), [
      "layer-sha256:aa",
    ]);
    const status = (await store.listStatuses({ prefix: "other" }))[0];
    assert.equal(status.offset, 70_000);
    assert.equal(status.total, 100);
    for (const writer of writers) await writer.close();
  });
});

Deno.test("Store.prune() removes ingests not updated for a while and skips held ones", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    for (const ref of ["old", "fresh"]) {
      const writer = await store.writer(ref);
      await writer.write(seededBytes(1000));
      await writer.close();
    }
    const held = await store.writer("held");
    await held.write(seededBytes(1000));
    // a day-old ingest, as its updatedat file says
    const old = (await store.listStatuses({ prefix: "old" }))[0];
    const oldDir = `${root}/ingest/${digestOf(new TextEncoder().encode("old")).slice(7)}`;
    await Deno.writeTextFile(`${oldDir}/updatedat`, "2020-01-01T00:00:00.000Z");

    const day = 24 * 3600 * 1000;
    const wouldGo = await store.prune({ olderThan: day, dryRun: true });
    assert.deepEqual(wouldGo.map((s) => s.ref), ["old"]);
    assert.equal(wouldGo[0].updatedAt.toISOString(), "2020-01-01T00:00:00.000Z");
    assert.equal((await store.listStatuses()).length, 3);

    const removed = await store.prune({ olderThan: day });
    assert.deepEqual(removed.map((s) => ({ ...s, updatedAt: undefined })), [
      { ...old, updatedAt: undefined },
    ]);
    assert.deepEqual((await store.listStatuses()).map((s) => s.ref), ["fresh", "held"]);
    // with age 0 everything not held goes
    assert.deepEqual((await store.prune({ olderThan: 0 })).map((s) => s.ref), ["fresh"]);
    assert.deepEqual((await store.listStatuses()).map((s) => s.ref), ["held"]);
    await held.close();
    await assert.rejects(store.prune({ olderThan: -1 }), InvalidArgumentError);
  });
});

Deno.test("a writer with deferMetadata shows its ingest after 100 ms or when it closes", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(300_000, 21);
    const digest = digestOf(bytes);
    const options = { expected: digest, total: bytes.length, deferMetadata: true };
    const dir = `${root}/ingest/${digestOf(new TextEncoder().encode("quick")).slice(7)}`;

    // until a write or close after 100 ms, the ingest is its data alone (and locked all the same)
    const quick = await store.writer("quick", options);
    assert.deepEqual(await ingestDirs(root), [dir.split("/").at(-1)]);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["data"]);
    await assert.rejects(store.status("quick"), NotFoundError);
    await assert.rejects(store.writer("quick"), LockedError);
    await quick.write(bytes);
    await quick.commit(bytes.length, digest);
    assert.deepEqual(await ingestDirs(root), []);
    await store.delete(digest);

    // written to for longer: the next write after 100 ms writes ref, total, expected and lock
    const slow = await store.writer("slow", options);
    await slow.write(bytes.subarray(0, 100_000));
    await new Promise((resolve) => setTimeout(resolve, 120));
    await slow.write(bytes.subarray(100_000, 200_000));
    const status = await store.status("slow");
    assert.deepEqual([status.offset, status.total, status.expected], [200_000, 300_000, digest]);
    await assert.rejects(store.writer("slow"), new RegExp(`\\(pid ${Deno.pid}\\)$`));
    await slow.close();

    // closed early: kept with its metadata, so the next writer resumes it
    const early = await store.writer("early", options);
    await early.write(bytes.subarray(0, 50_000));
    await early.close();
    assert.equal((await store.status("early")).total, bytes.length);
    const resumed = await store.writer("early", options);
    assert.equal(resumed.offset, 50_000);
    await resumed.discard();
  });
});

Deno.test("an ingest directory holding only data (a writer killed early) starts over", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const dir = `${root}/ingest/${digestOf(new TextEncoder().encode("leftover")).slice(7)}`;
    await Deno.mkdir(dir);
    await Deno.writeFile(`${dir}/data`, seededBytes(1000, 22));
    assert.deepEqual(await store.listStatuses(), []); // not an ingest readers list
    const writer = await store.writer("leftover", { total: 500 });
    assert.equal(writer.offset, 0);
    assert.equal((await store.status("leftover")).total, 500);
    await writer.discard();
    assert.deepEqual(await ingestDirs(root), []);
  });
});

Deno.test("Store.open() with create: false reads a missing root as empty and creates nothing", async () => {
  await withTempDir(async (dir) => {
    const store = await Store.open(`${dir}/a/b`, { create: false });
    const digest = digestOf(seededBytes(10));
    assert.deepEqual(await Array.fromAsync(store.list()), []);
    assert.deepEqual(await store.listStatuses(), []);
    assert.equal(await store.has(digest), false);
    await assert.rejects(() => store.info(digest), NotFoundError);
    assert.deepEqual([...Deno.readDirSync(dir)], []);

    // an existing store opens as usual; a file in the way is still refused
    const created = await Store.open(`${dir}/store`);
    await commitBytes(created, "r", seededBytes(10));
    const reopened = await Store.open(`${dir}/store`, { create: false });
    assert.deepEqual((await Array.fromAsync(reopened.list())).map((i) => i.digest), [digest]);
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(
      () => Store.open(`${dir}/file`, { create: false }),
      /cannot open the store at .*\/file: a file is in the way/,
    );
  });
});

Deno.test("writeBlob() of stored content at another size throws SizeMismatchError naming both", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = seededBytes(5);
    const digest = digestOf(bytes);
    await writeBlob(store, "r1", [bytes], { digest, size: 5 });
    await assert.rejects(
      () => writeBlob(store, "r1", [bytes], { digest, size: 99 }),
      (error) =>
        error instanceof SizeMismatchError &&
        error.message === `cannot commit r1: expected size 99, but ${digest} is stored with size 5`,
    );
    assert.equal((await writeBlob(store, "r1", [bytes], { digest, size: 5 })).size, 5);
  });
});
