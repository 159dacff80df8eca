/** Test certificates: a throw-away CA and a server certificate for 127.0.0.1 and localhost. */
import { requireTool } from "./temp.ts";

/** PEM material written by {@link makeCertificates}. */
export interface TestCertificates {
  /** Path of the CA certificate (what `--ca-file` takes). */
  caPath: string;
  /** The server's certificate chain, PEM. */
  cert: string;
  /** The server's private key, PEM. */
  key: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const result = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!result.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(result.stderr)}`);
  }
}

/** Makes a CA and a server certificate signed by it, in `dir`. */
export async function makeCertificates(dir: string): Promise<TestCertificates> {
  await requireTool("openssl");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=dist test CA",
    ],
    dir,
  );
  await openssl(
    ["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
    dir,
  );
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
  );
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "1",
      "-extfile",
      "server.ext",
    ],
    dir,
  );
  return {
    caPath: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/server.pem`),
    key: await Deno.readTextFile(`${dir}/server.key`),
  };
}
