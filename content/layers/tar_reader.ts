/**
 * A streaming tar reader over Web Streams.
 *
 * It understands ustar, GNU long names and long link names (`L`, `K`), PAX extended
 * headers (`x`) including `SCHILY.xattr.*`, global headers (`g`: their times, owner names and
 * comments apply to later entries, nothing else), and base-256 numeric fields. It reads the
 * entries Go's archive/tar reads from the same bytes (entries without data skip no declared
 * size), refuses numbers that are negative or too large (ids past 32 bits), and bounds the
 * metadata it holds in memory ({@link ReadTarOptions.maxMetadataSize}).
 * It never buffers a whole archive: entries are yielded one at a time and each entry's body is
 * handed out as views into the chunks the source produced, without copying.
 *
 * @example
 * ```ts
 * import { readTar } from "./tar_reader.ts";
 * import { writeTar } from "./tar_writer.ts";
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
import { CorruptContentError, UnsupportedError } from "../errors.ts";

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
  /**
   * Every PAX record that applied to this entry (local ones, and the global ones that apply:
   * `mtime`, `atime`, `uname`, `gname`, `comment`, `charset`), values as text.
   */
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
  /**
   * Largest PAX or GNU long-name record accepted, in bytes, and the most that global PAX records
   * may hold together (default 1 MiB each): past them a layer's metadata is too large.
   */
  maxMetadataSize?: number;
}

/** The tar block size: headers and padded bodies are multiples of it. */
export const BLOCK = 512;
const decoder = new TextDecoder();
/** The largest uid, gid, mode or device number: 32 bits, and `(uid_t)-1` means "no change". */
const MAX_ID = 0xfffffffe;

/**
 * The global PAX records that apply to the entries after them: times, owner names and comments.
 * The others (`size`, `path`, `linkpath`, `uid`, `gid`, `SCHILY.xattr.*`, ...) are counted and
 * ignored: Go's archive/tar, and so containerd and Docker, apply no global record at all, and a
 * global size, name, owner id or capability would unpack another tree than the runtime does
 * from the same bytes (and one xattr set on every file of the layer).
 */
const GLOBAL_KEYS = new Set(["mtime", "atime", "uname", "gname", "comment", "charset"]);

/** Entry types that carry no data, whatever size their header declares (as in Go's reader). */
const HEADER_ONLY = new Set<TarEntryType>([
  "link",
  "symlink",
  "char-device",
  "block-device",
  "directory",
  "fifo",
]);

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
  /** The size of every global record in force, key and value: bounded by the metadata limit. */
  readonly #globalSizes: Map<string, number> = new Map();
  /** Bytes the global records hold together. */
  #globalBytes = 0;
  /** The global records that apply to entries ({@link GLOBAL_KEYS}), decoded once. */
  #globalValues: Record<string, string> = {};
  /**
   * Those records applied to an empty header, worked out when a global header comes: each entry
   * takes its few fields and shares its small PAX map (copied only by an entry with records of
   * its own). Nothing here grows with the size of the global records, so both many entries
   * under one large global record and many global headers stay linear.
   */
  #globalPatch: Partial<TarHeader> | undefined;

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

  /**
   * Skips the rest of the current body and its padding. The data must all be there; the padding
   * of the last entry may be missing, as older umoci and stacker wrote layers without it (and
   * without the end-of-archive blocks): the layer's digest still decides whether it is whole.
   */
  async #skipBody(): Promise<void> {
    for (const part of ["data", "padding"] as const) {
      if (part === "padding") {
        this.#remaining = this.#padding;
        this.#padding = 0;
      }
      while (this.#remaining > 0) {
        if (!(await this.#fill())) {
          if (part === "padding") return void (this.#remaining = 0);
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
  }

  /** Reads a whole (small) body into memory: PAX records and GNU long names. */
  async #readSmallBody(size: number, what: string): Promise<Uint8Array<ArrayBuffer>> {
    if (size > this.#maxMetadata) {
      throw new CorruptContentError(
        `layer metadata too large: ${what} of ${size} bytes at offset ${this.#offset}, over the ` +
          `limit of ${this.#maxMetadata}`,
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
      const size = parseCount(block, 124, 12, "size", headerOffset);
      this.#remaining = size;
      this.#padding = (BLOCK - (size % BLOCK)) % BLOCK;
      switch (typeflag) {
        case "x":
          local = parsePax(await this.#readSmallBody(size, "PAX header"), headerOffset);
          continue;
        case "g":
          this.#setGlobals(
            parsePax(await this.#readSmallBody(size, "PAX header"), headerOffset),
            headerOffset,
          );
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
      if (this.#globalPatch) Object.assign(header, this.#globalPatch);
      // the shared PAX map is copied only for an entry that adds to it
      if (local) applyPax(header, local, headerOffset, this.#globalPatch !== undefined);
      if (header.typeflag === "\0" && header.name.endsWith("/")) header.type = "directory";
      if (HEADER_ONLY.has(header.type)) {
        // Hardlinks, symlinks, directories, devices and FIFOs have no data, whatever size they
        // declare: the next header follows at once, as Go's archive/tar (containerd, umoci,
        // buildkit) reads them. Skipping a declared size would unpack other entries than the
        // runtime does from the same bytes.
        header.size = 0;
      }
      this.#remaining = header.size;
      this.#padding = (BLOCK - (header.size % BLOCK)) % BLOCK;
      if (
        header.typeflag === "S" || header.pax["GNU.sparse.major"] !== undefined ||
        header.pax["GNU.sparse.map"] !== undefined
      ) {
        throw new UnsupportedError(
          `cannot read sparse tar entry ${header.name}: sparse files are not supported`,
        );
      }
      this.#current = new Entry(header, this);
      return this.#current;
    }
  }

  /**
   * Merges a global PAX header into the records later entries start from. Only
   * {@link GLOBAL_KEYS} apply to entries; every record counts against the metadata limit.
   */
  #setGlobals(records: Map<string, Uint8Array<ArrayBuffer>>, offset: number): void {
    let values: Record<string, string> | undefined;
    for (const [key, value] of records) {
      this.#globalBytes -= this.#globalSizes.get(key) ?? 0;
      if (value.length === 0) this.#globalSizes.delete(key);
      else {
        this.#globalSizes.set(key, key.length + value.length);
        this.#globalBytes += key.length + value.length;
      }
      if (!GLOBAL_KEYS.has(key)) continue;
      // copied, not changed: entries read before share the old map (a few keys, strings shared)
      values ??= { ...this.#globalValues };
      if (value.length === 0) delete values[key];
      else {
        values[key] = decoder.decode(value);
        if (key === "mtime" || key === "atime") paxNumber(values[key], key, offset); // checked once
      }
    }
    if (this.#globalBytes > this.#maxMetadata) {
      throw new CorruptContentError(
        `layer metadata too large: global PAX records of ${this.#globalBytes} bytes at offset ` +
          `${offset}, over the limit of ${this.#maxMetadata}`,
      );
    }
    if (!values) return;
    this.#globalValues = values;
    const { mtime, atime, uname, gname } = values;
    const patch: Partial<TarHeader> = { pax: values };
    if (mtime !== undefined) patch.mtime = Number(mtime);
    if (atime !== undefined) patch.atime = Number(atime);
    if (uname !== undefined) patch.uname = uname;
    if (gname !== undefined) patch.gname = gname;
    this.#globalPatch = Object.keys(values).length === 0 ? undefined : patch;
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
        `invalid tar header at offset ${offset}${entryOf(block)}: ${field} out of range`,
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
        `invalid tar header at offset ${offset}${entryOf(block)}: ${field} is not an octal number`,
      );
    }
    value = value * 8 + (c - 0x30);
  }
  return value;
}

/**
 * A numeric field that counts something (a size, an id, a mode): never negative, whatever a
 * base-256 field says (a negative size would step the reader back onto the same header
 * forever), and at most `max` (an id past 32 bits would wrap to another owner, root included).
 */
function parseCount(
  block: Uint8Array,
  start: number,
  length: number,
  field: string,
  offset: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = parseNumber(block, start, length, field, offset);
  if (value < 0 || value > max) {
    throw new CorruptContentError(
      `invalid tar header at offset ${offset}${entryOf(block)}: ${
        value < 0 ? "negative" : "out of range"
      } ${field} ${value}`,
    );
  }
  return value;
}

/** `" (entry NAME)"` for errors about a header block, from its name field. */
function entryOf(block: Uint8Array): string {
  const name = cString(block, 0, 100);
  return name === "" ? "" : ` (entry ${JSON.stringify(name)})`;
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
    mode: parseCount(block, 100, 8, "mode", offset, MAX_ID) & 0o7777,
    uid: parseCount(block, 108, 8, "uid", offset, MAX_ID),
    gid: parseCount(block, 116, 8, "gid", offset, MAX_ID),
    size: parseCount(block, 124, 12, "size", offset),
    mtime: parseNumber(block, 136, 12, "mtime", offset),
    linkname: cString(block, 157, 100),
    uname: cString(block, 265, 32),
    gname: cString(block, 297, 32),
    devmajor: parseCount(block, 329, 8, "devmajor", offset, MAX_ID),
    devminor: parseCount(block, 337, 8, "devminor", offset, MAX_ID),
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

/**
 * A PAX number: a decimal count (`size`; `uid` and `gid`, at most 32 bits) or a time (seconds,
 * with a fraction).
 */
function paxNumber(value: string, key: string, offset: number): number {
  const count = key === "size" || key === "uid" || key === "gid";
  const n = Number(value);
  if (!(count ? /^\d+$/ : /^-?\d+(\.\d+)?$/).test(value) || !Number.isSafeInteger(Math.trunc(n))) {
    throw new CorruptContentError(
      `invalid tar archive: PAX ${key} ${
        JSON.stringify(value.length > 40 ? value.slice(0, 40) + "..." : value)
      } at offset ${offset} is not a number`,
    );
  }
  if ((key === "uid" || key === "gid") && n > MAX_ID) {
    throw new CorruptContentError(
      `invalid tar archive: PAX ${key} ${value} at offset ${offset} is out of range`,
    );
  }
  return n;
}

function applyPax(
  header: TarHeader,
  records: Map<string, Uint8Array>,
  offset: number,
  shared: boolean,
): void {
  // the xattr and PAX maps may be the global records' own: copied before they change
  let copied = !shared;
  const own = () => {
    if (copied) return;
    header.xattrs = { ...header.xattrs };
    header.pax = { ...header.pax };
    copied = true;
  };
  for (const [key, raw] of records) {
    own();
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
