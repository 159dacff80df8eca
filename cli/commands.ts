/**
 * Every `dist` command: name, usage, help and flags. A command's code is imported only when it
 * runs, so that `dist --help` and the small commands of the seed's pipeline start fast.
 *
 * @module
 */
import type { Command, FlagSpec } from "./_args.ts";

/** remotes/copy.ts's default, repeated so that help loads no transfer code (a test compares them). */
export const DEFAULT_CONCURRENCY = 8;

/** Flags of every command that talks to a registry. */
const REGISTRY_FLAGS: FlagSpec[] = [
  {
    name: "user",
    short: "u",
    type: "string",
    value: "USER[:PASSWORD]",
    description: "registry credentials (default: docker/podman config files)",
  },
  { name: "password-stdin", type: "boolean", description: "read the --user password from stdin" },
  {
    name: "plain-http",
    type: "boolean",
    description: "talk plain HTTP (default for localhost, 127.0.0.0/8 and [::1])",
  },
  { name: "insecure", type: "boolean", description: "skip TLS certificate verification" },
  {
    name: "ca-file",
    type: "string",
    value: "FILE",
    description: "trust the CA certificates in FILE",
  },
  {
    name: "timeout",
    type: "string",
    value: "DURATION",
    description:
      "give up on a registry silent this long: before its reply (connecting included) or within a body, which then resumes (default 30s)",
  },
];

/** Flags of the commands that fetch images. */
const FETCH_FLAGS: FlagSpec[] = [
  {
    name: "platform",
    type: "string",
    multiple: true,
    value: "OS/ARCH[/VARIANT]",
    description: "platform to fetch (default: this machine's)",
  },
  { name: "all-platforms", type: "boolean", description: "fetch every platform and attestation" },
  {
    name: "mirror",
    type: "string",
    multiple: true,
    value: "HOST",
    description:
      "try this registry mirror first (pull and resolve), then the next, then the upstream",
  },
  {
    name: "hosts-dir",
    type: "string",
    value: "DIR",
    description: "containerd-style registry hosts: DIR/<registry>/hosts.toml names mirrors",
  },
  {
    name: "max-concurrent-downloads",
    type: "string",
    value: "N",
    description:
      `blobs downloaded at once (default ${DEFAULT_CONCURRENCY}; one over 16 MiB counts as two)`,
  },
  { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
  { name: "quiet", short: "q", type: "boolean", description: "print only the image descriptor" },
];

/** What unpacking takes besides the platform: the limit on what layers may unpack to. */
const UNPACK_LIMIT_FLAG: FlagSpec = {
  name: "max-unpacked-size",
  type: "string",
  value: "SIZE",
  description:
    "stop when the layers unpack to more than SIZE (bytes, or 500M, 20G; default: no limit)",
};

/** How the bundle runs (see `RuntimeOptions`): the flags of `pull` and `unpack`. */
const BUNDLE_FLAGS: FlagSpec[] = [
  UNPACK_LIMIT_FLAG,
  {
    name: "rootless",
    type: "boolean",
    description:
      "a bundle for an unprivileged runtime, as runc spec --rootless (default when not root; --rootless=false to turn off)",
  },
  { name: "read-only", type: "boolean", description: "mount the root filesystem read-only" },
  { name: "terminal", type: "boolean", description: "give the process a terminal" },
  {
    name: "hostname",
    type: "string",
    value: "NAME",
    description: "the container's hostname (default dist)",
  },
];

/** `pull` unpacks one platform: the fetch flags with a single `--platform` and no `--all-platforms`. */
const PULL_FLAGS: FlagSpec[] = [
  ...FETCH_FLAGS.filter((f) => f.name !== "all-platforms").map((f) =>
    f.name === "platform"
      ? { ...f, multiple: false, description: "platform to pull (default: this machine's)" }
      : f
  ),
  ...BUNDLE_FLAGS,
];

/** Every command, in the order `dist --help` lists them. */
export const COMMANDS: Command[] = [
  // ---- store commands (content/) ----
  {
    name: "ingest",
    usage: "--expected-digest DIGEST --expected-size N [flags] REF",
    summary: "write stdin into the store as one blob, verified against its digest and size",
    flags: [
      {
        name: "expected-digest",
        type: "string",
        value: "DIGEST",
        description: "digest the content must have (required)",
      },
      {
        name: "expected-size",
        type: "string",
        value: "N",
        description: "size in bytes the content must have (required)",
      },
    ],
    run: async (ctx) => (await import("./store_commands.ts")).ingestCommand(ctx),
  },
  {
    name: "active",
    usage: "[flags]",
    summary: "list ingests in progress (REF, OFFSET/TOTAL, STARTED, UPDATED)",
    flags: [{ name: "json", type: "boolean", description: "print one JSON object a line" }],
    run: async (ctx) => (await import("./store_commands.ts")).activeCommand(ctx),
  },
  {
    name: "list",
    aliases: ["ls"],
    usage: "[flags]",
    summary: "list committed blobs (DIGEST, SIZE, AGE)",
    flags: [
      { name: "quiet", short: "q", type: "boolean", description: "print digests only" },
      { name: "json", type: "boolean", description: "print one JSON object a line" },
    ],
    run: async (ctx) => (await import("./store_commands.ts")).listCommand(ctx),
  },
  {
    name: "path",
    usage: "[flags] DIGEST...",
    summary: "print the file path of committed blobs (DIGEST PATH)",
    flags: [{ name: "quiet", short: "q", type: "boolean", description: "print paths only" }],
    run: async (ctx) => (await import("./store_commands.ts")).pathCommand(ctx),
  },
  {
    name: "delete",
    aliases: ["rm"],
    usage: "[flags] [DIGEST...]",
    summary:
      "delete committed blobs, printing each digest deleted; blobs images use are kept (exit 0)",
    flags: [
      {
        name: "force",
        type: "boolean",
        description: "also delete blobs an image record uses (the image breaks)",
      },
    ],
    run: async (ctx) => (await import("./image_commands.ts")).deleteCommand(ctx),
  },
  {
    name: "abort",
    usage: "[flags] REF...",
    summary: "remove ingests and their data, printing each ref removed",
    flags: [],
    run: async (ctx) => (await import("./store_commands.ts")).abortCommand(ctx),
  },
  {
    name: "prune",
    usage: "[--ingests] [--older-than DURATION] [--dry-run] [flags]",
    summary: "remove blobs no image reaches and abandoned ingests",
    flags: [
      {
        name: "ingests",
        type: "boolean",
        description: "remove only ingests not updated for --older-than, no blobs",
      },
      {
        name: "older-than",
        type: "string",
        value: "DURATION",
        description: "age of the last update, e.g. 90s, 30m, 24h, 7d (default 24h)",
      },
      {
        name: "dry-run",
        type: "boolean",
        description: "print what would be removed, remove nothing",
      },
    ],
    run: async (ctx) => (await import("./image_commands.ts")).pruneCommand(ctx),
  },

  // ---- registry commands (remotes/) ----
  {
    name: "resolve",
    storeless: true,
    usage: "[flags] REF",
    summary: "resolve a reference to its manifest descriptor",
    flags: [
      ...REGISTRY_FLAGS,
      { name: "json", type: "boolean", description: "print the descriptor only, as JSON" },
    ],
    run: async (ctx) => (await import("./registry_commands.ts")).resolveCommand(ctx),
  },
  {
    name: "fetch-object",
    storeless: true,
    streamsData: true,
    usage: "[flags] (REF | LOCATOR OBJECT) [mediatype:TYPE] [size:N]",
    summary: "write one manifest or blob from a registry to stdout, raw and verified",
    flags: REGISTRY_FLAGS,
    run: async (ctx) => (await import("./registry_commands.ts")).fetchObjectCommand(ctx),
  },
  // ---- image commands (fetch, pull, unpack, images, prune) ----
  {
    name: "fetch",
    usage: "[flags] REF...",
    summary: "fetch images (for the chosen platforms) from a registry into the store",
    flags: [...FETCH_FLAGS, ...REGISTRY_FLAGS],
    run: async (ctx) => (await import("./transfer_commands.ts")).fetchCommand(ctx),
  },
  {
    name: "pull",
    usage: "[flags] REF [DIR]",
    summary: "fetch an image and unpack it into a runtime bundle DIR (default: its name)",
    flags: [...PULL_FLAGS, ...REGISTRY_FLAGS],
    run: async (ctx) => (await import("./transfer_commands.ts")).pullCommand(ctx),
  },
  {
    name: "unpack",
    usage: "[flags] NAME|DIGEST DIR",
    summary: "unpack an image from the store into a runtime bundle DIR",
    flags: [
      {
        name: "platform",
        type: "string",
        value: "OS/ARCH[/VARIANT]",
        description: "platform of a multi-platform image (default: this machine's)",
      },
      ...BUNDLE_FLAGS,
      { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
      { name: "quiet", short: "q", type: "boolean", description: "print nothing on success" },
    ],
    run: async (ctx) => (await import("./transfer_commands.ts")).unpackCommand(ctx),
  },
  {
    name: "images",
    usage: "[flags] | rm NAME|DIGEST...",
    summary:
      "list image records (NAME DIGEST SIZE PLATFORMS), or remove them (by DIGEST: every name it has)",
    flags: [
      { name: "json", type: "boolean", description: "print one JSON object a record" },
      { name: "quiet", short: "q", type: "boolean", description: "print names only" },
    ],
    run: async (ctx) => (await import("./image_commands.ts")).imagesCommand(ctx),
  },
  {
    name: "check",
    usage: "[--repair] [flags] [NAME|DIGEST...]",
    summary:
      "verify that images (default: every record) are whole and every blob matches its digest",
    flags: [
      {
        name: "repair",
        type: "boolean",
        description:
          "delete blobs that do not match and fetch what is missing from the image's registry",
      },
      { name: "json", type: "boolean", description: "print one JSON object an image" },
      ...REGISTRY_FLAGS,
    ],
    run: async (ctx) => (await import("./image_commands.ts")).checkCommand(ctx),
  },
  {
    name: "serve",
    usage: "[--listen ADDR:PORT|unix:PATH] [--allow-push] [--allow-delete] [flags]",
    summary: "serve the store as an OCI registry (pull; push and delete when allowed)",
    description: "Records HOST/REPO:TAG are served as REPO:TAG (the host dropped); a pushed tag " +
      "is recorded as SERVER/REPO:TAG, SERVER as the client names it. Uploads are ingests: " +
      "they show in dist active and survive a restart. One access-log line a request on stderr. " +
      "Ctrl-C or SIGTERM stops it (exit 0).",
    flags: [
      {
        name: "listen",
        type: "string",
        value: "ADDR:PORT|unix:PATH",
        description: "where to listen (default 127.0.0.1:5000)",
      },
      { name: "allow-push", type: "boolean", description: "accept uploads and manifests" },
      {
        name: "allow-delete",
        type: "boolean",
        description: "accept DELETE of manifests and blobs (never of blobs an image uses)",
      },
      {
        name: "htpasswd",
        type: "string",
        value: "FILE",
        description: "require Basic auth from the users of FILE (bcrypt, htpasswd -B)",
      },
      { name: "cert", type: "string", value: "FILE", description: "TLS certificate chain (PEM)" },
      { name: "key", type: "string", value: "FILE", description: "TLS private key (PEM)" },
      {
        name: "insecure",
        type: "boolean",
        description: "allow --htpasswd over plain HTTP on a non-loopback address",
      },
      { name: "json", type: "boolean", description: "log one JSON object a request" },
    ],
    run: async (ctx) => (await import("./serve_command.ts")).serveCommand(ctx),
  },
  // ---- archive commands (export, import) ----
  {
    name: "export",
    streamsData: true,
    usage: "-o FILE|- [flags] NAME|DIGEST...",
    summary: "write images from the store to a tar archive that docker load (or an OCI tool) reads",
    flags: [
      {
        name: "output",
        short: "o",
        type: "string",
        value: "FILE",
        description: "where the archive goes (required); - for stdout. A file appears only " +
          "once it is complete",
      },
      {
        name: "format",
        type: "string",
        value: "docker|oci",
        description: "docker: a docker-archive for docker load, also an OCI layout (default); " +
          "oci: an OCI image-layout archive with every platform in the store",
      },
      {
        name: "platform",
        type: "string",
        value: "OS/ARCH[/VARIANT]",
        description: "docker format: the platform of a multi-platform image (default: this " +
          "machine's)",
      },
    ],
    run: async (ctx) => (await import("./archive_commands.ts")).exportCommand(ctx),
  },
  {
    name: "import",
    usage: "[flags] FILE|-",
    summary: "read a docker-archive or OCI-archive tar (- for stdin) into the store, recording " +
      "its images",
    flags: [
      { name: "json", type: "boolean", description: "print one JSON object an image" },
      { name: "quiet", short: "q", type: "boolean", description: "print image names only" },
    ],
    run: async (ctx) => (await import("./archive_commands.ts")).importCommand(ctx),
  },
  {
    name: "push",
    usage: "[flags] NAME [DEST-REF]",
    summary: "push an image from the store to a registry, every platform the store holds of it",
    flags: [
      {
        name: "max-concurrent-uploads",
        type: "string",
        value: "N",
        description:
          `blobs uploaded at once (default ${DEFAULT_CONCURRENCY}; one over 16 MiB counts as two)`,
      },
      { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
      {
        name: "quiet",
        short: "q",
        type: "boolean",
        description: "print only the image descriptor",
      },
      ...REGISTRY_FLAGS,
    ],
    run: async (ctx) => (await import("./transfer_commands.ts")).pushCommand(ctx),
  },
  {
    name: "copy",
    aliases: ["cp"],
    usage: "[flags] SRC DEST",
    summary: "copy an image between registries, OCI layouts and archives, without the store",
    storeless: true,
    description: "SRC and DEST are registry references (docker://REF or REF), oci:DIR[:NAME], " +
      "oci-archive:FILE[:NAME] or docker-archive:FILE[:NAME], as skopeo names them. Between " +
      "registries every blob streams straight through, verified, and is mounted when both are " +
      "repositories of one registry. Of a multi-platform image one platform's manifest is copied " +
      "(--platform, default this machine's), or the whole index with --all-platforms.",
    flags: [
      {
        name: "platform",
        type: "string",
        value: "OS/ARCH[/VARIANT]",
        description: "platform to copy of a multi-platform image (default: this machine's)",
      },
      { name: "all-platforms", type: "boolean", description: "copy the whole index" },
      {
        name: "referrers",
        type: "boolean",
        description: "also copy the signatures and attestations that refer to the image (OCI 1.1)",
      },
      {
        name: "max-concurrent-downloads",
        type: "string",
        value: "N",
        description: `blobs copied at once (default ${DEFAULT_CONCURRENCY})`,
      },
      { name: "json", type: "boolean", description: "print progress events as JSON, one a line" },
      { name: "quiet", short: "q", type: "boolean", description: "print only the descriptor" },
      ...REGISTRY_FLAGS,
    ],
    run: async (ctx) => (await import("./transfer_commands.ts")).copyCommand(ctx),
  },
];
