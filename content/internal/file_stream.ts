/**
 * Byte streams over files and standard input that read in large pieces: `FsFile.readable` hands
 * out 64 KiB chunks, about three times slower than 1 MiB reads (see DESIGN.md).
 *
 * @module
 */
import { InvalidArgumentError, NotFoundError } from "../errors.ts";

const CHUNK = 1 << 20;

/** A stream over `file` from its current position, in up to 1 MiB chunks; closes the file. */
export function fileStream(file: Deno.FsFile | typeof Deno.stdin): ReadableStream<Uint8Array> {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    if (file !== Deno.stdin) (file as Deno.FsFile).close();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const buffer = new Uint8Array(CHUNK);
        const n = await file.read(buffer);
        if (n === null) {
          close();
          controller.close();
          return;
        }
        controller.enqueue(n === CHUNK ? buffer : buffer.subarray(0, n));
      } catch (error) {
        close();
        controller.error(error);
      }
    },
    cancel: close,
  }, { highWaterMark: 0 });
}

/** Opens `path` for reading as a {@link fileStream}; errors name the path. */
export async function openFileStream(path: string): Promise<ReadableStream<Uint8Array>> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    // a missing input is "not found" (exit 3), as a missing image or blob is
    if (error instanceof Deno.errors.NotFound) {
      throw new NotFoundError(`cannot read ${path}: no such file or directory`, { cause: error });
    }
    throw fileError(`cannot read ${path}`, error);
  }
  try {
    if ((await file.stat()).isDirectory) {
      throw new InvalidArgumentError(`cannot read ${path}: it is a directory`);
    }
  } catch (error) {
    file.close();
    throw error;
  }
  return fileStream(file);
}

/**
 * Writes `content` to `path` through a temporary file beside it that is flushed to disk and then
 * renamed over `path`, so a failed or interrupted write, or a crash, leaves no partial file at
 * `path`.
 */
export async function writeFileAtomic(
  path: string,
  content: ReadableStream<Uint8Array> | Uint8Array | string,
): Promise<void> {
  const stream = typeof content === "string"
    ? ReadableStream.from([new TextEncoder().encode(content)])
    : content instanceof Uint8Array
    ? ReadableStream.from([content])
    : content;
  // checked first: finding out at the final rename would waste the whole write
  const existing = await Deno.stat(path).catch(() => undefined);
  if (existing?.isDirectory) {
    throw new InvalidArgumentError(`cannot write ${path}: it is a directory`);
  }
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "" : path.slice(0, slash + 1);
  const temp = `${dir}.${path.slice(slash + 1)}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
  } catch (error) {
    throw fileError(`cannot write ${path}`, error); // the temporary name would only confuse
  }
  let open = true;
  try {
    const reader = stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (let offset = 0; offset < value.length;) {
          offset += await file.write(value.subarray(offset));
        }
      }
    } catch (error) {
      await reader.cancel(error).catch(() => {});
      throw error;
    }
    // flushed before the rename, else a crash could leave `path` renamed but empty or partial
    await file.syncData();
    file.close();
    open = false;
    await Deno.rename(temp, path);
    await syncDirectory(dir === "" ? "." : dir); // makes the rename itself durable
  } catch (error) {
    if (open) file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/** Flushes a directory's entries (a rename into it) to disk. */
export async function syncDirectory(path: string): Promise<void> {
  using dir = await Deno.open(path, { read: true });
  await dir.sync();
}

/**
 * `what` and the reason of an OS error, without the path Deno appends to its message
 * ("cannot read /x.tar: no such file or directory"). A missing permission stays as it is.
 */
function fileError(what: string, error: unknown): Error {
  if (error instanceof Deno.errors.NotCapable) return error;
  const message = error instanceof Error ? error.message : String(error);
  const reason = message.replace(/ \(os error \d+\)[^]*$/, "");
  return new Error(`${what}: ${reason.charAt(0).toLowerCase()}${reason.slice(1)}`, {
    cause: error,
  });
}
