/**
 * Platforms: parsing `os/arch[/variant]` specifiers, normalizing them, and matching index entries
 * the way containerd does, so `arm64` matches `arm64/v8`, a bare `arm` means `arm/v7`, and an
 * `amd64` host also accepts `386` entries when nothing better is there.
 *
 * @example
 * ```ts
 * import { formatPlatform, parsePlatform, platformRank } from "./platform.ts";
 * const want = parsePlatform("linux/arm64");
 * console.assert(formatPlatform(want) === "linux/arm64");
 * console.assert(platformRank(want, { os: "linux", architecture: "arm64", variant: "v8" }) === 0);
 * ```
 *
 * @module
 */
import type { Platform } from "./descriptor.ts";
import { InvalidArgumentError } from "./errors.ts";

// Operating systems Go knows: a one-part specifier naming one of them means "this OS, host arch".
const KNOWN_OS = new Set([
  "aix",
  "android",
  "darwin",
  "dragonfly",
  "freebsd",
  "hurd",
  "illumos",
  "ios",
  "js",
  "linux",
  "nacl",
  "netbsd",
  "openbsd",
  "plan9",
  "solaris",
  "wasip1",
  "windows",
  "zos",
]);

const PART = /^[a-z0-9][a-z0-9_.-]*$/;

/** Returns `platform` in canonical form: lower-case, Go architecture names, default variants. */
export function normalizePlatform(platform: Platform): Platform {
  let os = platform.os.toLowerCase();
  if (os === "macos") os = "darwin";
  let architecture = platform.architecture.toLowerCase();
  let variant = platform.variant?.toLowerCase() ?? "";
  switch (architecture) {
    case "i386":
      architecture = "386";
      variant = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      architecture = "amd64";
      if (variant === "v1") variant = ""; // v1 is the baseline every amd64 CPU has
      break;
    case "aarch64":
    case "arm64":
      architecture = "arm64";
      if (variant === "8" || variant === "v8" || variant === "v8.0") variant = "";
      break;
    case "armhf":
      architecture = "arm";
      variant = "v7";
      break;
    case "armel":
      architecture = "arm";
      variant = "v6";
      break;
    case "arm":
      if (variant === "" || variant === "7") variant = "v7";
      else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
      break;
  }
  const result: Platform = { os, architecture };
  if (variant) result.variant = variant;
  if (platform["os.version"]) result["os.version"] = platform["os.version"];
  if (platform["os.features"]) result["os.features"] = platform["os.features"];
  return result;
}

/** The platform `dist` runs on, from `Deno.build` (`x86_64` → `amd64`, `aarch64` → `arm64`). */
export function hostPlatform(): Platform {
  return normalizePlatform({ os: Deno.build.os, architecture: Deno.build.arch });
}

/**
 * Parses a specifier `os/arch[/variant]`, or a single `os` or `arch` (the other part taken from
 * the host), into a normalized platform. Throws {@link InvalidArgumentError} naming the value.
 */
export function parsePlatform(specifier: string): Platform {
  const parts = specifier.toLowerCase().split("/");
  if (parts.length > 3 || parts.some((p) => !PART.test(p))) {
    throw new InvalidArgumentError(
      `invalid platform ${JSON.stringify(specifier)}: want os/arch[/variant], e.g. linux/arm64`,
    );
  }
  const host = hostPlatform();
  if (parts.length === 1) {
    const [only] = parts;
    if (KNOWN_OS.has(only) || only === "macos") {
      return normalizePlatform({ os: only, architecture: host.architecture });
    }
    return normalizePlatform({ os: host.os, architecture: only });
  }
  const [os, architecture, variant] = parts;
  return normalizePlatform({ os, architecture, variant });
}

/** Formats a platform as `os/arch[/variant]` (normalized first, so `arm64/v8` prints `arm64`). */
export function formatPlatform(platform: Platform): string {
  const p = normalizePlatform(platform);
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/**
 * The platforms a machine of platform `want` can run, best first, as containerd orders them:
 * an arm variant also runs the older variants, arm64 also runs 32-bit arm, amd64 also runs 386.
 */
function compatible(want: Platform): Platform[] {
  const p = normalizePlatform(want);
  const list: Platform[] = [p];
  const armFrom = (n: number) => {
    for (let v = n; v >= 5; v--) list.push({ os: p.os, architecture: "arm", variant: `v${v}` });
  };
  if (p.architecture === "arm" && /^v[5-8]$/.test(p.variant ?? "")) {
    list.length = 0;
    armFrom(Number(p.variant!.slice(1)));
  } else if (p.architecture === "arm64") {
    armFrom(8);
  } else if (p.architecture === "amd64") {
    const level = /^v([2-4])$/.exec(p.variant ?? "");
    if (level) {
      for (let v = Number(level[1]) - 1; v >= 2; v--) {
        list.push({ os: p.os, architecture: "amd64", variant: `v${v}` });
      }
      list.push({ os: p.os, architecture: "amd64" });
    }
    list.push({ os: p.os, architecture: "386" });
  }
  return list;
}

function samePlatform(a: Platform, b: Platform): boolean {
  if (a.os !== b.os || a.architecture !== b.architecture) return false;
  if ((a.variant ?? "") !== (b.variant ?? "")) return false;
  if (a.os !== "windows" || !a["os.version"] || !b["os.version"]) return true;
  return sameWindowsBuild(a["os.version"], b["os.version"]);
}

// Windows images only run on the same major.minor.build; other OSes ignore os.version.
function sameWindowsBuild(a: string, b: string): boolean {
  return a.split(".").slice(0, 3).join(".") === b.split(".").slice(0, 3).join(".");
}

/**
 * How well an index entry's platform `have` suits a machine of platform `want`: 0 is an exact
 * match (after normalizing both), higher numbers are less preferred but still runnable, and -1
 * means it does not run there.
 */
export function platformRank(want: Platform, have: Platform): number {
  const target = normalizePlatform(have);
  return compatible(want).findIndex((p) => samePlatform(p, target));
}

/** Reports whether `have` runs on a machine of platform `want` (see {@link platformRank}). */
export function platformMatches(want: Platform, have: Platform): boolean {
  return platformRank(want, have) >= 0;
}
