/**
 * Registry authentication: `WWW-Authenticate` challenges, the bearer token flow (realm, service,
 * scope; anonymous without credentials; tokens cached per registry and scope until they expire)
 * and Basic auth. Tokens and passwords never reach an error message.
 */
import type { CredentialProvider, Credentials } from "./credentials.ts";
import { RegistryError, UnauthorizedError } from "./errors.ts";
import { RETRYABLE_STATUSES } from "./_retry.ts";
import { readCapped } from "./_body.ts";
import { checkFollowedUrl, mayCarryCredentials } from "./_url_policy.ts";

/** One challenge of a `WWW-Authenticate` header. */
export interface Challenge {
  /** The scheme in lower case: `bearer`, `basic`. */
  scheme: string;
  /** Its auth-params, names in lower case. */
  params: Record<string, string>;
}

/** Parses a `WWW-Authenticate` header, which may hold several challenges. */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const skip = (chars: RegExp) => {
    while (i < header.length && chars.test(header[i])) i++;
  };
  const token = () => {
    const start = i;
    while (i < header.length && !/[\s,=]/.test(header[i])) i++;
    return header.slice(start, i);
  };
  while (i < header.length) {
    skip(/[\s,]/);
    const name = token();
    if (name === "") {
      i++;
      continue;
    }
    skip(/\s/);
    if (header[i] !== "=" || challenges.length === 0) {
      challenges.push({ scheme: name.toLowerCase(), params: {} });
      continue;
    }
    i++; // "="
    skip(/\s/);
    let value = "";
    if (header[i] === '"') {
      i++;
      while (i < header.length && header[i] !== '"') {
        if (header[i] === "\\" && i + 1 < header.length) i++;
        value += header[i++];
      }
      i++; // closing quote
    } else {
      value = token();
    }
    challenges[challenges.length - 1].params[name.toLowerCase()] = value;
  }
  return challenges;
}

/** Sends a request to a token server (with retries on transient failures) and returns the reply. */
export type TokenSender = (url: URL, init: RequestInit) => Promise<Response>;

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Keeps what each registry asked for and the tokens it handed out. */
export class Authorizer {
  readonly #credentials: CredentialProvider;
  readonly #send: TokenSender;
  /** The challenge each registry answered with last, and the URL that answered it. */
  readonly #challenges = new Map<string, Challenge & { registryUrl: URL }>();
  /** Tokens (or token requests in flight) by registry and scope. */
  readonly #tokens = new Map<string, Promise<CachedToken>>();
  readonly #found = new Map<string, Promise<Credentials | undefined>>();

  /** Creates an authorizer over a credential provider and a way to reach token servers. */
  constructor(credentials: CredentialProvider, send: TokenSender) {
    this.#credentials = credentials;
    this.#send = send;
  }

  /** Whether credentials exist for the registry and repository (for error hints). */
  async hasCredentials(registry: string, repository: string): Promise<boolean> {
    const found = await this.#lookup(registry, repository);
    return found?.username !== undefined || !!found?.identityToken || !!found?.registryToken;
  }

  /**
   * The `Authorization` value for a request, from what the registry asked for before; undefined
   * while it has not challenged us (the first request goes without, as in docker).
   */
  async authorization(
    registry: string,
    repository: string,
    scope: string,
  ): Promise<string | undefined> {
    const challenge = this.#challenges.get(registry);
    if (!challenge) return undefined;
    const credentials = await this.#lookup(registry, repository);
    if (challenge.scheme === "basic") return basic(credentials);
    if (credentials?.registryToken) return `Bearer ${credentials.registryToken}`;
    const key = `${registry} ${scope}`;
    let pending = this.#tokens.get(key);
    if (pending) {
      const cached = await pending.catch(() => undefined);
      if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
      if (this.#tokens.get(key) === pending) this.#tokens.delete(key);
    }
    pending = this.#tokens.get(key) ?? this.#fetchToken(challenge, credentials, scope, key);
    return `Bearer ${(await pending).token}`;
  }

  /**
   * Handles a 401: learns the challenge and gets a fresh token (or arms Basic auth). Returns
   * whether the request is worth sending once more; the caller does that at most once.
   */
  async unauthorized(
    registry: string,
    repository: string,
    scope: string,
    header: string | null,
    sent: string | undefined,
    registryUrl: URL,
  ): Promise<boolean> {
    const challenges = parseChallenges(header ?? "");
    const found = challenges.find((c) => c.scheme === "bearer" && c.params.realm) ??
      challenges.find((c) => c.scheme === "basic");
    if (!found) return false;
    const challenge = { ...found, registryUrl };
    this.#challenges.set(registry, challenge);
    const credentials = await this.#lookup(registry, repository);
    if (challenge.scheme === "basic") {
      return credentials?.username !== undefined && !sent?.startsWith("Basic ");
    }
    if (credentials?.registryToken) return !sent?.startsWith("Bearer ");
    const key = `${registry} ${scope}`;
    const pending = this.#tokens.get(key);
    if (pending) {
      // a parallel request may have got a new token meanwhile: use that one
      const current = await pending.catch(() => undefined);
      if (current && `Bearer ${current.token}` !== sent) return true;
    }
    // the token we sent (if any) was refused: drop it and ask for a new one
    this.#tokens.delete(key);
    await this.#fetchToken(challenge, credentials, scope, key);
    return true;
  }

  #lookup(registry: string, repository: string): Promise<Credentials | undefined> {
    const key = `${registry}/${repository}`;
    let found = this.#found.get(key);
    if (!found) {
      found = this.#credentials(registry, repository);
      this.#found.set(key, found);
    }
    return found;
  }

  #fetchToken(
    challenge: Challenge & { registryUrl: URL },
    credentials: Credentials | undefined,
    scope: string,
    key: string,
  ): Promise<CachedToken> {
    const pending = this.#requestToken(challenge, credentials, scope);
    this.#tokens.set(key, pending);
    pending.catch(() => {
      if (this.#tokens.get(key) === pending) this.#tokens.delete(key);
    });
    return pending;
  }

  async #requestToken(
    challenge: Challenge & { registryUrl: URL },
    credentials: Credentials | undefined,
    scope: string,
  ): Promise<CachedToken> {
    let realm: URL;
    try {
      realm = new URL(challenge.params.realm);
    } catch {
      throw new RegistryError(
        `registry sent an invalid token realm ${JSON.stringify(challenge.params.realm)}`,
      );
    }
    checkFollowedUrl(realm, challenge.registryUrl, "the token realm");
    const secret = credentials?.identityToken ?? credentials?.username;
    if (secret !== undefined && !mayCarryCredentials(realm)) {
      throw new RegistryError(
        `refusing to send credentials over plain HTTP to the token realm ${realm.href}`,
      );
    }
    const scopes = [...new Set([...(challenge.params.scope ?? "").split(" "), ...scope.split(" ")])]
      .filter((s) => s !== "");
    const service = challenge.params.service;
    const where = `${realm.origin}${realm.pathname}`; // the query may carry secrets
    const started = Date.now();
    let reply: Response;
    if (credentials?.identityToken) {
      const form = new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: credentials.identityToken,
        client_id: "dist",
      });
      if (service) form.set("service", service);
      if (scopes.length) form.set("scope", scopes.join(" "));
      reply = await this.#send(realm, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: form,
      });
    } else {
      const url = new URL(realm);
      if (service) url.searchParams.set("service", service);
      for (const s of scopes) url.searchParams.append("scope", s);
      const headers = new Headers();
      const authorization = basic(credentials);
      if (authorization) {
        headers.set("authorization", authorization);
        url.searchParams.set("account", credentials!.username!);
      }
      reply = await this.#send(url, { method: "GET", headers });
    }
    const who = credentials?.username !== undefined
      ? `user ${JSON.stringify(credentials.username)}`
      : credentials?.identityToken
      ? "the identity token"
      : "anonymous access";
    if (!reply.ok) {
      await reply.body?.cancel();
      const message = `token server ${where} refused ${who} for ${scopes.join(" ")}: ` +
        `${reply.status} ${reply.statusText}`.trimEnd();
      if (reply.status === 401 || reply.status === 403) {
        throw new UnauthorizedError(message, { status: reply.status });
      }
      throw new RegistryError(message, {
        status: reply.status,
        retryable: RETRYABLE_STATUSES.has(reply.status),
      });
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    const tooLarge = () => new RegistryError(`token server ${where} sent more than 1 MiB`);
    try {
      body = JSON.parse(new TextDecoder().decode(await readCapped(reply.body, 1 << 20, tooLarge)));
    } catch (error) {
      if (error instanceof RegistryError) throw error;
      throw new RegistryError(`token server ${where} sent a reply that is not JSON`);
    }
    const token = typeof body.token === "string" && body.token !== ""
      ? body.token
      : typeof body.access_token === "string"
      ? body.access_token
      : "";
    if (token === "") throw new RegistryError(`token server ${where} sent no token`);
    // the spec's default lifetime is 60 s; renew a little early so a token never expires in flight
    const lifetime = typeof body.expires_in === "number" && body.expires_in > 0
      ? body.expires_in
      : 60;
    return { token, expiresAt: started + lifetime * 1000 * 0.9 };
  }
}

function basic(credentials: Credentials | undefined): string | undefined {
  if (credentials?.username === undefined) return undefined;
  const bytes = new TextEncoder().encode(`${credentials.username}:${credentials.password ?? ""}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}
