/**
 * A streaming tar writer over Web Streams: ustar headers, with a PAX header for whatever ustar
 * cannot hold (long or non-ASCII names, large sizes and ids, fractional times, extended
 * attributes). Bodies are streamed, never held whole.
 *
 * @example
 * ```ts
 * import { writeTar } from "./tar_writer.ts";
 * const archive = writeTar([
 *   { header: { name: "hello.txt" }, body: new TextEncoder().encode("hello\n") },
 * ]);
 * // a header block, the body padded to a block, and the two end blocks
 * console.assert((await new Response(archive).arrayBuffer()).byteLength === 4 * 512);
 * ```
 *
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import { concatBytes } from "../internal/bytes.ts";
import { BLOCK, type TarEntryType } from "./tar_reader.ts";

const encoder = new TextEncoder();

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
