/** A one-layer image of the system's static busybox, for tests that run bundles with runc. */
import { type TarWriteEntry, writeTar } from "../../content/layers/tar_writer.ts";
import { pushImage } from "./images.ts";
import { layerOf } from "./layout.ts";
import { requireTool } from "./temp.ts";

/** Pushes `repository:v1`: busybox as `/bin/sh`, `motd` as `/etc/motd`, and `cmd` as its Cmd. */
export async function pushBusybox(
  registryUrl: string,
  repository: string,
  motd: string,
  cmd: string[],
): Promise<void> {
  await requireTool("busybox");
  const entries: TarWriteEntry[] = [
    { header: { name: "bin/", type: "directory" } },
    { header: { name: "bin/busybox", mode: 0o755 }, body: await Deno.readFile("/bin/busybox") },
    { header: { name: "bin/sh", type: "symlink", linkname: "busybox" } },
    { header: { name: "etc/", type: "directory" } },
    { header: { name: "etc/motd" }, body: new TextEncoder().encode(motd) },
  ];
  const tar = new Uint8Array(await new Response(writeTar(entries)).arrayBuffer());
  await pushImage(registryUrl, repository, {
    layers: [layerOf(tar, "gzip")],
    tag: "v1",
    config: { Cmd: cmd },
  });
}
