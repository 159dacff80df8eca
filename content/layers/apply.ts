/**
 * Unpacking image layers into a root filesystem, and whole images into runtime bundles.
 *
 * {@link applyLayer} applies one uncompressed layer (a tar stream) with OCI layer semantics:
 * whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`) remove what lower layers put
 * there; an entry replaces whatever was at its path (a file replaces a directory and the reverse),
 * and directories merge. Hardlinks, symlinks, FIFOs, device nodes (root only, skipped with a
 * warning otherwise), modes with setuid/setgid/sticky, owners (root only), mtimes (directories
 * after their contents) and extended attributes are restored. Directories without write
 * permission still unpack: they stay owner-writable until the layer ends.
 *
 * Safety: nothing outside the rootfs is created or changed. Every path is checked component by
 * component with `lstat` inside the rootfs and nothing is ever followed through a symlink:
 * - names with a `..` component are refused;
 * - absolute names are taken relative to the rootfs (the leading `/` is dropped, as tar,
 *   containerd and umoci do), with one warning per layer;
 * - an entry (or whiteout, or hardlink target) whose parent path crosses a symlink is refused,
 *   whether the symlink came from an earlier entry, an earlier layer or was there before, and
 *   wherever it points: layer producers never write through symlinks;
 * - existing files are unlinked before they are replaced, never written through, and new files
 *   are created exclusively, so a symlink at the final component is never followed.
 * A refused entry throws {@link UnsafeEntryError} naming it. The checks assume nothing else
 * changes the rootfs while a layer is applied.
 *
 * Extended attributes: Deno has no xattr API, so they are set with `lsetxattr` through FFI on
 * the C library. Without `--allow-ffi`, or where the filesystem refuses one, the attribute is
 * skipped with a warning (once per layer and attribute name). FIFOs and device nodes use `mknod`
 * the same way.
 *
 * @example
 * ```ts
 * import { applyLayer } from "./apply.ts";
 * import { writeTar } from "./tar_writer.ts";
 * const rootfs = await Deno.makeTempDir();
 * await applyLayer(rootfs, writeTar([{ header: { name: "etc/", type: "directory" } }]));
 * await Deno.remove(rootfs, { recursive: true });
 * ```
 *
 * @module
 */
import { readTar, type TarEntry, type TarHeader } from "./tar_reader.ts";
import { decompress } from "./decompress.ts";
import { type Digest, digestAlgorithm, Digester, parseDigest, shortDigest } from "../digest.ts";
import { isIndexType, isManifestType } from "../descriptor.ts";
import {
  AlreadyExistsError,
  CorruptContentError,
  DigestMismatchError,
  DistError,
  InvalidArgumentError,
  LockedError,
  NotFoundError,
  UnsafeEntryError,
  UnsupportedError,
} from "../errors.ts";
import { errnoName, S_IFBLK, S_IFCHR, S_IFIFO, syscalls } from "./_syscalls.ts";
import { type ImageConfig, writeRuntimeConfig } from "../bundle/runtime_spec.ts";

/** Options for {@link applyLayer}. */
export interface ApplyLayerOptions {
  /** Receives warnings: skipped device nodes and xattrs, stripped absolute names, odd entries. */
  onWarning?: (message: string) => void;
  /** Give entries the archive's owners (default: when running as root). */
  sameOwner?: boolean;
  /** Restore extended attributes (default true). */
  xattrs?: boolean;
  /** Stops between entries. */
  signal?: AbortSignal;
}

/** What {@link applyLayer} did. */
export interface ApplyLayerResult {
  /** Archive entries processed, whiteouts included. */
  entries: number;
  /** Bytes written into regular files. */
  bytes: number;
}

/** Final metadata of a directory, applied when the layer ends. */
interface DirMeta {
  mode: number;
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
  /** Only the mode is restored: a lower layer's directory made writable for this layer. */
  restoreOnly: boolean;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

/**
 * Applies one uncompressed layer to `rootfs` (created when missing) and returns counts. The
 * stream is read to its end, so a digest check placed in front of it sees every byte.
 */
export async function applyLayer(
  rootfs: string,
  layer: ReadableStream<Uint8Array>,
  options: ApplyLayerOptions = {},
): Promise<ApplyLayerResult> {
  await Deno.mkdir(rootfs, { recursive: true });
  const info = await Deno.stat(rootfs); // the caller's choice: a symlink to a directory is fine
  if (!info.isDirectory) {
    throw new InvalidArgumentError(`cannot unpack into ${rootfs}: not a directory`);
  }
  const applier = new LayerApplier(rootfs.replace(/\/+$/, "") || "/", options, await nodeCalls());
  const result: ApplyLayerResult = { entries: 0, bytes: 0 };
  for await (const entry of readTar(layer)) {
    options.signal?.throwIfAborted();
    result.entries++;
    result.bytes += await applier.apply(entry);
  }
  applier.finish();
  return result;
}

/** Applies entries of one layer; holds the caches that make path checks cheap. */
class LayerApplier {
  readonly #root: string;
  readonly #warn: (message: string) => void;
  readonly #sameOwner: boolean;
  readonly #xattrs: boolean;
  readonly #privileged: boolean;
  readonly #uid: number;
  readonly #gid: number;
  readonly #umask: number;
  /** Relative paths known to be real directories (not symlinks) inside the rootfs; "" is root. */
  readonly #dirs = new Set<string>([""]);
  /** Paths this layer created, which its own whiteouts must leave alone. */
  readonly #layerPaths = new Set<string>();
  /** Directory metadata to apply at the end, in creation order. */
  readonly #pendingDirs = new Map<string, DirMeta>();
  readonly #warned = new Set<string>();

  readonly #nodeCalls: NodeCalls;

  constructor(root: string, options: ApplyLayerOptions, node: NodeCalls) {
    this.#root = root;
    this.#nodeCalls = node;
    const onWarning = options.onWarning;
    this.#warn = (message) => onWarning?.(message);
    this.#uid = Deno.uid() ?? 0;
    this.#gid = Deno.gid() ?? 0;
    this.#privileged = this.#uid === 0;
    this.#sameOwner = options.sameOwner ?? this.#privileged;
    this.#xattrs = options.xattrs ?? true;
    this.#umask = node.umask();
  }

  /** Warns once per key and layer. */
  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#warn(message);
  }

  /** Applies one entry; returns the number of file bytes written. */
  async apply(entry: TarEntry): Promise<number> {
    const header = entry.header;
    const rel = this.#clean(header.name, header.name);
    const slash = rel.lastIndexOf("/");
    const parent = slash < 0 ? "" : rel.slice(0, slash);
    const base = slash < 0 ? rel : rel.slice(slash + 1);

    if (base.startsWith(WHITEOUT)) {
      this.#whiteout(header.name, parent, base);
      return 0;
    }
    if (rel === "") {
      if (header.type !== "directory") {
        throw new UnsafeEntryError(
          `refusing layer entry ${
            JSON.stringify(header.name)
          }: a ${header.type} cannot replace the rootfs`,
        );
      }
      this.#pendingDirs.set("", this.#dirMeta(header));
      return 0;
    }
    this.#ensureDir(parent, header.name, true);
    const abs = `${this.#root}/${rel}`;
    this.#layerPaths.add(rel);
    try {
      switch (header.type) {
        case "file":
          return await this.#file(entry, rel, abs);
        case "directory":
          this.#directory(header, rel, abs);
          return 0;
        case "symlink":
          this.#symlink(header, rel, abs);
          return 0;
        case "link":
          this.#hardlink(header, rel, abs);
          return 0;
        case "fifo":
        case "char-device":
        case "block-device":
          this.#node(header, rel, abs);
          return 0;
        default:
          this.#layerPaths.delete(rel);
          this.#warn(
            `skipped layer entry ${JSON.stringify(header.name)}: unsupported tar type ${
              JSON.stringify(header.typeflag)
            }`,
          );
          return 0;
      }
    } catch (error) {
      // Give system errors the entry's name; our own errors name it already.
      if (error instanceof Error && !(error instanceof DistError)) {
        error.message = `cannot unpack ${JSON.stringify(header.name)}: ${error.message}`;
      }
      throw error;
    }
  }

  /**
   * Turns an entry name into a clean path relative to the rootfs: no leading `/`, no `.` or
   * empty components, no trailing `/`. Refuses `..`.
   */
  #clean(name: string, entryName: string): string {
    let path = name;
    if (path.startsWith("/")) {
      this.#warnOnce(
        "absolute",
        `layer has absolute entry names such as ${
          JSON.stringify(name)
        }: unpacking them relative to the rootfs`,
      );
    }
    // Fast path for the usual "a/b/c" or "a/b/" forms.
    if (path.endsWith("/")) path = path.replace(/\/+$/, "");
    if (path.startsWith("./")) path = path.slice(2);
    if (
      !path.startsWith("/") && !path.includes("//") && !path.includes("./") && path !== "." &&
      path !== ".." && !path.endsWith("/..") && !path.endsWith("/.")
    ) {
      return path;
    }
    const parts: string[] = [];
    for (const part of path.split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") {
        throw new UnsafeEntryError(
          `refusing layer entry ${JSON.stringify(entryName)}: ".." in ${
            JSON.stringify(name)
          } could leave the rootfs`,
        );
      }
      parts.push(part);
    }
    return parts.join("/");
  }

  /**
   * Makes sure `rel` is a real directory inside the rootfs, checking each component with lstat
   * and creating missing ones when `create` (else returns false for a missing one). A symlink
   * on the way is refused, so nothing is ever reached through a link.
   */
  #ensureDir(rel: string, entryName: string, create: boolean): boolean {
    if (this.#dirs.has(rel)) return true;
    const parts = rel.split("/");
    let prefix = "";
    for (let i = 0; i < parts.length; i++) {
      prefix = i === 0 ? parts[0] : `${prefix}/${parts[i]}`;
      if (this.#dirs.has(prefix)) continue;
      const abs = `${this.#root}/${prefix}`;
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(abs);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
        if (!create) return false;
        // A parent the layer did not list: created like tar and umoci do, 0755.
        Deno.mkdirSync(abs);
        Deno.chmodSync(abs, 0o755);
        this.#dirs.add(prefix);
        this.#layerPaths.add(prefix);
        continue;
      }
      if (info.isSymlink) {
        throw new UnsafeEntryError(
          `refusing layer entry ${JSON.stringify(entryName)}: its parent ${
            JSON.stringify(prefix)
          } is a symlink`,
        );
      }
      if (!info.isDirectory) {
        throw new UnsupportedError(
          `cannot unpack layer entry ${JSON.stringify(entryName)}: its parent ${
            JSON.stringify(prefix)
          } is not a directory`,
        );
      }
      this.#makeWritable(prefix, abs, info);
      this.#dirs.add(prefix);
    }
    return true;
  }

  /**
   * A lower layer's directory without owner write or search permission is opened up until the
   * layer ends (decided by the mode, not the uid: root without capabilities needs it too).
   */
  #makeWritable(rel: string, abs: string, info: Deno.FileInfo): void {
    const mode = (info.mode ?? 0o755) & 0o7777;
    if ((mode & 0o700) === 0o700) return;
    Deno.chmodSync(abs, mode | 0o700);
    if (!this.#pendingDirs.has(rel)) {
      this.#pendingDirs.set(rel, { mode, uid: 0, gid: 0, atime: 0, mtime: 0, restoreOnly: true });
    }
  }

  /** Removes whatever is at `rel` (a whole tree for a directory) without following symlinks. */
  #remove(rel: string, abs: string): void {
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(abs);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    if (!info.isDirectory) {
      Deno.removeSync(abs);
      return;
    }
    this.#forget(rel);
    try {
      Deno.removeSync(abs, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
      openUp(abs); // read-only directories inside (not root): make them writable, then retry
      Deno.removeSync(abs, { recursive: true });
    }
  }

  /** Drops cached knowledge about a directory tree that is going away. */
  #forget(rel: string): void {
    const prefix = rel + "/";
    for (const dir of this.#dirs) if (dir === rel || dir.startsWith(prefix)) this.#dirs.delete(dir);
    for (const dir of this.#pendingDirs.keys()) {
      if (dir === rel || dir.startsWith(prefix)) this.#pendingDirs.delete(dir);
    }
  }

  #whiteout(name: string, parent: string, base: string): void {
    if (base === OPAQUE) {
      this.#opaque(name, parent);
      return;
    }
    const target = base.slice(WHITEOUT.length);
    if (target.startsWith(WHITEOUT)) {
      // Other `.wh..wh.` names are aufs bookkeeping (hard link directories and the like).
      this.#warnOnce(`meta:${base}`, `skipped layer entry ${JSON.stringify(name)}: aufs metadata`);
      return;
    }
    if (target === "" || target === "." || target === "..") {
      throw new UnsafeEntryError(
        `refusing layer entry ${JSON.stringify(name)}: whiteout of ${JSON.stringify(target)}`,
      );
    }
    const rel = parent === "" ? target : `${parent}/${target}`;
    // A whiteout hides lower layers only; what this layer already wrote stays.
    if (this.#layerPaths.has(rel)) return;
    if (!this.#ensureDir(parent, name, false)) return;
    this.#remove(rel, `${this.#root}/${rel}`);
  }

  /** Removes everything in `dir` that lower layers put there, keeping this layer's entries. */
  #opaque(name: string, dir: string): void {
    if (!this.#ensureDir(dir, name, true)) return;
    const keep = new Set<string>();
    const prefix = dir === "" ? "" : dir + "/";
    for (const path of this.#layerPaths) {
      if (!path.startsWith(prefix)) continue;
      // Keep the path and every directory between it and `dir`.
      let p = path;
      while (p.length > prefix.length && !keep.has(p)) {
        keep.add(p);
        const slash = p.lastIndexOf("/");
        if (slash < 0) break;
        p = p.slice(0, slash);
      }
    }
    const clear = (rel: string) => {
      const abs = rel === "" ? this.#root : `${this.#root}/${rel}`;
      for (const child of Deno.readDirSync(abs)) {
        const childRel = rel === "" ? child.name : `${rel}/${child.name}`;
        if (!keep.has(childRel)) this.#remove(childRel, `${this.#root}/${childRel}`);
        else if (child.isDirectory && !child.isSymlink) clear(childRel);
      }
    };
    clear(dir);
  }

  #dirMeta(header: TarHeader): DirMeta {
    return {
      mode: header.mode & 0o7777,
      uid: header.uid,
      gid: header.gid,
      atime: header.atime ?? header.mtime,
      mtime: header.mtime,
      restoreOnly: false,
    };
  }

  async #file(entry: TarEntry, rel: string, abs: string): Promise<number> {
    const header = entry.header;
    const mode = header.mode & 0o7777;
    let file: Deno.FsFile;
    const options = { write: true, createNew: true, mode: mode & 0o777 };
    try {
      file = Deno.openSync(abs, options);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      this.#remove(rel, abs);
      file = Deno.openSync(abs, options);
    }
    let written = 0;
    try {
      let piece: Uint8Array | null;
      while ((piece = await entry.read()) !== null) {
        let offset = 0;
        while (offset < piece.length) {
          offset += file.writeSync(offset === 0 ? piece : piece.subarray(offset));
        }
        written += piece.length;
      }
      const chowned = this.#chown(header, abs, false);
      // open() applied the umask; special bits and chown (which clears them) need a chmod.
      if (chowned || (mode & 0o7000) !== 0 || (mode & this.#umask) !== 0) Deno.chmodSync(abs, mode);
      this.#setXattrs(header, abs);
      file.utimeSync(header.atime ?? header.mtime, header.mtime);
    } finally {
      file.close();
    }
    return written;
  }

  #directory(header: TarHeader, rel: string, abs: string): void {
    try {
      Deno.mkdirSync(abs, { mode: 0o700 });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      const info = Deno.lstatSync(abs);
      if (info.isDirectory) {
        this.#makeWritable(rel, abs, info); // directories merge with the lower layer's
      } else {
        Deno.removeSync(abs);
        Deno.mkdirSync(abs, { mode: 0o700 });
      }
    }
    this.#dirs.add(rel);
    this.#setXattrs(header, abs);
    this.#pendingDirs.delete(rel); // keep creation order: parents before children
    this.#pendingDirs.set(rel, this.#dirMeta(header));
  }

  #symlink(header: TarHeader, rel: string, abs: string): void {
    try {
      Deno.symlinkSync(header.linkname, abs);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      this.#remove(rel, abs);
      Deno.symlinkSync(header.linkname, abs);
    }
    this.#chown(header, abs, true);
    this.#setXattrs(header, abs);
    this.#nodeCalls.lutimesSync(abs, header.atime ?? header.mtime, header.mtime);
  }

  #hardlink(header: TarHeader, rel: string, abs: string): void {
    const target = this.#clean(header.linkname, header.name);
    if (target === rel) return;
    const slash = target.lastIndexOf("/");
    const targetParent = slash < 0 ? "" : target.slice(0, slash);
    const targetAbs = `${this.#root}/${target}`;
    let info: Deno.FileInfo | undefined;
    if (target !== "" && this.#ensureDir(targetParent, header.name, false)) {
      try {
        info = Deno.lstatSync(targetAbs);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    if (!info) {
      throw new UnsupportedError(
        `cannot unpack hardlink ${JSON.stringify(header.name)}: its target ${
          JSON.stringify(header.linkname)
        } does not exist`,
      );
    }
    if (info.isDirectory) {
      throw new UnsafeEntryError(
        `refusing layer entry ${JSON.stringify(header.name)}: hardlink to directory ${
          JSON.stringify(header.linkname)
        }`,
      );
    }
    // link(2) does not follow a symlink target: the new name shares the link itself.
    try {
      Deno.linkSync(targetAbs, abs);
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      this.#remove(rel, abs);
      Deno.linkSync(targetAbs, abs);
    }
  }

  #node(header: TarHeader, rel: string, abs: string): void {
    const device = header.type !== "fifo";
    if (device && !this.#privileged) {
      this.#layerPaths.delete(rel);
      this.#warn(`skipped device node ${JSON.stringify(header.name)}: not running as root`);
      return;
    }
    const sys = syscalls();
    if (!sys) {
      this.#layerPaths.delete(rel);
      this.#warn(
        `skipped ${header.type} ${JSON.stringify(header.name)}: creating it needs --allow-ffi`,
      );
      return;
    }
    const type = header.type === "fifo"
      ? S_IFIFO
      : header.type === "char-device"
      ? S_IFCHR
      : S_IFBLK;
    const mode = header.mode & 0o7777;
    let errno = sys.mknod(abs, type | (mode & 0o777), header.devmajor, header.devminor);
    if (errno === 17) {
      this.#remove(rel, abs);
      errno = sys.mknod(abs, type | (mode & 0o777), header.devmajor, header.devminor);
    }
    if (errno === 1 && device) {
      // In a user namespace root may not create devices either.
      this.#layerPaths.delete(rel);
      this.#warn(`skipped device node ${JSON.stringify(header.name)}: mknod: EPERM`);
      return;
    }
    if (errno !== 0) throw new Error(`mknod: ${errnoName(errno)}`);
    this.#chown(header, abs, true);
    Deno.chmodSync(abs, mode);
    this.#setXattrs(header, abs);
    Deno.utimeSync(abs, header.atime ?? header.mtime, header.mtime);
  }

  /** Gives the entry the archive's owner when asked to and it differs; reports whether it did. */
  #chown(header: TarHeader, abs: string, noFollow: boolean): boolean {
    if (!this.#sameOwner || (header.uid === this.#uid && header.gid === this.#gid)) return false;
    if (noFollow) this.#nodeCalls.lchownSync(abs, header.uid, header.gid);
    else Deno.chownSync(abs, header.uid, header.gid);
    return true;
  }

  #setXattrs(header: TarHeader, abs: string): void {
    if (!this.#xattrs) return;
    for (const name in header.xattrs) {
      const sys = syscalls();
      if (!sys) {
        this.#warnOnce(
          "xattr-ffi",
          `skipped extended attributes (such as ${name} on ${
            JSON.stringify(header.name)
          }): setting them needs --allow-ffi`,
        );
        return;
      }
      const errno = sys.lsetxattr(abs, name, header.xattrs[name]);
      if (errno !== 0) {
        this.#warnOnce(
          `xattr:${name}`,
          `skipped extended attribute ${name} on ${JSON.stringify(header.name)}: ${
            errnoName(errno)
          }`,
        );
      }
    }
  }

  /** Applies deferred directory metadata, deepest (latest created) first. */
  finish(): void {
    const entries = [...this.#pendingDirs].reverse();
    for (const [rel, meta] of entries) {
      const abs = rel === "" ? this.#root : `${this.#root}/${rel}`;
      let info: Deno.FileInfo;
      try {
        info = Deno.lstatSync(abs);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) continue;
        throw error;
      }
      if (!info.isDirectory) continue;
      if (
        !meta.restoreOnly && this.#sameOwner && (info.uid !== meta.uid || info.gid !== meta.gid)
      ) {
        Deno.chownSync(abs, meta.uid, meta.gid);
      }
      Deno.chmodSync(abs, meta.mode);
      if (!meta.restoreOnly) Deno.utimeSync(abs, meta.atime, meta.mtime);
    }
  }
}

/** Makes every directory under `abs` owner-writable (no symlinks followed) so it can be removed. */
function openUp(abs: string): void {
  const info = Deno.lstatSync(abs);
  if (!info.isDirectory) return;
  Deno.chmodSync(abs, ((info.mode ?? 0) & 0o7777) | 0o700);
  for (const child of Deno.readDirSync(abs)) {
    if (child.isDirectory && !child.isSymlink) openUp(`${abs}/${child.name}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Whole images

/** Reads blobs by digest: a {@link Store} (content/store.ts) or anything with the same methods. */
export interface BlobReader {
  /** Opens a blob as a stream. */
  read(digest: Digest): Promise<ReadableStream<Uint8Array>>;
  /** Reads a small blob (manifest, config) into memory. */
  readBytes(digest: Digest, options?: { maxSize?: number }): Promise<Uint8Array>;
}

/** A step of {@link unpackImage}, for progress displays. */
export interface UnpackProgress {
  /** Index of the layer (0-based). */
  layer: number;
  /** Number of layers in the image. */
  layers: number;
  /** The layer blob's digest. */
  digest: Digest;
  /** `"start"` before a layer is applied, `"done"` after. */
  state: "start" | "done";
  /** Entries applied (with `"done"`). */
  entries?: number;
  /** File bytes written (with `"done"`). */
  bytes?: number;
}

/** Options for {@link unpackImage}. */
export interface UnpackImageOptions extends ApplyLayerOptions {
  /** Called before and after each layer. */
  onProgress?: (event: UnpackProgress) => void;
}

/** What {@link unpackImage} produced. */
export interface UnpackImageResult {
  /** The rootfs directory, `BUNDLE/rootfs`. */
  rootfs: string;
  /** The runtime config, `BUNDLE/config.json`. */
  config: string;
  /** The manifest that was unpacked. */
  manifest: Digest;
  /** Number of layers applied. */
  layers: number;
}

const MAX_JSON = 4 << 20;

interface ManifestJson {
  mediaType?: string;
  schemaVersion?: number;
  config?: { mediaType?: string; digest?: string };
  layers?: { mediaType?: string; digest?: string; size?: number }[];
  manifests?: unknown[];
}

/**
 * Unpacks the image whose manifest is `manifest` into a runtime bundle at `bundleDir`: applies
 * its layers in order into `bundleDir/rootfs`, checking each uncompressed layer against the
 * config's `rootfs.diff_ids`, then writes `bundleDir/config.json`. The bundle is locked meanwhile
 * and must be new (see {@link checkBundle}).
 *
 * Without a `rootfs`, the layers go into `bundleDir/.rootfs.partial`, renamed to `rootfs` once
 * all are in and verified; an empty `rootfs` (a mount point, say) is filled in place. On failure
 * nothing is left but what was there before (a `bundleDir` this call created is removed again).
 */
export async function unpackImage(
  store: BlobReader,
  manifest: Digest,
  bundleDir: string,
  options: UnpackImageOptions = {},
): Promise<UnpackImageResult> {
  await checkBundle(bundleDir); // a bundle that cannot be made fails before anything is read
  const manifestJson = parseJson<ManifestJson>(
    await store.readBytes(manifest, { maxSize: MAX_JSON }),
    `manifest ${manifest}`,
  );
  const mediaType = manifestJson.mediaType ?? "";
  if (isIndexType(mediaType) || Array.isArray(manifestJson.manifests)) {
    throw new InvalidArgumentError(
      `cannot unpack ${manifest}: it is an image index; unpack one of its platform manifests`,
    );
  }
  if (
    (mediaType !== "" && !isManifestType(mediaType)) || !manifestJson.config?.digest ||
    !Array.isArray(manifestJson.layers)
  ) {
    throw new UnsupportedError(
      `cannot unpack ${manifest}: not an image manifest (media type ${JSON.stringify(mediaType)})`,
    );
  }
  const configDigest = parseDigest(manifestJson.config.digest);
  const config = parseJson<ImageConfig>(
    await store.readBytes(configDigest, { maxSize: MAX_JSON }),
    `image config ${configDigest}`,
  );
  const layers = manifestJson.layers;
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== layers.length) {
    throw new CorruptContentError(
      `cannot unpack ${manifest}: ${layers.length} layers but ${diffIds.length} diff_ids in config ${
        shortDigest(configDigest)
      }`,
    );
  }

  const dir = bundleDir.replace(/\/+$/, "") || "/";
  const rootfs = dir === "/" ? "/rootfs" : `${dir}/rootfs`;
  const bundleExisted = await Deno.lstat(dir).then(() => true, () => false);
  const bundle = await lockBundle(dir);
  // A new rootfs is built aside and renamed into place only once every layer is in and verified:
  // a failed or killed unpack never leaves a rootfs that looks complete.
  const partial = `${dir}/.rootfs.partial`;
  let inPlace = false;
  let renamed = false;
  try {
    inPlace = await checkBundle(dir);
    const target = inPlace ? rootfs : partial;
    if (!inPlace) {
      await removeAll(partial); // left by a killed unpack: we hold the lock, nobody else uses it
      await Deno.mkdir(partial, { mode: 0o755 });
    }
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i];
      const digest = parseDigest(layer.digest ?? "");
      const diffId = parseDigest(diffIds[i]);
      options.onProgress?.({ layer: i, layers: layers.length, digest, state: "start" });
      const label = `layer ${i + 1}/${layers.length} ${digest}`;
      let compressed: ReadableStream<Uint8Array>;
      try {
        compressed = await store.read(digest);
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
        throw new NotFoundError(
          `cannot unpack ${label}: the blob is not in the store (not fetched, or a foreign layer)`,
          { cause: error },
        );
      }
      const plain = decompress(compressed, { mediaType: layer.mediaType });
      const result = await applyLayer(
        target,
        plain.pipeThrough(checkDiffId(diffId, label)),
        options,
      );
      options.onProgress?.({
        layer: i,
        layers: layers.length,
        digest,
        state: "done",
        entries: result.entries,
        bytes: result.bytes,
      });
    }
    if (!inPlace) {
      await Deno.rename(partial, rootfs);
      renamed = true;
    }
    const configPath = await writeRuntimeConfig(dir, config);
    return { rootfs, config: configPath, manifest, layers: layers.length };
  } catch (error) {
    // back to what was there: an empty rootfs, or none
    if (inPlace) await emptyDirectory(rootfs);
    await removeAll(renamed ? rootfs : partial);
    // a bundle directory this call made goes too; one that holds anything else stays
    if (!bundleExisted) await Deno.remove(dir).catch(() => {});
    throw error;
  } finally {
    bundle.close();
  }
}

/**
 * Creates the bundle directory `dir` when missing and locks it, so that two unpacks into one
 * bundle cannot mix their layers: the second is refused.
 */
async function lockBundle(dir: string): Promise<Deno.FsFile> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (error) {
    // a file where the bundle (or one of its parents) should be
    if (error instanceof Deno.errors.AlreadyExists || error instanceof Deno.errors.NotADirectory) {
      throw new InvalidArgumentError(`cannot unpack into ${dir}: ${dir} is not a directory`, {
        cause: error,
      });
    }
    throw error;
  }
  const file = await Deno.open(dir, { read: true });
  if (!(await file.tryLock(true))) {
    file.close();
    throw new LockedError(`cannot unpack into ${dir}: another unpack into it is running`);
  }
  return file;
}

/**
 * Checks that `bundleDir` can take a new bundle: it is not "" (which would put the bundle at the
 * root of the file system), it has no `config.json`, and its `rootfs`, if any, is an empty
 * directory. Returns whether that empty `rootfs` exists. Throws {@link InvalidArgumentError} or
 * {@link AlreadyExistsError}; a missing `bundleDir` is fine.
 */
export async function checkBundle(bundleDir: string): Promise<boolean> {
  if (bundleDir === "") throw new InvalidArgumentError(`invalid bundle directory ""`);
  const dir = bundleDir.replace(/\/+$/, "") || "/";
  const prefix = dir === "/" ? "" : dir;
  if (await Deno.lstat(`${prefix}/config.json`).then(() => true, () => false)) {
    throw new AlreadyExistsError(`cannot unpack into ${dir}: ${prefix}/config.json exists`);
  }
  const rootfs = `${prefix}/rootfs`;
  const info = await Deno.stat(rootfs).catch(() => undefined); // a symlink to a directory is fine
  if (!info) return false;
  if (!info.isDirectory) {
    throw new InvalidArgumentError(`cannot unpack into ${dir}: ${rootfs} is not a directory`);
  }
  for await (const _ of Deno.readDir(rootfs)) {
    throw new AlreadyExistsError(`cannot unpack into ${dir}: ${rootfs} is not empty`);
  }
  return true;
}

/** Removes everything inside `path`, keeping `path` itself (a mount point, say). */
async function emptyDirectory(path: string): Promise<void> {
  const names = await Array.fromAsync(Deno.readDir(path), (entry) => entry.name).catch(() => []);
  await Promise.all(names.map((name) => removeAll(`${path}/${name}`)));
}

/** Passes bytes through and errors at the end when their digest is not `diffId`. */
function checkDiffId(diffId: Digest, label: string): TransformStream<Uint8Array, Uint8Array> {
  const digester = new Digester(digestAlgorithm(diffId));
  return new TransformStream({
    transform(chunk, controller) {
      digester.update(chunk);
      controller.enqueue(chunk);
    },
    flush() {
      const actual = digester.digest();
      if (actual !== diffId) {
        throw new DigestMismatchError(
          `cannot unpack ${label}: uncompressed digest ${actual} does not match diff_id ${diffId}`,
        );
      }
    },
  });
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (error) {
    throw new CorruptContentError(`cannot parse ${what}: ${(error as Error).message}`);
  }
}

/** Removes a tree, opening up read-only directories first when needed. */
async function removeAll(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    openUp(path);
    await Deno.remove(path, { recursive: true });
  }
}

/** What unpacking needs from node: symlink-safe chown and utimes, and the umask. */
interface NodeCalls {
  lchownSync(path: string, uid: number, gid: number): void;
  lutimesSync(path: string, atime: number, mtime: number): void;
  /** The process umask; without `--allow-sys=umask`, all bits, so every mode is set explicitly. */
  umask(): number;
}

/** Loads {@link NodeCalls} when unpacking, as importing them at the top would add ≈ 5 ms to every command. */
async function nodeCalls(): Promise<NodeCalls> {
  const [{ lchownSync, lutimesSync }, { default: process }] = await Promise.all([
    import("node:fs"),
    import("node:process"),
  ]);
  const umask = () => {
    try {
      return process.umask();
    } catch {
      return 0o777;
    }
  };
  return { lchownSync, lutimesSync, umask };
}
