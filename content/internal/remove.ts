/** Removing trees that may hold read-only directories (an unpacked rootfs). */

/** Removes a tree, opening up read-only directories first when needed. */
export async function removeAll(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    openUp(path);
    await Deno.remove(path, { recursive: true });
  }
}

/** Makes every directory under `abs` owner-writable (no symlinks followed) so it can be removed. */
export function openUp(abs: string): void {
  const info = Deno.lstatSync(abs);
  if (!info.isDirectory) return;
  Deno.chmodSync(abs, ((info.mode ?? 0) & 0o7777) | 0o700);
  for (const child of Deno.readDirSync(abs)) {
    if (child.isDirectory && !child.isSymlink) openUp(`${abs}/${child.name}`);
  }
}
