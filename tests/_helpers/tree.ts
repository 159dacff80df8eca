/**
 * Snapshots of directory trees for comparisons: every path with its type, mode, owner, mtime,
 * symlink target, content digest and hardlink group, read without following symlinks.
 */
import { createHash } from "node:crypto";

/** One path of a snapshot. */
export interface TreeNode {
  type: "file" | "dir" | "symlink" | "fifo" | "char" | "block" | "socket";
  /** Permission bits incl. setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds. */
  mtime: number;
  /** Symlink target. */
  target?: string;
  /** sha256 hex of a regular file's content. */
  sha256?: string;
  /** Regular files: the smallest path sharing this inode (equal for all names of a hardlink). */
  linkGroup?: string;
  /** Device number (rdev) of device nodes. */
  rdev?: number;
}

/** Reads the tree under `root` (the root itself excluded) into a sorted map. */
export async function snapshotTree(root: string): Promise<Map<string, TreeNode>> {
  const nodes = new Map<string, TreeNode>();
  const inodes = new Map<number, string>();
  const walk = async (rel: string) => {
    const abs = rel === "" ? root : `${root}/${rel}`;
    const names = [];
    for await (const entry of Deno.readDir(abs)) names.push(entry.name);
    names.sort();
    for (const name of names) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      const childAbs = `${root}/${childRel}`;
      const info = await Deno.lstat(childAbs);
      const node: TreeNode = {
        type: info.isSymlink
          ? "symlink"
          : info.isDirectory
          ? "dir"
          : info.isFile
          ? "file"
          : info.isFifo
          ? "fifo"
          : info.isCharDevice
          ? "char"
          : info.isBlockDevice
          ? "block"
          : "socket",
        mode: (info.mode ?? 0) & 0o7777,
        uid: info.uid ?? -1,
        gid: info.gid ?? -1,
        mtime: Math.floor((info.mtime?.getTime() ?? 0) / 1000),
      };
      if (info.isSymlink) node.target = await Deno.readLink(childAbs);
      if (info.isFile) {
        node.sha256 = await fileSha256(childAbs);
        const first = inodes.get(info.ino!);
        if (first === undefined) inodes.set(info.ino!, childRel);
        node.linkGroup = first ?? childRel;
      }
      if (info.isCharDevice || info.isBlockDevice) node.rdev = info.rdev ?? undefined;
      nodes.set(childRel, node);
      if (info.isDirectory) await walk(childRel);
    }
  };
  await walk("");
  return nodes;
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path);
  try {
    const buffer = new Uint8Array(1 << 20);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/** Lists the differences between two snapshots, one line each (empty when equal). */
export function diffTrees(
  expected: Map<string, TreeNode>,
  actual: Map<string, TreeNode>,
  options: { ignore?: (keyof TreeNode)[] } = {},
): string[] {
  const ignore = new Set(options.ignore ?? []);
  const out: string[] = [];
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (!got) {
      out.push(`missing ${path}`);
      continue;
    }
    for (const key of Object.keys({ ...want, ...got }) as (keyof TreeNode)[]) {
      if (ignore.has(key)) continue;
      if (want[key] !== got[key]) {
        const show = (v: unknown) => typeof v === "number" && key === "mode" ? v.toString(8) : v;
        out.push(`${path}: ${key} ${show(want[key])} != ${show(got[key])}`);
      }
    }
  }
  for (const path of actual.keys()) if (!expected.has(path)) out.push(`extra ${path}`);
  return out;
}
