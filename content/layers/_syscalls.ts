/**
 * The few system calls unpacking needs that Deno has no API for: `mknod` (FIFOs, device nodes)
 * and `lsetxattr` (extended attributes). They are called through FFI on the C library, which
 * needs `--allow-ffi`; without it (or on a C library without them) {@link syscalls} returns
 * undefined and callers skip those entries with a warning.
 *
 * @module
 */

/** Thin wrappers that return 0 on success or the C `errno` on failure. */
export interface Syscalls {
  /** `mknod(path, mode, makedev(major, minor))`; mode carries the file type bits. */
  mknod(path: string, mode: number, major: number, minor: number): number;
  /** `lsetxattr(path, name, value, size, 0)`: does not follow a symlink at `path`. */
  lsetxattr(path: string, name: string, value: Uint8Array): number;
}

/** File type bits for {@link Syscalls.mknod}. */
export const S_IFIFO = 0o010000;
/** File type bits for a character device. */
export const S_IFCHR = 0o020000;
/** File type bits for a block device. */
export const S_IFBLK = 0o060000;

const SYMBOLS = {
  mknod: { parameters: ["buffer", "u32", "u64"], result: "i32" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

let loaded: Syscalls | null | undefined;
const encoder = new TextEncoder();

/** Loads the wrappers once; undefined when FFI is not permitted or the library lacks them. */
export function syscalls(): Syscalls | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  try {
    if (Deno.build.os !== "linux") return undefined;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
    for (const name of ["libc.so.6", "libc.so"]) {
      try {
        lib = Deno.dlopen(name, SYMBOLS);
        break;
      } catch {
        // try the next name (musl ships libc.so)
      }
    }
    if (!lib) return undefined;
    const symbols = lib.symbols;
    const errno = (): number => {
      const pointer = symbols.__errno_location();
      return pointer ? new Deno.UnsafePointerView(pointer).getInt32() : -1;
    };
    const cString = (text: string) => encoder.encode(text + "\0");
    loaded = {
      mknod(path, mode, major, minor) {
        return symbols.mknod(cString(path), mode, makedev(major, minor)) === 0 ? 0 : errno();
      },
      lsetxattr(path, name, value) {
        const result = symbols.lsetxattr(
          cString(path),
          cString(name),
          value as Uint8Array<ArrayBuffer>,
          BigInt(value.length),
          0,
        );
        return result === 0 ? 0 : errno();
      },
    };
  } catch {
    loaded = null;
  }
  return loaded ?? undefined;
}

/** Linux's `makedev`: 12 bits of major and 20 of minor in the classic layout, the rest above. */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) |
    (mi & 0xffn);
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  13: "EACCES",
  17: "EEXIST",
  22: "EINVAL",
  28: "ENOSPC",
  34: "ERANGE",
  61: "ENODATA",
  95: "EOPNOTSUPP",
};

/** A readable name for an errno value, e.g. `EPERM`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
