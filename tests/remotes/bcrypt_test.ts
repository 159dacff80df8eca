/**
 * `dist serve --htpasswd`'s bcrypt check against hashes made by `htpasswd -B` (apache2-utils),
 * the tool distribution's documentation names: right and wrong passwords, costs, non-ASCII and
 * empty passwords, the 72-byte limit, the `$2a$`/`$2b$`/`$2y$` spellings, malformed hashes.
 */
import assert from "node:assert/strict";
import { bcryptMatches, isBcryptHash } from "../../remotes/serve/bcrypt.ts";
import { requireTool } from "../_helpers/temp.ts";

async function htpasswdHash(password: string, cost: number): Promise<string> {
  const { stdout, success } = await new Deno.Command("htpasswd", {
    args: ["-nbB", "-C", String(cost), "user", password],
  }).output();
  assert.ok(success);
  return new TextDecoder().decode(stdout).trim().slice("user:".length);
}

Deno.test("bcrypt: hashes from htpasswd -B match their passwords and nothing else", async () => {
  await requireTool("htpasswd");
  const cases: [string, number][] = [["secret", 5], ["", 4], ["pässwörd ✓ 密码", 6], ["a:b c", 8]];
  for (const [password, cost] of cases) {
    const hash = await htpasswdHash(password, cost);
    assert.ok(isBcryptHash(hash), hash);
    assert.ok(bcryptMatches(password, hash), `${password} / ${hash}`);
    for (const wrong of [`${password}x`, password.slice(1), `${password.toUpperCase()}!`]) {
      if (wrong === password) continue; // the empty password has no shorter one
      assert.ok(!bcryptMatches(wrong, hash), `${wrong} / ${hash}`);
    }
    // the three spellings name one algorithm for passwords under 255 bytes
    for (const version of ["a", "b"]) {
      assert.ok(bcryptMatches(password, hash.replace(/^\$2y/, `$2${version}`)));
    }
  }
});

Deno.test("bcrypt: only the first 72 bytes of a password count, as in every bcrypt", async () => {
  await requireTool("htpasswd");
  const long = "x".repeat(72);
  const hash = await htpasswdHash(long, 4);
  assert.ok(bcryptMatches(long + "anything", hash));
  assert.ok(!bcryptMatches(long.slice(1), hash));
});

Deno.test("bcrypt: malformed hashes match nothing", async () => {
  await requireTool("htpasswd");
  const hash = await htpasswdHash("secret", 4);
  for (
    const bad of [
      hash.slice(0, -1),
      hash.replace("$04$", "$03$"),
      hash.replace("$2y$", "$1$"),
      "",
      "$2y$04$",
    ]
  ) {
    assert.ok(!isBcryptHash(bad), bad);
    assert.ok(!bcryptMatches("secret", bad), bad);
  }
});
