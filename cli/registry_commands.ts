/**
 * `dist resolve` and `fetch-object`: one request or blob from a registry, no store.
 *
 * @module
 */
import {
  formatReference,
  parseObjectReference,
  parseReference,
  type Reference,
} from "../content/reference.ts";
import { fetchObject } from "../remotes/fetch_object.ts";
import { boolFlag, type Context, expectArgs, UsageError } from "./_args.ts";
import { out } from "./_output.ts";
import { registryClient } from "./_registry.ts";

/** `fetch-object` arguments: `REF [HINT...]` or the seed's `LOCATOR OBJECT [HINT...]`. */
function objectArguments(
  ctx: Context,
): { ref: Reference; mediaType?: string; size?: number } {
  expectArgs(ctx, 1);
  const [first, ...hints] = ctx.args;
  // an OBJECT is a tag or a digest, neither of which can start like a hint
  const object = hints.length && !/^(mediatype|size):/.test(hints[0]) ? hints.shift() : undefined;
  const ref = object === undefined ? parseReference(first) : parseObjectReference(first, object);
  let mediaType: string | undefined;
  let size: number | undefined;
  for (const hint of hints) {
    const colon = hint.indexOf(":");
    const [key, value] = [hint.slice(0, colon), hint.slice(colon + 1)];
    if (key === "mediatype" && value !== "") {
      mediaType = value;
    } else if (key === "size" && /^\d+$/.test(value)) {
      size = Number(value);
    } else {
      throw new UsageError(`unknown hint ${JSON.stringify(hint)}: want mediatype:TYPE or size:N`);
    }
  }
  return { ref, mediaType, size };
}

/** `dist resolve` */
export async function resolveCommand(ctx: Context): Promise<number | void> {
  expectArgs(ctx, 1, 1);
  const ref = parseReference(ctx.args[0]);
  const client = await registryClient(ctx);
  try {
    const desc = await client.resolve(ref);
    if (!boolFlag(ctx, "json")) out.line(formatReference(ref));
    out.json(desc);
  } finally {
    client.close();
  }
}

/** `dist fetch-object` */
export async function fetchObjectCommand(ctx: Context): Promise<number | void> {
  const { ref, mediaType, size } = objectArguments(ctx);
  const client = await registryClient(ctx);
  try {
    await fetchObject(client, ref, { mediaType, size, write: out.bytes });
  } finally {
    client.close();
  }
}
