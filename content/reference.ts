/**
 * Image references: parsing and normalizing them the way docker and containerd do.
 *
 * `redis` means `docker.io/library/redis:latest`; the first path component names a registry only
 * when it looks like a host (it has a `.` or a `:`, is `localhost`, or has upper-case letters);
 * `name:tag@sha256:…` keeps both, and the digest wins when content is requested.
 *
 * @example
 * ```ts
 * import { formatReference, parseReference } from "./reference.ts";
 * const ref = parseReference("redis");
 * console.assert(formatReference(ref) === "docker.io/library/redis:latest");
 * console.assert(parseReference("localhost:5000/app:v1").registry === "localhost:5000");
 * ```
 *
 * @module
 */
import { type Digest, isDigest, parseDigest } from "./digest.ts";
import { InvalidArgumentError } from "./errors.ts";

/** A parsed, normalized image reference. */
export interface Reference {
  /** The registry as users name it: `docker.io`, `localhost:5000`, `[::1]:5000`, `ghcr.io`. */
  registry: string;
  /** The repository path inside the registry, e.g. `library/redis`. */
  repository: string;
  /** The tag, e.g. `latest`; absent when only a digest was given. */
  tag?: string;
  /** The manifest (or blob) digest; when present it wins over the tag. */
  digest?: Digest;
}

/** The registry name Docker Hub images carry. */
export const DOCKER_HUB = "docker.io";

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const HOST = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const TAG = /^[\w][\w.-]{0,127}$/;
const NAME_MAX = 255;

/**
 * Parses and normalizes an image reference: `redis`, `library/redis:7`, `ghcr.io/o/app@sha256:…`,
 * `localhost:5000/app:v1@sha256:…`. Throws {@link InvalidArgumentError} naming the bad part.
 */
export function parseReference(value: string): Reference {
  const fail = (why: string): never => {
    throw new InvalidArgumentError(`invalid reference ${JSON.stringify(value)}: ${why}`);
  };
  if (value === "") fail("empty");
  let rest = value;
  let digest: Digest | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    const digestPart = rest.slice(at + 1);
    if (!isDigest(digestPart)) fail(`invalid digest ${JSON.stringify(digestPart)}`);
    digest = parseDigest(digestPart);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`invalid tag ${JSON.stringify(tag)}`);
  }
  if (rest === "") fail("missing repository name");
  if (rest.length > NAME_MAX) fail(`name longer than ${NAME_MAX} characters`);

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase()) {
      registry = first;
      repository = rest.slice(slash + 1);
      if (!HOST.test(registry)) fail(`invalid registry host ${JSON.stringify(registry)}`);
    }
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes("/")) repository = `library/${repository}`;
  if (repository !== repository.toLowerCase()) {
    fail(`repository name ${JSON.stringify(repository)} must be lowercase`);
  }
  for (const component of repository.split("/")) {
    if (!PATH_COMPONENT.test(component)) {
      fail(`invalid path component ${JSON.stringify(component)} in ${JSON.stringify(repository)}`);
    }
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * Parses the seed's two-part form: a locator (`docker.io/library/redis`) and an object, which is
 * either a tag (`latest`) or a digest (`sha256:…`).
 */
export function parseObjectReference(locator: string, object: string): Reference {
  // a tag never holds ":", so `sha256:zz` is a broken digest and is reported as one
  return parseReference(`${locator}${object.includes(":") ? "@" : ":"}${object}`);
}

/** Formats a reference in full: `docker.io/library/redis:latest`, `host:5000/app@sha256:…`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}` + (ref.tag !== undefined ? `:${ref.tag}` : "") +
    (ref.digest !== undefined ? `@${ref.digest}` : "");
}

/** What a request names in the registry API: the digest when there is one, else the tag. */
export function referenceObject(ref: Reference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** The host that serves a registry's API: `docker.io` is served by `registry-1.docker.io`. */
export function registryHost(registry: string): string {
  return registry === DOCKER_HUB ? "registry-1.docker.io" : registry;
}

/**
 * Reports whether a registry host is this machine (`localhost`, `127.0.0.0/8`, `[::1]`, with or
 * without a port): such registries default to plain HTTP, as in containerd.
 */
export function isLoopbackHost(host: string): boolean {
  let name = host;
  if (name.startsWith("[")) {
    name = name.slice(1, name.indexOf("]"));
    return name === "::1";
  }
  const colon = name.lastIndexOf(":");
  if (colon >= 0) name = name.slice(0, colon);
  return name === "localhost" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}
