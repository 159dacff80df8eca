/**
 * Pieces every benchmark uses: numeric flags, medians, the config of a synthetic image, and the
 * single-file bundle that users run.
 */

/** The number after `--NAME` on the command line, else `fallback`. */
export function flag(name: string, fallback: number): number {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 ? Number(Deno.args[at + 1]) : fallback;
}

/** The middle value (the upper one of an even count). */
export function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/** An image config for linux/amd64 whose layers are uncompressed, so diff_ids are their digests. */
export function benchConfig(layers: { digest: string }[]): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
    config: {},
  }));
}

export { buildBundle } from "../tests/_helpers/bundle.ts";
