/**
 * Basic authentication for `dist serve` from an htpasswd file of bcrypt hashes, as the
 * distribution registry reads it (`htpasswd -B`). A credential that passed is remembered, as
 * bcrypt is slow on purpose.
 *
 * @module
 */
import { InvalidArgumentError } from "../../content/errors.ts";
import { ServeError } from "./errors.ts";
import { bcryptMatches, isBcryptHash } from "./bcrypt.ts";

/** Checks `Authorization` headers against the users of an htpasswd file. */
export class Htpasswd {
  readonly #users: Map<string, string>;
  readonly #passed = new Set<string>();

  private constructor(users: Map<string, string>) {
    this.#users = users;
  }

  /** Reads `path`: `user:$2y$…` lines; only bcrypt hashes are accepted. */
  static async load(path: string): Promise<Htpasswd> {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      throw new InvalidArgumentError(
        `cannot read htpasswd file ${path}: ${(error as Error).message}`,
      );
    }
    const users = new Map<string, string>();
    for (const [i, line] of text.split("\n").entries()) {
      if (line.trim() === "" || line.startsWith("#")) continue;
      const colon = line.indexOf(":");
      const hash = line.slice(colon + 1).trim();
      if (colon <= 0 || !isBcryptHash(hash)) {
        throw new InvalidArgumentError(
          `invalid htpasswd file ${path} line ${i + 1}: want user:bcrypt-hash (htpasswd -B)`,
        );
      }
      users.set(line.slice(0, colon), hash);
    }
    return new Htpasswd(users);
  }

  /** Throws a 401 with a Basic challenge unless `header` names a user with the right password. */
  check(header: string | null): void {
    if (header !== null && this.#passed.has(header)) return;
    const refuse = () =>
      new ServeError(401, "UNAUTHORIZED", "authentication required", {
        "www-authenticate": 'Basic realm="dist"',
      });
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? "");
    if (!match) throw refuse();
    let decoded: string;
    try {
      decoded = new TextDecoder().decode(Uint8Array.from(atob(match[1]), (c) => c.charCodeAt(0)));
    } catch {
      throw refuse();
    }
    const colon = decoded.indexOf(":");
    const hash = this.#users.get(decoded.slice(0, colon));
    if (colon < 0 || hash === undefined || !bcryptMatches(decoded.slice(colon + 1), hash)) {
      throw refuse();
    }
    this.#passed.add(header!);
  }
}
