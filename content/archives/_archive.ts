/**
 * Helpers of the archive export and import: safe entry paths, Docker's "familiar" image names and
 * the fixed names of an archive's metadata files.
 *
 * @module
 */
import { CorruptContentError, UnsafeEntryError } from "../errors.ts";
// Reference parsing is pure (no network): record names and RepoTags are image references.
import { DOCKER_HUB, formatReference, parseReference } from "../reference.ts";

/** `oci-layout`: marks an OCI image layout. */
export const OCI_LAYOUT_FILE = "oci-layout";
/** The OCI image layout's `index.json`. */
export const INDEX_FILE = "index.json";
/** The docker-archive's list of images. */
export const DOCKER_MANIFEST_FILE = "manifest.json";
/** The docker-archive's legacy `repositories` file. */
export const REPOSITORIES_FILE = "repositories";
/** The content of `oci-layout`. */
export const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';

/**
 * Normalizes an archive path (`./blobs//sha256/x` → `blobs/sha256/x`) and refuses what could
 * point outside the archive: absolute names, `..` components, NUL bytes. `what` names the
 * value in the error (an entry, a link target, a path in manifest.json).
 */
export function safeArchivePath(path: string, what = "archive entry"): string {
  const unsafe = (why: string) =>
    new UnsafeEntryError(`refusing ${what} ${JSON.stringify(path)}: ${why}`);
  if (path.includes("\0")) throw unsafe("it contains a NUL byte");
  if (path.startsWith("/")) throw unsafe("it is an absolute path");
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw unsafe("it has a .. component");
    parts.push(part);
  }
  if (parts.length === 0) throw unsafe("it names the archive root");
  return parts.join("/");
}

/**
 * Where a symlink at `linkPath` with target `target` points inside the archive; refuses targets
 * that leave it. Hardlink targets are archive paths already: pass `hardlink`.
 */
export function linkTargetPath(linkPath: string, target: string, hardlink: boolean): string {
  const what = `link target of ${linkPath}`;
  if (hardlink) return safeArchivePath(target, what);
  if (target.startsWith("/")) return safeArchivePath(target, what); // refuses it
  const parts = linkPath.split("/").slice(0, -1);
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) {
        throw new UnsafeEntryError(
          `refusing ${what} ${JSON.stringify(target)}: it points outside the archive`,
        );
      }
      parts.pop();
    } else parts.push(part);
  }
  return safeArchivePath(parts.join("/"), what);
}

/** A tagged image name as `docker save` writes it into `RepoTags` and `repositories`. */
export interface RepoTag {
  /** `alpine:latest`, `ghcr.io/o/app:v1`. */
  repoTag: string;
  /** `alpine`, `ghcr.io/o/app`. */
  repository: string;
  /** `latest`. */
  tag: string;
}

/**
 * Docker's short form of a record name: Docker Hub's `docker.io/` and `library/` prefixes go.
 * Undefined when the name has no tag (digest-only names) or is not an image reference.
 */
export function repoTagOf(name: string): RepoTag | undefined {
  let ref;
  try {
    ref = parseReference(name);
  } catch {
    return undefined;
  }
  if (ref.tag === undefined) return undefined;
  let repository = ref.registry === DOCKER_HUB
    ? ref.repository
    : `${ref.registry}/${ref.repository}`;
  if (ref.registry === DOCKER_HUB && repository.startsWith("library/")) {
    repository = repository.slice("library/".length);
  }
  return { repoTag: `${repository}:${ref.tag}`, repository, tag: ref.tag };
}

/** The full record name of a `RepoTags` entry (`alpine:latest` → `docker.io/library/alpine:latest`). */
export function nameOfRepoTag(repoTag: string): string {
  try {
    return formatReference(parseReference(repoTag));
  } catch (error) {
    throw new CorruptContentError(
      `invalid archive: manifest.json has an invalid RepoTags entry ${JSON.stringify(repoTag)}`,
      { cause: error },
    );
  }
}

/** The `rootfs.diff_ids` of an image config's bytes; undefined when it is not an image config. */
export function diffIdsOf(config: Uint8Array): string[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(config));
  } catch {
    return undefined;
  }
  const ids = (value as { rootfs?: { diff_ids?: unknown } } | null)?.rootfs?.diff_ids;
  return Array.isArray(ids) && ids.every((id) => typeof id === "string") ? ids : undefined;
}

/** One image of a docker-archive's `manifest.json`. */
export interface DockerItem {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}
