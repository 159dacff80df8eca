/**
 * Applying an image layer to a root filesystem.
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
import { DistError, InvalidArgumentError, UnsafeEntryError, UnsupportedError } from "../errors.ts";
import { errnoName, S_IFBLK, S_IFCHR, S_IFIFO, syscalls } from "./_syscalls.ts";
import { openUp } from "../internal/remove.ts";
import { processIds } from "../internal/env.ts";

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
    // unknown ids (no --allow-sys=uid,gid) count as an unprivileged user
    const ids = processIds() ?? { uid: -1, gid: -1 };
    this.#uid = ids.uid;
    this.#gid = ids.gid;
    this.#privileged = this.#uid === 0;
    this.#sameOwner = options.sameOwner ?? this.#privileged;
    this.#xattrs = options.xattrs ?? true;
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
      this.#chown(header, abs, false);
      // open() applied the umask, chown cleared special bits: the mode is set as it is (the
      // umask is not asked, as that prompts on a terminal)
      Deno.chmodSync(abs, mode);
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
      // trusted.* attributes are for the host's privileged daemons, not for an image to set (as
      // containerd drops them); security.capability and the rest are kept
      if (name.startsWith("trusted.")) {
        this.#warnOnce(
          `xattr:${name}`,
          `dropped extended attribute ${name} on ${JSON.stringify(header.name)}: trusted.* ` +
            `attributes are not taken from images`,
        );
        continue;
      }
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

/** What unpacking needs from node: symlink-safe chown and utimes. */
interface NodeCalls {
  lchownSync(path: string, uid: number, gid: number): void;
  lutimesSync(path: string, atime: number, mtime: number): void;
}

/** Loads {@link NodeCalls} when unpacking, as importing them at the top would add ≈ 5 ms to every command. */
async function nodeCalls(): Promise<NodeCalls> {
  const { lchownSync, lutimesSync } = await import("node:fs");
  return { lchownSync, lutimesSync };
}
