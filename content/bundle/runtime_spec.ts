/**
 * Runtime bundles: the OCI runtime-spec `config.json` derived from an image config.
 *
 * The process comes from the image (`Entrypoint` + `Cmd`, `Env` with a default `PATH`, and
 * `HOME` from the user's passwd entry when the image sets none, `WorkingDir`, `User`); the rest
 * are the defaults `runc spec` and `umoci unpack` write: the usual mounts, namespaces
 * (pid, network, ipc, uts, mount), a small capability set, masked and read-only paths. Image
 * labels become annotations, next to `org.opencontainers.image.*` annotations for the
 * architecture, OS, author, creation time, exposed ports and stop signal, as umoci does.
 *
 * User names and group names are resolved from the rootfs's `/etc/passwd` and `/etc/group`,
 * read without following symlinks out of the rootfs.
 *
 * @example
 * ```ts
 * import { runtimeSpec } from "./runtime_spec.ts";
 * const spec = await runtimeSpec({ config: { Cmd: ["/bin/sh"] } }, "/nonexistent/rootfs");
 * console.log(spec.process.args); // ["/bin/sh"]
 * ```
 *
 * @module
 */
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { writeFileAtomic } from "../internal/file_stream.ts";

/** The parts of an OCI/Docker image config that a bundle uses. */
export interface ImageConfig {
  /** CPU architecture. */
  architecture?: string;
  /** Operating system. */
  os?: string;
  /** Creation time (RFC 3339). */
  created?: string;
  /** Author. */
  author?: string;
  /** Execution parameters. */
  config?: {
    User?: string;
    Env?: string[] | null;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
    StopSignal?: string;
    Volumes?: Record<string, unknown> | null;
  };
  /** The layers' uncompressed digests. */
  rootfs?: { type?: string; diff_ids?: string[] };
}

/** A mount in a runtime spec. */
export interface RuntimeMount {
  /** Path inside the container. */
  destination: string;
  /** Filesystem type. */
  type: string;
  /** Source device or path. */
  source: string;
  /** Mount options. */
  options?: string[];
}

/** The OCI runtime-spec config `dist` writes (a subset of the spec's fields). */
export interface RuntimeSpec {
  /** Runtime-spec version. */
  ociVersion: string;
  /** The container's process. */
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<"bounding" | "effective" | "permitted", string[]>;
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  /** The root filesystem, relative to the bundle. */
  root: { path: string; readonly?: boolean };
  /** Container hostname. */
  hostname: string;
  /** Mounts, in order. */
  mounts: RuntimeMount[];
  /** Image labels and image metadata. */
  annotations: Record<string, string>;
  /** Linux-specific settings. */
  linux: {
    /** Absent for rootless bundles: no cgroup is assumed. */
    resources?: { devices: { allow: boolean; access: string }[] };
    /** Rootless bundles: the user namespace's mappings of the container's root to the user. */
    uidMappings?: IdMapping[];
    gidMappings?: IdMapping[];
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

/** One range of a user namespace's id mapping. */
export interface IdMapping {
  /** The first id inside the container. */
  containerID: number;
  /** The first id on the host it maps to. */
  hostID: number;
  /** How many ids. */
  size: number;
}

/** How the bundle is to run, beyond what the image says. */
export interface RuntimeOptions {
  /**
   * A bundle for an unprivileged runtime (`runc --rootless`): a user namespace mapping the
   * container's root to this host user and group, no network namespace, `/sys` bound from the
   * host, no cgroup resources, and the process run as the container's root.
   */
  rootless?: { uid: number; gid: number };
  /** Mount the root filesystem read-only (`root.readonly`). */
  readOnly?: boolean;
  /** Give the process a terminal (`process.terminal`). */
  terminal?: boolean;
  /** The container's hostname (default `dist`). */
  hostname?: string;
}

/** The `PATH` a container gets when its image sets none (the one runc and Docker use). */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Builds the runtime config for an image whose unpacked root filesystem is `rootfs` (used to
 * resolve user and group names). Throws {@link NotFoundError} for a user or group name the
 * rootfs does not know, {@link InvalidArgumentError} for a malformed `User`.
 */
export async function runtimeSpec(
  image: ImageConfig,
  rootfs: string,
  options: RuntimeOptions = {},
): Promise<RuntimeSpec> {
  const config = image.config ?? {};
  const user = await resolveUser(config.User ?? "", rootfs);
  const env = [...(config.Env ?? [])];
  if (!env.some((e) => e.startsWith("PATH="))) env.unshift(`PATH=${DEFAULT_PATH}`);
  if (user.home !== undefined && !env.some((e) => e.startsWith("HOME="))) {
    env.push(`HOME=${user.home}`);
  }
  const annotations: Record<string, string> = { ...(config.Labels ?? {}) };
  const meta: Record<string, string | undefined> = {
    "org.opencontainers.image.architecture": image.architecture,
    "org.opencontainers.image.os": image.os,
    "org.opencontainers.image.author": image.author,
    "org.opencontainers.image.created": image.created,
    "org.opencontainers.image.stopSignal": config.StopSignal,
    "org.opencontainers.image.exposedPorts": config.ExposedPorts
      ? Object.keys(config.ExposedPorts).join(",")
      : undefined,
  };
  for (const [key, value] of Object.entries(meta)) if (value) annotations[key] = value;
  const capabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
  const processUser: RuntimeSpec["process"]["user"] = { uid: user.uid, gid: user.gid };
  if (user.additionalGids.length > 0) processUser.additionalGids = user.additionalGids;
  const spec: RuntimeSpec = {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: processUser,
      args: [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])],
      env,
      cwd: config.WorkingDir || "/",
      capabilities: {
        bounding: [...capabilities],
        effective: [...capabilities],
        permitted: [...capabilities],
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs" },
    hostname: "dist",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      {
        destination: "/sys/fs/cgroup",
        type: "cgroup",
        source: "cgroup",
        options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
      },
    ],
    annotations,
    linux: {
      resources: { devices: [{ allow: false, access: "rwm" }] },
      namespaces: [
        { type: "pid" },
        { type: "network" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
      ],
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
      ],
      readonlyPaths: [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
      ],
    },
  };
  if (options.readOnly) spec.root.readonly = true;
  if (options.terminal) spec.process.terminal = true;
  if (options.hostname !== undefined) spec.hostname = options.hostname;
  if (options.rootless) makeRootless(spec, options.rootless);
  return spec;
}

/** Reshapes `spec` as `runc spec --rootless` does (see {@link RuntimeOptions.rootless}). */
function makeRootless(spec: RuntimeSpec, host: { uid: number; gid: number }): void {
  spec.linux.uidMappings = [{ containerID: 0, hostID: host.uid, size: 1 }];
  spec.linux.gidMappings = [{ containerID: 0, hostID: host.gid, size: 1 }];
  // one id is mapped: the process is the container's root, which is the user on the host
  spec.process.user = { uid: 0, gid: 0 };
  spec.linux.namespaces = [
    ...spec.linux.namespaces.filter((n) => n.type !== "network"),
    { type: "user" },
  ];
  delete spec.linux.resources;
  spec.mounts = spec.mounts.map((m) => {
    if (m.destination === "/sys") {
      return {
        ...m,
        type: "none",
        source: "/sys",
        options: ["rbind", "nosuid", "noexec", "nodev", "ro"],
      };
    }
    // gid 5 (tty) is not mapped inside the namespace
    if (m.destination === "/dev/pts") {
      return {
        ...m,
        options: m.options?.filter((o) => o !== "gid=5"),
      };
    }
    return m;
  });
}

/**
 * Writes `bundleDir/config.json` for `image`, whose rootfs is `bundleDir/rootfs`, atomically
 * (a flushed temporary file, then a rename). Returns the file's path.
 */
export async function writeRuntimeConfig(
  bundleDir: string,
  image: ImageConfig,
  options: RuntimeOptions = {},
): Promise<string> {
  if (bundleDir === "") throw new InvalidArgumentError(`invalid bundle directory ""`);
  const dir = bundleDir.replace(/\/+$/, "");
  const spec = await runtimeSpec(image, `${dir}/rootfs`, options);
  const path = `${dir}/config.json`;
  await writeFileAtomic(path, JSON.stringify(spec, null, 2) + "\n");
  return path;
}

/** A resolved image user. */
interface ExecUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** From the passwd entry; undefined when the user has none. */
  home?: string;
}

const NUMERIC = /^[0-9]+$/;

/**
 * Resolves `User` (`user`, `uid`, `user:group`, `uid:gid`, …) like runc and umoci: names through
 * the rootfs's passwd and group files; a numeric uid without a passwd entry gets gid 0 and no
 * home; without an explicit group, the groups that list the user become additional gids.
 */
async function resolveUser(spec: string, rootfs: string): Promise<ExecUser> {
  const colon = spec.indexOf(":");
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  if (colon >= 0 && (userPart === "" || groupPart === "")) {
    throw new InvalidArgumentError(`invalid image user ${JSON.stringify(spec)}`);
  }
  const passwd = parseColonFile(await readInRoot(rootfs, "etc/passwd"));
  const user = userPart === "" ? "0" : userPart;
  let entry: string[] | undefined;
  if (NUMERIC.test(user)) {
    entry = passwd.find((fields) => fields[2] === user);
  } else {
    entry = passwd.find((fields) => fields[0] === user);
    if (!entry) {
      throw new NotFoundError(`cannot find image user ${JSON.stringify(user)} in /etc/passwd`);
    }
  }
  const result: ExecUser = {
    uid: Number(NUMERIC.test(user) ? user : entry![2]),
    gid: entry && NUMERIC.test(entry[3]) ? Number(entry[3]) : 0,
    additionalGids: [],
    home: entry?.[5] || undefined,
  };
  if (!NUMERIC.test(String(result.uid))) {
    throw new InvalidArgumentError(`invalid uid for image user ${JSON.stringify(spec)}`);
  }
  const needGroups = groupPart !== undefined && !NUMERIC.test(groupPart) || groupPart === undefined;
  const groups = needGroups ? parseColonFile(await readInRoot(rootfs, "etc/group")) : [];
  if (groupPart !== undefined) {
    if (NUMERIC.test(groupPart)) result.gid = Number(groupPart);
    else {
      const group = groups.find((fields) => fields[0] === groupPart);
      if (!group || !NUMERIC.test(group[2])) {
        throw new NotFoundError(
          `cannot find image group ${JSON.stringify(groupPart)} in /etc/group`,
        );
      }
      result.gid = Number(group[2]);
    }
  } else if (entry) {
    const name = entry[0];
    for (const fields of groups) {
      const members = (fields[3] ?? "").split(",");
      if (!members.includes(name) || !NUMERIC.test(fields[2])) continue;
      const gid = Number(fields[2]);
      if (!result.additionalGids.includes(gid)) result.additionalGids.push(gid);
    }
  }
  return result;
}

function parseColonFile(text: string): string[][] {
  return text.split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => line.split(":"));
}

/**
 * Reads a small text file at `path` inside `root` the way the container would see it: symlinks
 * are resolved within the root (an absolute target starts at the root, `..` stops at it).
 * Returns "" when the file does not exist.
 */
async function readInRoot(root: string, path: string): Promise<string> {
  const pending = path.split("/").filter((p) => p !== "" && p !== ".");
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const abs = `${root}/${[...resolved, part].join("/")}`;
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(abs);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return "";
      }
      throw error;
    }
    if (info.isSymlink) {
      if (++hops > 40) return "";
      const target = await Deno.readLink(abs);
      if (target.startsWith("/")) resolved.length = 0;
      pending.unshift(...target.split("/").filter((p) => p !== ""));
      continue;
    }
    resolved.push(part);
    if (pending.length === 0 && !info.isFile) return "";
  }
  const file = await Deno.open(`${root}/${resolved.join("/")}`);
  try {
    const buffer = new Uint8Array(1 << 20);
    let length = 0;
    while (length < buffer.length) {
      const n = await file.read(buffer.subarray(length));
      if (n === null) break;
      length += n;
    }
    return new TextDecoder().decode(buffer.subarray(0, length));
  } finally {
    file.close();
  }
}
