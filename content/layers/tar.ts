/**
 * A streaming tar reader and writer over Web Streams.
 *
 * The reader understands ustar, GNU long names and long link names (`L`, `K`), PAX extended
 * headers (`x`) and global headers (`g`) including `SCHILY.xattr.*`, and base-256 numeric fields.
 * It never buffers a whole archive: entries are yielded one at a time and each entry's body is
 * handed out as views into the chunks the source produced, without copying.
 *
 * The writer produces ustar headers and adds a PAX header for whatever ustar cannot hold (long or
 * non-ASCII names, large sizes and ids, fractional times, extended attributes).
 *
 * @example
 * ```ts
 * import { readTar, writeTar } from "./tar.ts";
 * const archive = writeTar([
 *   { header: { name: "hello.txt" }, body: new TextEncoder().encode("hello\n") },
 * ]);
 * for await (const entry of readTar(archive)) {
 *   console.log(entry.header.name, await new Response(entry.body).text());
 * }
 * ```
 *
 * @module
 */
import { CorruptContentError, InvalidArgumentError, UnsupportedError } from "../errors.ts";
import { concatBytes } from "../internal/bytes.ts";

/** What a tar entry is, normalized from its type flag. */
export type TarEntryType =
  | "file"
  | "link"
  | "symlink"
  | "char-device"
  | "block-device"
  | "directory"
  | "fifo"
  | "other";

/** A tar header after GNU long names and PAX records have been applied. */
export interface TarHeader {
  /** The entry's path as stored (directories usually end in `/`). */
  name: string;
  /** The normalized entry type. */
  type: TarEntryType;
  /** The raw type flag, e.g. `"0"`, `"5"`; tells `"other"` entries apart. */
  typeflag: string;
  /** Permission bits including setuid, setgid and sticky (`0o7777`). */
  mode: number;
  /** Owner user id. */
  uid: number;
  /** Owner group id. */
  gid: number;
  /** Owner user name (informational). */
  uname: string;
  /** Owner group name (informational). */
  gname: string;
  /** Size of the entry's body in bytes. */
  size: number;
  /** Modification time in seconds since the epoch; fractional when a PAX header gave one. */
  mtime: number;
  /** Access time in seconds, when the archive records it. */
  atime?: number;
  /** Target of a symlink, or the path of the entry a hardlink points to. */
  linkname: string;
  /** Device major number (character and block devices). */
  devmajor: number;
  /** Device minor number (character and block devices). */
  devminor: number;
  /** Extended attributes from `SCHILY.xattr.*` PAX records, values as raw bytes. */
  xattrs: Record<string, Uint8Array<ArrayBuffer>>;
  /** Every PAX record that applied to this entry (global and local), values as text. */
  pax: Record<string, string>;
}

/** One entry of an archive being read. */
export interface TarEntry {
  /** The entry's header. */
  readonly header: TarHeader;
  /**
   * The entry's body as a stream. Read it before asking for the next entry: moving on skips
   * whatever is left of it, and the stream then errors.
   */
  readonly body: ReadableStream<Uint8Array>;
  /**
   * Returns the next piece of the body, or null at its end: a faster alternative to `body` for
   * callers that write pieces straight to a file. Pieces are views into the source's chunks.
   */
  read(): Promise<Uint8Array | null>;
}

/** Options for {@link readTar}. */
export interface ReadTarOptions {
  /** Largest PAX or GNU long-name record accepted, in bytes (default 1 MiB). */
  maxMetadataSize?: number;
}

const BLOCK = 512;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Reads a tar archive entry by entry. Each entry's body must be consumed (or is skipped) before
 * the next entry is produced. After the end-of-archive marker the rest of the source is read and
 * discarded, so a digest computed over the source covers every byte.
 */
export function readTar(
  source: ReadableStream<Uint8Array>,
  options: ReadTarOptions = {},
): AsyncIterableIterator<TarEntry> {
  return new TarReader(source, options.maxMetadataSize ?? 1 << 20).entries();
}

/** Pulls bytes from the source and cuts them into blocks and body pieces. */
class TarReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #maxMetadata: number;
  #chunk: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #done = false;
  /** Bytes consumed so far, for error messages. */
  #offset = 0;
  /** Body bytes left in the current entry, then its padding. */
  #remaining = 0;
  #padding = 0;
  #current: Entry | undefined;
  readonly #scratch = new Uint8Array(BLOCK);
  #globals: Map<string, Uint8Array<ArrayBuffer>> = new Map();

  constructor(source: ReadableStream<Uint8Array>, maxMetadata: number) {
    this.#reader = source.getReader();
    this.#maxMetadata = maxMetadata;
  }

  async *entries(): AsyncIterableIterator<TarEntry> {
    let finished = false;
    try {
      while (true) {
        const entry = await this.#next();
        if (!entry) break;
        yield entry;
      }
      finished = true;
    } finally {
      if (this.#current) this.#current.detach();
      if (finished) this.#reader.releaseLock();
      else await this.#reader.cancel().catch(() => {});
    }
  }

  /** Makes sure unread bytes are available; false at the end of the source. */
  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#chunk.length) {
      if (this.#done) return false;
      const { value, done } = await this.#reader.read();
      if (done) {
        this.#done = true;
        return false;
      }
      this.#chunk = value;
      this.#pos = 0;
    }
    return true;
  }

  /** Reads one 512-byte block: a view when it lies in one chunk, else a copy. Null at a clean end. */
  async #block(): Promise<Uint8Array | null> {
    if (!(await this.#fill())) return null;
    if (this.#chunk.length - this.#pos >= BLOCK) {
      const block = this.#chunk.subarray(this.#pos, this.#pos + BLOCK);
      this.#pos += BLOCK;
      this.#offset += BLOCK;
      return block;
    }
    let have = 0;
    while (have < BLOCK) {
      if (!(await this.#fill())) {
        throw new CorruptContentError(
          `invalid tar archive: unexpected end of data in a header at offset ${this.#offset}`,
        );
      }
      const n = Math.min(BLOCK - have, this.#chunk.length - this.#pos);
      this.#scratch.set(this.#chunk.subarray(this.#pos, this.#pos + n), have);
      this.#pos += n;
      have += n;
      this.#offset += n;
    }
    return this.#scratch;
  }

  /** Returns the next piece of the current body, or null when it is exhausted. */
  async readBody(): Promise<Uint8Array | null> {
    if (this.#remaining === 0) return null;
    if (!(await this.#fill())) {
      throw new CorruptContentError(
        `invalid tar archive: unexpected end of data in ${this.#current?.header.name} at offset ${this.#offset}`,
      );
    }
    const n = Math.min(this.#remaining, this.#chunk.length - this.#pos);
    const piece = this.#chunk.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    this.#remaining -= n;
    this.#offset += n;
    return piece;
  }

  /** Skips the rest of the current body and its padding. */
  async #skipBody(): Promise<void> {
    this.#remaining += this.#padding;
    this.#padding = 0;
    while (this.#remaining > 0) {
      if (!(await this.#fill())) {
        throw new CorruptContentError(
          `invalid tar archive: unexpected end of data at offset ${this.#offset}`,
        );
      }
      const n = Math.min(this.#remaining, this.#chunk.length - this.#pos);
      this.#pos += n;
      this.#remaining -= n;
      this.#offset += n;
    }
  }

  /** Reads a whole (small) body into memory: PAX records and GNU long names. */
  async #readSmallBody(size: number, what: string): Promise<Uint8Array<ArrayBuffer>> {
    if (size > this.#maxMetadata) {
      throw new CorruptContentError(
        `invalid tar archive: ${what} of ${size} bytes at offset ${this.#offset} exceeds ${this.#maxMetadata}`,
      );
    }
    const bytes = new Uint8Array(size);
    let have = 0;
    while (have < size) {
      const piece = await this.readBody();
      if (!piece) break;
      bytes.set(piece, have);
      have += piece.length;
    }
    await this.#skipBody();
    return bytes;
  }

  async #next(): Promise<Entry | null> {
    if (this.#current) {
      this.#current.detach();
      this.#current = undefined;
      await this.#skipBody();
    }
    let longName: string | undefined;
    let longLink: string | undefined;
    let local: Map<string, Uint8Array<ArrayBuffer>> | undefined;
    while (true) {
      const headerOffset = this.#offset;
      const block = await this.#block();
      if (!block || isZeroBlock(block)) {
        await this.#drain();
        if (longName !== undefined || longLink !== undefined || local) {
          throw new CorruptContentError(
            `invalid tar archive: metadata header at the end of the archive without an entry`,
          );
        }
        return null;
      }
      verifyChecksum(block, headerOffset);
      const typeflag = block[156] === 0 ? "\0" : String.fromCharCode(block[156]);
      const size = parseNumber(block, 124, 12, "size", headerOffset);
      this.#remaining = size;
      this.#padding = (BLOCK - (size % BLOCK)) % BLOCK;
      switch (typeflag) {
        case "x":
          local = parsePax(await this.#readSmallBody(size, "PAX header"), headerOffset);
          continue;
        case "g":
          for (
            const [key, value] of parsePax(
              await this.#readSmallBody(size, "PAX header"),
              headerOffset,
            )
          ) {
            if (value.length === 0) this.#globals.delete(key);
            else this.#globals.set(key, value);
          }
          continue;
        case "L":
          longName = cString(await this.#readSmallBody(size, "GNU long name"), 0, size);
          continue;
        case "K":
          longLink = cString(await this.#readSmallBody(size, "GNU long link name"), 0, size);
          continue;
      }
      const header = parseHeader(block, typeflag, headerOffset);
      if (longName !== undefined) header.name = longName;
      if (longLink !== undefined) header.linkname = longLink;
      if (this.#globals.size > 0 || local) {
        const records = new Map(this.#globals);
        if (local) { for (const [key, value] of local) records.set(key, value); }
        applyPax(header, records, headerOffset);
        this.#remaining = header.size;
        this.#padding = (BLOCK - (header.size % BLOCK)) % BLOCK;
      }
      if (header.typeflag === "\0" && header.name.endsWith("/")) header.type = "directory";
      if (
        header.typeflag === "S" || header.pax["GNU.sparse.major"] !== undefined ||
        header.pax["GNU.sparse.map"] !== undefined
      ) {
        throw new UnsupportedError(
          `cannot read sparse tar entry ${header.name}: sparse files are not supported`,
        );
      }
      // Hardlinks, directories, devices and FIFOs carry no data we use; skip any they declare.
      if (header.type !== "file" && header.type !== "other") {
        await this.#skipBody();
        header.size = 0;
      }
      this.#current = new Entry(header, this);
      return this.#current;
    }
  }

  /** Reads what follows the end-of-archive marker (padding to the record size) and drops it. */
  async #drain(): Promise<void> {
    this.#offset += this.#chunk.length - this.#pos;
    this.#pos = this.#chunk.length;
    while (!this.#done) {
      const { value, done } = await this.#reader.read();
      if (done) this.#done = true;
      else this.#offset += value.length;
    }
  }
}

/** An entry handed to callers; reads go through the reader while the entry is current. */
class Entry implements TarEntry {
  readonly header: TarHeader;
  #reader: TarReader | undefined;
  #body: ReadableStream<Uint8Array> | undefined;

  constructor(header: TarHeader, reader: TarReader) {
    this.header = header;
    this.#reader = reader;
  }

  detach(): void {
    this.#reader = undefined;
  }

  read(): Promise<Uint8Array | null> {
    if (!this.#reader) {
      return Promise.reject(
        new CorruptContentError(`cannot read tar entry ${this.header.name}: the archive moved on`),
      );
    }
    return this.#reader.readBody();
  }

  get body(): ReadableStream<Uint8Array> {
    this.#body ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const piece = await this.read();
        if (piece) controller.enqueue(piece);
        else controller.close();
      },
    }, { highWaterMark: 0 });
    return this.#body;
  }
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function verifyChecksum(block: Uint8Array, offset: number): void {
  const stored = parseNumber(block, 148, 8, "checksum", offset);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new CorruptContentError(
      `invalid tar archive: header checksum mismatch at offset ${offset} (not a tar archive, or corrupt)`,
    );
  }
}

/** Decodes a NUL-terminated field as UTF-8. */
function cString(bytes: Uint8Array, start: number, length: number): string {
  let end = start;
  const limit = start + length;
  let ascii = true;
  while (end < limit && bytes[end] !== 0) {
    if (bytes[end] > 127) ascii = false;
    end++;
  }
  if (end === start) return "";
  // Most names are ASCII; building them directly is faster than a TextDecoder call.
  if (ascii && end - start < 128) {
    return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
  }
  return decoder.decode(bytes.subarray(start, end));
}

/** Parses an octal (or base-256, GNU) numeric field. */
function parseNumber(
  block: Uint8Array,
  start: number,
  length: number,
  field: string,
  offset: number,
): number {
  const first = block[start];
  if (first & 0x80) {
    // Base-256: big-endian two's complement; 0x80 marks positive, 0xff negative.
    const negative = first === 0xff;
    let value = 0;
    for (let i = start; i < start + length; i++) {
      const byte = negative ? block[i] ^ 0xff : block[i];
      value = value * 256 + (i === start ? byte & 0x7f : byte);
    }
    if (negative) value = -(value + 1);
    if (!Number.isSafeInteger(value)) {
      throw new CorruptContentError(
        `invalid tar header at offset ${offset}: ${field} out of range`,
      );
    }
    return value;
  }
  let value = 0;
  let i = start;
  const end = start + length;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  for (; i < end; i++) {
    const c = block[i];
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) {
      throw new CorruptContentError(
        `invalid tar header at offset ${offset}: ${field} is not an octal number`,
      );
    }
    value = value * 8 + (c - 0x30);
  }
  return value;
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "link",
  "2": "symlink",
  "3": "char-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
};

function parseHeader(block: Uint8Array, typeflag: string, offset: number): TarHeader {
  let name = cString(block, 0, 100);
  // "ustar\0" (POSIX) has a name prefix; GNU's "ustar  \0" keeps other data at that place.
  const posix = block[257] === 0x75 && block[262] === 0 && block[263] === 0x30;
  if (posix && block[345] !== 0) name = cString(block, 345, 155) + "/" + name;
  return {
    name,
    type: TYPES[typeflag] ?? "other",
    typeflag,
    mode: parseNumber(block, 100, 8, "mode", offset) & 0o7777,
    uid: parseNumber(block, 108, 8, "uid", offset),
    gid: parseNumber(block, 116, 8, "gid", offset),
    size: parseNumber(block, 124, 12, "size", offset),
    mtime: parseNumber(block, 136, 12, "mtime", offset),
    linkname: cString(block, 157, 100),
    uname: cString(block, 265, 32),
    gname: cString(block, 297, 32),
    devmajor: parseNumber(block, 329, 8, "devmajor", offset),
    devminor: parseNumber(block, 337, 8, "devminor", offset),
    xattrs: {},
    pax: {},
  };
}

/** Parses PAX records `"<length> <key>=<value>\n"`; values stay bytes (xattrs may be binary). */
function parsePax(bytes: Uint8Array, offset: number): Map<string, Uint8Array<ArrayBuffer>> {
  const records = new Map<string, Uint8Array<ArrayBuffer>>();
  let pos = 0;
  while (pos < bytes.length) {
    if (bytes[pos] === 0) break; // some writers pad the record block with NULs
    let length = 0;
    let i = pos;
    while (i < bytes.length && bytes[i] >= 0x30 && bytes[i] <= 0x39) {
      length = length * 10 + bytes[i++] - 0x30;
    }
    const end = pos + length;
    if (i === pos || bytes[i] !== 0x20 || end > bytes.length || bytes[end - 1] !== 0x0a) {
      throw new CorruptContentError(
        `invalid tar archive: malformed PAX record at offset ${offset}`,
      );
    }
    const eq = bytes.indexOf(0x3d, i + 1);
    if (eq < 0 || eq >= end) {
      throw new CorruptContentError(
        `invalid tar archive: malformed PAX record at offset ${offset}`,
      );
    }
    const key = decoder.decode(bytes.subarray(i + 1, eq));
    records.set(key, bytes.slice(eq + 1, end - 1));
    pos = end;
  }
  return records;
}

function paxNumber(value: string, key: string, offset: number): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new CorruptContentError(
      `invalid tar archive: PAX ${key} ${
        JSON.stringify(value)
      } at offset ${offset} is not a number`,
    );
  }
  return n;
}

function applyPax(header: TarHeader, records: Map<string, Uint8Array>, offset: number): void {
  for (const [key, raw] of records) {
    if (key.startsWith("SCHILY.xattr.")) {
      header.xattrs[key.slice("SCHILY.xattr.".length)] = raw.slice();
      continue;
    }
    const value = decoder.decode(raw);
    header.pax[key] = value;
    if (value === "") continue; // an empty local record restores the header's own value
    switch (key) {
      case "path":
        header.name = value;
        break;
      case "linkpath":
        header.linkname = value;
        break;
      case "size":
        header.size = paxNumber(value, key, offset);
        if (!Number.isSafeInteger(header.size) || header.size < 0) {
          throw new CorruptContentError(
            `invalid tar archive: PAX size ${value} at offset ${offset}`,
          );
        }
        break;
      case "uid":
        header.uid = paxNumber(value, key, offset);
        break;
      case "gid":
        header.gid = paxNumber(value, key, offset);
        break;
      case "uname":
        header.uname = value;
        break;
      case "gname":
        header.gname = value;
        break;
      case "mtime":
        header.mtime = paxNumber(value, key, offset);
        break;
      case "atime":
        header.atime = paxNumber(value, key, offset);
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

/** The header fields of an entry to write; everything but `name` has a default. */
export interface TarWriteHeader {
  /** Path inside the archive; a trailing `/` is added to directories. */
  name: string;
  /** Entry type (default `"directory"` when the name ends in `/`, else `"file"`). */
  type?: Exclude<TarEntryType, "other">;
  /** Permission bits (default 0o755 for directories, 0o644 otherwise). */
  mode?: number;
  /** Owner user id (default 0). */
  uid?: number;
  /** Owner group id (default 0). */
  gid?: number;
  /** Owner user name (default empty). */
  uname?: string;
  /** Owner group name (default empty). */
  gname?: string;
  /** Body size in bytes; required for a stream body, taken from a byte body otherwise. */
  size?: number;
  /** Modification time in seconds since the epoch, or a Date (default 0). */
  mtime?: number | Date;
  /** Symlink target or hardlink source path. */
  linkname?: string;
  /** Device major number. */
  devmajor?: number;
  /** Device minor number. */
  devminor?: number;
  /** Extended attributes, written as `SCHILY.xattr.*` PAX records. */
  xattrs?: Record<string, Uint8Array | string>;
  /** Extra PAX records written verbatim. */
  pax?: Record<string, string>;
}

/** One entry to write. */
export interface TarWriteEntry {
  /** The entry's header. */
  header: TarWriteHeader;
  /** The entry's data (regular files only). */
  body?: Uint8Array | ReadableStream<Uint8Array>;
}

const TYPEFLAGS: Record<Exclude<TarEntryType, "other">, number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  "char-device": 0x33,
  "block-device": 0x34,
  directory: 0x35,
  fifo: 0x36,
};

/**
 * Writes entries as a tar archive. Bodies are passed through as they arrive; a body whose length
 * differs from the header's size makes the stream error. The archive ends with two zero blocks.
 */
export function writeTar(
  entries: Iterable<TarWriteEntry> | AsyncIterable<TarWriteEntry>,
): ReadableStream<Uint8Array> {
  return ReadableStream.from(generateTar(entries));
}

async function* generateTar(
  entries: Iterable<TarWriteEntry> | AsyncIterable<TarWriteEntry>,
): AsyncGenerator<Uint8Array> {
  for await (const entry of entries) {
    const header = entry.header;
    const type = header.type ?? (header.name.endsWith("/") ? "directory" : "file");
    const body = entry.body;
    let size = header.size ?? (body instanceof Uint8Array ? body.length : 0);
    if (type !== "file") {
      if (body !== undefined && !(body instanceof Uint8Array && body.length === 0)) {
        throw new InvalidArgumentError(
          `cannot write tar entry ${header.name}: a ${type} has no body`,
        );
      }
      size = 0;
    } else if (body === undefined && size !== 0) {
      throw new InvalidArgumentError(
        `cannot write tar entry ${header.name}: size ${size} but no body`,
      );
    } else if (body instanceof Uint8Array && body.length !== size) {
      throw new InvalidArgumentError(
        `cannot write tar entry ${header.name}: header size ${size}, body has ${body.length} bytes`,
      );
    }
    yield encodeHeader(header, type, size);
    if (body instanceof Uint8Array) {
      if (body.length > 0) yield body;
    } else if (body) {
      let written = 0;
      for await (const chunk of body) {
        written += chunk.length;
        if (written > size) {
          throw new InvalidArgumentError(
            `cannot write tar entry ${header.name}: body is longer than its size ${size}`,
          );
        }
        yield chunk;
      }
      if (written !== size) {
        throw new InvalidArgumentError(
          `cannot write tar entry ${header.name}: body has ${written} bytes, header size ${size}`,
        );
      }
    }
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (padding > 0) yield new Uint8Array(padding);
  }
  yield new Uint8Array(BLOCK * 2);
}

/** Encodes one entry's header blocks: a PAX header first when ustar cannot hold everything. */
function encodeHeader(
  header: TarWriteHeader,
  type: Exclude<TarEntryType, "other">,
  size: number,
): Uint8Array<ArrayBuffer> {
  const pax: [string, Uint8Array][] = [];
  const addPax = (key: string, value: string | Uint8Array) =>
    pax.push([key, typeof value === "string" ? encoder.encode(value) : value]);

  let name = header.name;
  if (type === "directory" && !name.endsWith("/")) name += "/";
  const nameBytes = encoder.encode(name);
  let nameField: Uint8Array = nameBytes;
  let prefixField: Uint8Array = new Uint8Array(0);
  if (nameBytes.length > 100 || !isAscii(nameBytes)) {
    const split = splitUstarName(nameBytes);
    if (split && isAscii(nameBytes)) [prefixField, nameField] = split;
    else {
      addPax("path", name);
      nameField = nameBytes.subarray(0, 100);
    }
  }
  const linkBytes = encoder.encode(header.linkname ?? "");
  let linkField = linkBytes;
  if (linkBytes.length > 100 || !isAscii(linkBytes)) {
    addPax("linkpath", header.linkname ?? "");
    linkField = linkBytes.subarray(0, 100);
  }
  const uid = header.uid ?? 0;
  const gid = header.gid ?? 0;
  const mtimeValue = header.mtime instanceof Date
    ? header.mtime.getTime() / 1000
    : header.mtime ?? 0;
  const mtime = Math.floor(mtimeValue);
  const fits = (value: number, digits: number) =>
    Number.isInteger(value) && value >= 0 && value < Math.pow(8, digits);
  if (!fits(size, 11)) addPax("size", String(size));
  if (!fits(uid, 7)) addPax("uid", String(uid));
  if (!fits(gid, 7)) addPax("gid", String(gid));
  if (mtime !== mtimeValue || !fits(mtime, 11)) addPax("mtime", formatPaxTime(mtimeValue));
  const uname = encoder.encode(header.uname ?? "");
  const gname = encoder.encode(header.gname ?? "");
  if (uname.length > 32 || !isAscii(uname)) addPax("uname", header.uname ?? "");
  if (gname.length > 32 || !isAscii(gname)) addPax("gname", header.gname ?? "");
  for (const [key, value] of Object.entries(header.xattrs ?? {})) {
    addPax(`SCHILY.xattr.${key}`, value);
  }
  for (const [key, value] of Object.entries(header.pax ?? {})) addPax(key, value);

  const block = new Uint8Array(BLOCK);
  block.set(nameField, 0);
  writeOctal(block, 100, 8, (header.mode ?? (type === "directory" ? 0o755 : 0o644)) & 0o7777);
  writeOctal(block, 108, 8, fits(uid, 7) ? uid : 0);
  writeOctal(block, 116, 8, fits(gid, 7) ? gid : 0);
  writeOctal(block, 124, 12, fits(size, 11) ? size : 0);
  writeOctal(block, 136, 12, fits(mtime, 11) ? mtime : 0);
  block[156] = TYPEFLAGS[type];
  block.set(linkField, 157);
  block.set(encoder.encode("ustar\x0000"), 257);
  block.set(uname.subarray(0, 32), 265);
  block.set(gname.subarray(0, 32), 297);
  writeNumber(block, 329, 8, header.devmajor ?? 0);
  writeNumber(block, 337, 8, header.devminor ?? 0);
  block.set(prefixField, 345);
  writeChecksum(block);
  if (pax.length === 0) return block;

  const records = encodePax(pax);
  const paxPadding = (BLOCK - (records.length % BLOCK)) % BLOCK;
  const out = new Uint8Array(BLOCK + records.length + paxPadding + BLOCK);
  const paxHeader = out.subarray(0, BLOCK);
  const base = name.replace(/\/+$/, "").split("/").pop() ?? "";
  const paxName = encoder.encode(`PaxHeaders/${base.replace(/[^\x20-\x7e]/g, "_")}`).subarray(
    0,
    100,
  );
  paxHeader.set(paxName, 0);
  writeOctal(paxHeader, 100, 8, 0o644);
  writeOctal(paxHeader, 108, 8, 0);
  writeOctal(paxHeader, 116, 8, 0);
  writeOctal(paxHeader, 124, 12, records.length);
  writeOctal(paxHeader, 136, 12, fits(mtime, 11) ? mtime : 0);
  paxHeader[156] = 0x78; // 'x'
  paxHeader.set(encoder.encode("ustar\x0000"), 257);
  writeChecksum(paxHeader);
  out.set(records, BLOCK);
  out.set(block, BLOCK + records.length + paxPadding);
  return out;
}

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] > 127) return false;
  return true;
}

/** Splits a long name into ustar prefix (≤ 155) and name (≤ 100) at a slash, if possible. */
function splitUstarName(bytes: Uint8Array): [Uint8Array, Uint8Array] | undefined {
  if (bytes.length > 256) return undefined;
  for (let i = Math.max(0, bytes.length - 101); i < Math.min(bytes.length, 156); i++) {
    if (bytes[i] === 0x2f && i > 0 && bytes.length - i - 1 <= 100 && bytes.length - i - 1 > 0) {
      return [bytes.subarray(0, i), bytes.subarray(i + 1)];
    }
  }
  return undefined;
}

function formatPaxTime(seconds: number): string {
  if (Number.isInteger(seconds)) return String(seconds);
  // Keep nanosecond precision at most and drop trailing zeros.
  return seconds.toFixed(9).replace(/0+$/, "").replace(/\.$/, "");
}

function encodePax(records: [string, Uint8Array][]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [key, value] of records) {
    const keyBytes = encoder.encode(key);
    const rest = 1 + keyBytes.length + 1 + value.length + 1; // " key=value\n"
    let length = rest + String(rest).length;
    if (String(length).length !== String(rest).length) length = rest + String(length).length;
    const record = new Uint8Array(length);
    const prefix = encoder.encode(`${length} `);
    record.set(prefix, 0);
    record.set(keyBytes, prefix.length);
    record[prefix.length + keyBytes.length] = 0x3d;
    record.set(value, prefix.length + keyBytes.length + 1);
    record[length - 1] = 0x0a;
    parts.push(record);
  }
  return concatBytes(parts);
}

function writeOctal(block: Uint8Array, start: number, length: number, value: number): void {
  const text = value.toString(8).padStart(length - 1, "0");
  for (let i = 0; i < length - 1; i++) block[start + i] = text.charCodeAt(i);
  block[start + length - 1] = 0;
}

/** Octal when it fits, else base-256 (devices with large numbers). */
function writeNumber(block: Uint8Array, start: number, length: number, value: number): void {
  if (value >= 0 && value < Math.pow(8, length - 1)) return writeOctal(block, start, length, value);
  let v = value;
  for (let i = start + length - 1; i > start; i--) {
    block[i] = v % 256;
    v = Math.floor(v / 256);
  }
  block[start] = 0x80;
}

function writeChecksum(block: Uint8Array): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i];
  const text = sum.toString(8).padStart(6, "0");
  for (let i = 0; i < 6; i++) block[148 + i] = text.charCodeAt(i);
  block[154] = 0;
  block[155] = 0x20;
}
