/** A typed-error assertion for promises, over node:assert. */
import assert from "node:assert/strict";

/** Asserts that `fn` rejects with an instance of `type` whose message includes `includes`. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => Error,
  includes = "",
): Promise<Error> {
  let caught: unknown;
  try {
    await fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof type, `expected ${type.name}, got ${caught}`);
  assert.ok(
    (caught as Error).message.includes(includes),
    `expected a message with ${JSON.stringify(includes)}, got ${
      JSON.stringify((caught as Error).message)
    }`,
  );
  return caught as Error;
}
