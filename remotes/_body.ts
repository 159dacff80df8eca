/**
 * Reading response bodies: in large chunks (BYOB reads into 1 MiB buffers where the body is a
 * byte stream), resumed after a dropped connection, and capped for small documents.
 */
import { SizeMismatchError } from "../content/errors.ts";
import { DEFAULT_TIMEOUT_MS, TimeoutError, timeoutMessage } from "./_transport.ts";
import { RegistryError } from "./errors.ts";
import { backoffDelay, describeNetworkError, type RetryPolicy, sleep } from "./_retry.ts";
import { ChunkReader, directStream, IdleWatch } from "../content/internal/mod.ts";

/** Chunks handed on are up to this size: fewer, larger writes downstream. */
const CHUNK_SIZE = 1 << 20;
/**
 * The chunks a default reader gets (a ChunkReader or a BYOB reader brings its own buffer): each
 * is a fresh buffer, garbage once passed on, and a few wait at every stage of a pipe (a copy's
 * upload holds some per blob). 256 KiB rather than 1 MiB: `dist copy` of 8 × 128 MiB between two
 * registries peaked at 136 MiB rather than 151, in the same time (with Digester's `size`).
 */
const DEFAULT_READ_SIZE = 256 << 10;

/** Scratch buffers of finished bodies, for the next ones; a few, as a few bodies run at once. */
const scratchPool: Uint8Array<ArrayBuffer>[] = [];
const MAX_POOLED = 8;
const EMPTY = new Uint8Array(0);

/** A body that starts at `start` bytes into the object (a 206 at the offset, or a 200 from 0). */
export interface OpenedBody {
  body: ReadableStream<Uint8Array>;
  start: number;
}

/** What {@link resumableStream} needs besides the first body. */
export interface ResumeOptions {
  /** The object's size when known: a body that ends before it counts as a drop. */
  size?: number;
  /** Opens the object again at an offset (the reply may start earlier; the rest is skipped). */
  reopen(offset: number): Promise<OpenedBody>;
  /** Bounds the resumes that make no progress. */
  policy: RetryPolicy;
  /** Names the object in the final error. */
  label: string;
  /** How long a read may wait for data before the transfer counts as cut (and resumes). */
  idleMs: number;
  /** The host, for the idle timeout's message. */
  host: string;
  signal?: AbortSignal;
}

/**
 * Wraps a body that starts at `first.start` into a stream of chunks of up to 1 MiB. When the
 * connection drops (or the body ends short of `size`), it reopens at the first byte not yet handed
 * on and drops what a reply from an earlier offset repeats. Resumes that make no progress are
 * bounded by the retry policy; the final error lists each failure.
 */
export function resumableStream(
  first: OpenedBody,
  options: ResumeOptions,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let reader = new ChunkReader(first.body);
  let position = first.start; // absolute offset of the next byte to hand on
  let bodyAt = first.start; // absolute offset of the next byte `reader` yields
  const failures: string[] = [];
  let failuresWithoutProgress = 0;
  const size = options.size !== undefined && options.size >= 0 ? options.size : undefined;

  // Set once the stream is over: `ended` by its end or a cancel (reads then yield nothing more),
  // `failed` by its error (reads then throw it again).
  let ended = false;
  let failed: { error: unknown } | undefined;

  const resume = async (why: string, cause?: unknown) => {
    await reader.cancel();
    failuresWithoutProgress++;
    failures.push(`at byte ${position}: ${why}`);
    if (failuresWithoutProgress >= options.policy.attempts) {
      throw new RegistryError(
        `cannot fetch ${options.label}: the transfer failed ${failures.length} times: ` +
          failures.join("; "),
        { retryable: true, cause },
      );
    }
    await sleep(backoffDelay(options.policy, failuresWithoutProgress), options.signal);
    if (ended) return; // cancelled meanwhile: no new body
    const opened = await options.reopen(position);
    if (ended) return void await opened.body.cancel().catch(() => {});
    reader = new ChunkReader(opened.body);
    bodyAt = opened.start;
  };

  // BYOB reads of the body land in this buffer and are copied into the reader's: a BYOB read
  // that fails takes its buffer along, which must never be the reader's own. It comes from a
  // pool, when first needed, and goes back once the body has ended: a fresh 1 MiB buffer per
  // blob costs zeroing and page faults.
  let scratch: Uint8Array<ArrayBuffer> | undefined;
  const giveBack = () => {
    if (scratch?.byteLength === CHUNK_SIZE && scratchPool.length < MAX_POOLED) {
      scratchPool.push(scratch);
    }
    scratch = EMPTY; // never handed back twice
  };
  // A direct byte stream: BYOB readers fill buffers of their own, and a ChunkReader reads it
  // without the stream machinery, so a consumer that reuses one buffer allocates nothing per
  // chunk (fresh 1 MiB chunks cost 4 parallel 128 MiB downloads twice the time and 70 MB more
  // RSS, in garbage). Each read fills the buffer unless the body ends (or fails) first.
  // Deno stops a fetch body on abort only while its Response object is alive, and only the body
  // is kept: once the Response is garbage, an aborted download would run on to its end. So the
  // read in flight is cancelled here, and every read checks the signal.
  const { signal } = options;
  const onAbort = () => void reader.cancel(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  // a body that stalls is cut here, and resumed with Range like a dropped one
  let stalled = false;
  const watch = new IdleWatch(options.idleMs, () => {
    stalled = true;
    void reader.cancel();
  });
  const finish = () => {
    watch.stop();
    signal?.removeEventListener("abort", onAbort);
  };

  /** Reads into `view` until it is full, the body ends, or a failure interrupts. */
  const fill = async (view: Uint8Array<ArrayBuffer>): Promise<number> => {
    let filled = 0;
    const handOn = () => {
      position += filled;
      return filled;
    };
    for (;;) {
      const skip = position - bodyAt; // > 0 while dropping bytes a reply repeats
      const want = skip > 0 ? Math.min(CHUNK_SIZE, skip) : view.byteLength - filled;
      let count: number;
      // a direct source fills the caller's buffer itself; a BYOB read takes its buffer along
      // (and keeps it when it fails), so it reads into the scratch buffer, copied from there
      const direct = skip <= 0 && reader.direct;
      stalled = false;
      watch.begin();
      try {
        if (direct) {
          ({ count } = await reader.readInto(view, filled, filled + Math.min(CHUNK_SIZE, want)));
        } else {
          scratch ??= scratchPool.pop() ?? new Uint8Array(CHUNK_SIZE);
          ({ buffer: scratch, count } = await reader.readInto(
            scratch,
            0,
            Math.min(CHUNK_SIZE, want),
          ));
        }
        signal?.throwIfAborted();
        if (stalled) throw new TimeoutError(timeoutMessage("idle", options.host, options.idleMs));
      } catch (caught) {
        watch.end();
        if (signal?.aborted) throw signal.reason;
        if (ended) return 0;
        // a stalled direct source fails its read when cut, rather than ending it
        const error = stalled && !(caught instanceof TimeoutError)
          ? new TimeoutError(timeoutMessage("idle", options.host, options.idleMs))
          : caught;
        if (!direct) scratch = undefined; // the failed BYOB read took it along
        // hand on what arrived, so that progress is never lost twice
        const handed = handOn();
        await resume(describeNetworkError(error), error);
        if (handed > 0 || ended) return handed;
        continue;
      }
      watch.end();
      if (ended) return 0; // cancelled while reading
      if (count === 0) {
        const end = position + filled;
        if (skip <= 0 && (size === undefined || end >= size)) {
          ended = true;
          giveBack();
          finish();
          return handOn();
        }
        const handed = handOn();
        await resume(`the body ended at byte ${end} of ${size}`);
        if (handed > 0 || ended) return handed;
        continue;
      }
      bodyAt += count;
      if (skip > 0) continue;
      if (size !== undefined && position + filled + count > size) {
        // an endless (or merely overlong) body must not fill the disk: stop at size + 1
        await reader.cancel();
        throw new SizeMismatchError(
          `cannot fetch ${options.label}: the registry sent more than its ${size} bytes`,
        );
      }
      if (!direct) view.set(scratch!.subarray(0, count), filled);
      filled += count;
      // after a failure, hand on whatever arrived so that progress is never lost twice
      if (filled === view.byteLength || failuresWithoutProgress > 0) {
        failuresWithoutProgress = 0;
        return handOn();
      }
    }
  };

  return directStream({
    async readInto(view) {
      if (failed) throw failed.error;
      if (ended) return 0;
      try {
        return await fill(view);
      } catch (error) {
        failed = { error };
        finish();
        throw error;
      }
    },
    cancel(reason) {
      ended = true;
      finish();
      // no giveBack: a read in flight may still fill the scratch buffer
      return reader.cancel(reason);
    },
  }, DEFAULT_READ_SIZE);
}

/** Reads a whole (small) body, failing once it exceeds `max` bytes. */
export async function readCapped(
  body: ReadableStream<Uint8Array> | null,
  max: number,
  tooLarge: (received: number) => Error,
  idle: { ms: number; host: string } = { ms: DEFAULT_TIMEOUT_MS, host: "the registry" },
): Promise<Uint8Array<ArrayBuffer>> {
  if (!body) return new Uint8Array(0);
  // chunks are copied out, not kept: a body sent a byte at a time arrives in as many chunks,
  // each a view of a buffer far bigger than its byte
  let bytes = new Uint8Array(0);
  let total = 0;
  const reader = body.getReader();
  let stalled = false;
  const watch = new IdleWatch(idle.ms, () => {
    stalled = true;
    void reader.cancel();
  });
  try {
    for (;;) {
      watch.begin();
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        if (!stalled) throw error; // else the cut stream's own error: the timeout says more
      } finally {
        watch.end();
      }
      if (stalled) throw new TimeoutError(timeoutMessage("idle", idle.host, idle.ms));
      const { done, value } = result!;
      if (done) break;
      if (total + value.byteLength > max) {
        await reader.cancel().catch(() => {});
        throw tooLarge(total + value.byteLength);
      }
      if (total + value.byteLength > bytes.length) {
        const grown = new Uint8Array(
          Math.min(max, Math.max(2 * bytes.length, total + value.byteLength, 4096)),
        );
        grown.set(bytes.subarray(0, total));
        bytes = grown;
      }
      bytes.set(value, total);
      total += value.byteLength;
    }
  } finally {
    watch.stop();
  }
  return total === bytes.length ? bytes : bytes.slice(0, total);
}
