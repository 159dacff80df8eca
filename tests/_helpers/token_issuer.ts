/**
 * A small bearer-token server for the registry's `auth: token` mode, on a free loopback port.
 *
 * It signs real ES256 JWTs with a WebCrypto P-256 key; `openssl` makes the self-signed certificate
 * the registry verifies them with (see shared/notes/registry-token-auth.md). Pass `issuer.auth`
 * to `startRegistry`. Every token request is recorded, so tests can count them (token caching)
 * and check who asked for what.
 */
import type { RegistryAuth } from "./registry.ts";
import { removeTree, requireTool } from "./temp.ts";

/** How the issuer behaves. */
export interface TokenIssuerOptions {
  /** Accepted Basic credentials, user → password. */
  users?: Record<string, string>;
  /** Accepted OAuth2 refresh tokens (identity tokens), token → user, for `POST` requests. */
  refreshTokens?: Record<string, string>;
  /** Whether requests without credentials get `pull` access (default true). */
  anonymousPull?: boolean;
  /**
   * The lifetime in seconds written into a token's `exp` (default 300), given the user (undefined
   * for anonymous requests) and how many tokens that user got before. A value below -60 makes a
   * token the registry rejects as expired (it allows 60 s of clock skew).
   */
  lifetime?: (user: string | undefined, index: number) => number;
  /** The `expires_in` the replies announce (default 300). */
  expiresIn?: number;
}

/** One request the issuer answered. */
export interface TokenRequest {
  method: string;
  /** The authenticated user; undefined for anonymous requests. */
  user?: string;
  service: string | null;
  scopes: string[];
  /** The HTTP status of the answer. */
  status: number;
}

/** A running token issuer. */
export interface TokenIssuer {
  /** The token endpoint, `http://127.0.0.1:PORT/token`. */
  realm: string;
  service: string;
  issuer: string;
  /** The PEM certificate of the signing key. */
  certificatePath: string;
  /** Ready to pass to `startRegistry`. */
  auth: RegistryAuth;
  /** Every request so far. */
  requests: TokenRequest[];
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** The libtrust key ID: SHA-256 of the DER public key, 240 bits, base32, groups of 4 with `:`. */
async function libtrustKeyId(spki: ArrayBuffer): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", spki)).subarray(0, 30);
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(":");
}

function base64Url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  return encodeBase64(data).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Starts the issuer; the registry it serves must use `issuer.auth`. */
export async function startTokenIssuer(options: TokenIssuerOptions = {}): Promise<TokenIssuer> {
  await requireTool("openssl");
  const dir = await Deno.makeTempDir({ prefix: "dist-token-issuer-" });
  const service = "dist-test-registry";
  const issuer = "dist-test-issuer";
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const pem = `-----BEGIN PRIVATE KEY-----\n${
    encodeBase64(pkcs8).match(/.{1,64}/g)!.join("\n")
  }\n-----END PRIVATE KEY-----\n`;
  const keyPath = `${dir}/key.pem`;
  const certificatePath = `${dir}/cert.pem`;
  await Deno.writeTextFile(keyPath, pem);
  const made = await new Deno.Command("openssl", {
    args: [
      "req",
      "-new",
      "-x509",
      "-key",
      keyPath,
      "-out",
      certificatePath,
      "-days",
      "1",
      "-subj",
      `/CN=${issuer}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!made.success) {
    await removeTree(dir);
    throw new Error(
      `openssl could not make the issuer certificate: ${new TextDecoder().decode(made.stderr)}`,
    );
  }
  const kid = await libtrustKeyId(await crypto.subtle.exportKey("spki", keys.publicKey));
  const users = options.users ?? {};
  const anonymousPull = options.anonymousPull ?? true;
  const requests: TokenRequest[] = [];
  const issued = new Map<string | undefined, number>();

  const sign = async (claims: Record<string, unknown>) => {
    const input = `${base64Url(JSON.stringify({ alg: "ES256", typ: "JWT", kid }))}.${
      base64Url(JSON.stringify(claims))
    }`;
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      keys.privateKey,
      new TextEncoder().encode(input),
    );
    return `${input}.${base64Url(new Uint8Array(signature))}`; // raw r‖s, as JWS wants
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    let user: string | undefined;
    let scopes = url.searchParams.getAll("scope").flatMap((s) => s.split(" "));
    let serviceParam = url.searchParams.get("service");
    let refused = false;
    if (req.method === "POST") {
      const form = new URLSearchParams(await req.text());
      scopes = (form.get("scope") ?? "").split(" ").filter((s) => s !== "");
      serviceParam = form.get("service");
      user = options.refreshTokens?.[form.get("refresh_token") ?? ""];
      refused = user === undefined;
    } else {
      const header = req.headers.get("authorization");
      if (header?.startsWith("Basic ")) {
        const decoded = atob(header.slice(6));
        const colon = decoded.indexOf(":");
        const [name, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
        if (users[name] !== undefined && users[name] === password) user = name;
        else refused = true;
      } else if (!anonymousPull) {
        refused = true;
      }
    }
    const record = { method: req.method, user, service: serviceParam, scopes, status: 401 };
    requests.push(record);
    if (refused) {
      return Response.json({ details: "incorrect username or password" }, { status: 401 });
    }
    const access = scopes.map((scope) => {
      const [type, name, actions] = scope.split(":");
      const wanted = (actions ?? "").split(",");
      const granted = user ? wanted : wanted.filter((a) => a === "pull");
      return { type, name, actions: granted };
    });
    const now = Math.floor(Date.now() / 1000);
    const index = issued.get(user) ?? 0;
    issued.set(user, index + 1);
    const lifetime = options.lifetime?.(user, index) ?? 300;
    const token = await sign({
      iss: issuer,
      sub: user ?? "",
      aud: service,
      exp: now + lifetime,
      nbf: now - 10,
      iat: now,
      jti: crypto.randomUUID(),
      access,
    });
    record.status = 200;
    return Response.json({
      token,
      access_token: token,
      expires_in: options.expiresIn ?? 300,
      issued_at: new Date(now * 1000).toISOString(),
    });
  });
  const realm = `http://127.0.0.1:${server.addr.port}/token`;
  return {
    realm,
    service,
    issuer,
    certificatePath,
    auth: { kind: "token", realm, service, issuer, certificatePath },
    requests,
    async stop() {
      await server.shutdown();
      await removeTree(dir);
    },
  };
}
