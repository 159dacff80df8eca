import assert from "node:assert/strict";
import { findImage, Images } from "../../content/images/records.ts";
import { Store } from "../../content/store/store.ts";
import { writeBlob } from "../../content/store/write_blob.ts";
import type { Descriptor } from "../../content/descriptor.ts";
import { digestOf } from "../../content/digest.ts";
import { InvalidArgumentError, NotFoundError } from "../../content/errors.ts";
import { withTempDir } from "../_helpers/temp.ts";

const IMAGES = new URL("../../content/images/records.ts", import.meta.url).href;

function target(text: string): Descriptor {
  const bytes = new TextEncoder().encode(text);
  return {
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: digestOf(bytes),
    size: bytes.length,
  };
}

async function readIndex(root: string): Promise<{ manifests: Descriptor[] }> {
  return JSON.parse(await Deno.readTextFile(`${root}/index.json`));
}

Deno.test("images.put() writes an OCI index entry named for containerd and skopeo", async () => {
  await withTempDir(async (root) => {
    const images = new Images(root);
    const record = await images.put("127.0.0.1:5000/app/web:v1", target("a"));
    assert.deepEqual(record, { name: "127.0.0.1:5000/app/web:v1", target: target("a") });
    const index = await readIndex(root);
    assert.equal(index.manifests.length, 1);
    assert.deepEqual(index.manifests[0].annotations, {
      "io.containerd.image.name": "127.0.0.1:5000/app/web:v1",
      "org.opencontainers.image.ref.name": "127.0.0.1:5000/app/web:v1",
    });
    assert.deepEqual(await images.get("127.0.0.1:5000/app/web:v1"), record);
    // no temporary files left behind
    const names = [...Deno.readDirSync(root)].map((e) => e.name).sort();
    assert.deepEqual(names, ["index.json", "index.json.lock"]);
  });
});

Deno.test("images.put() replaces a record of the same name in place", async () => {
  await withTempDir(async (root) => {
    const images = new Images(root);
    await images.put("r/a:1", target("a"));
    await images.put("r/b:1", target("b"));
    await images.put("r/a:1", target("c"));
    const list = await images.list();
    assert.deepEqual(list.map((r) => [r.name, r.target.digest]), [
      ["r/a:1", target("c").digest],
      ["r/b:1", target("b").digest],
    ]);
  });
});

Deno.test("images.remove() removes one record and keeps the rest", async () => {
  await withTempDir(async (root) => {
    const images = new Images(root);
    await images.put("r/a:1", target("a"));
    await images.put("r/b:1", target("b"));
    await images.remove("r/a:1");
    assert.deepEqual((await images.list()).map((r) => r.name), ["r/b:1"]);
    const { ino } = await Deno.stat(`${root}/index.json`);
    await assert.rejects(images.remove("r/a:1"), NotFoundError);
    assert.equal(
      (await Deno.stat(`${root}/index.json`)).ino,
      ino,
      "nothing removed, nothing written",
    );
    await assert.rejects(
      images.get("r/a:1"),
      (e) => e instanceof NotFoundError && e.message === "image r/a:1 not found",
    );
  });
});

Deno.test("images.find() takes any spelling of a record's reference and refuses bad names", async () => {
  await withTempDir(async (root) => {
    const images = new Images(root);
    await images.put("docker.io/library/alpine:latest", target("alpine"));
    await images.put("latest", target("other tool")); // a bare ref.name, as skopeo writes it
    assert.equal((await images.find("alpine")).name, "docker.io/library/alpine:latest");
    assert.equal(
      (await images.find("library/alpine:latest")).name,
      "docker.io/library/alpine:latest",
    );
    assert.equal((await images.find("latest")).target.digest, target("other tool").digest);
    await assert.rejects(
      images.find("alpine:3"),
      (e) => e instanceof NotFoundError && e.message === "image alpine:3 not found",
    );
    await assert.rejects(
      images.find("a b"),
      (e) => e instanceof InvalidArgumentError && e.message === 'invalid image name "a b"',
    );
  });
});

Deno.test("findImage() reads a digest as stored content and refuses a malformed one", async () => {
  await withTempDir(async (root) => {
    const store = await Store.open(root);
    const bytes = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, manifests: [] }));
    const digest = digestOf(bytes);
    await writeBlob(store, `index-${digest}`, [bytes], { digest, size: bytes.length });
    const found = await findImage(store, digest);
    assert.deepEqual(found, {
      target: { mediaType: "application/vnd.oci.image.index.v1+json", digest, size: bytes.length },
    });
    await assert.rejects(findImage(store, `sha256:${"0".repeat(64)}`), NotFoundError);
    await assert.rejects(
      findImage(store, "sha256:../../etc/passwd"),
      (e) => e instanceof InvalidArgumentError && e.message.includes('"sha256:../../etc/passwd"'),
    );
  });
});

Deno.test("images.list() keeps entries other tools wrote, named by ref.name", async () => {
  await withTempDir(async (root) => {
    const unnamed = target("unnamed");
    const skopeoEntry = {
      ...target("s"),
      annotations: { "org.opencontainers.image.ref.name": "latest" },
    };
    await Deno.writeTextFile(
      `${root}/index.json`,
      JSON.stringify({ schemaVersion: 2, manifests: [unnamed, skopeoEntry] }),
    );
    const images = new Images(root);
    await images.put("r/a:1", target("a"));
    assert.deepEqual((await images.list()).map((r) => r.name), ["latest", "r/a:1"]);
    assert.equal((await images.roots()).length, 3);
  });
});

Deno.test("images.put() rejects names with whitespace or control characters", async () => {
  await withTempDir(async (root) => {
    const images = new Images(root);
    for (const bad of ["", "a b", "a\tb", "a\nb", "é"]) {
      await assert.rejects(images.put(bad, target("a")), InvalidArgumentError);
    }
  });
});

Deno.test("images.put() from concurrent processes loses no record", async () => {
  await withTempDir(async (root) => {
    const script = (name: string, text: string) =>
      `import { Images } from ${JSON.stringify(IMAGES)};
       import { digestOf } from ${
        JSON.stringify(new URL("../../content/digest.ts", import.meta.url).href)
      };
       const bytes = new TextEncoder().encode(${JSON.stringify(text)});
       const target = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: digestOf(bytes), size: bytes.length };
       for (let i = 0; i < 20; i++) await new Images(${JSON.stringify(root)}).put(${
        JSON.stringify(name)
      } + i, target);`;
    const children = ["r/a:", "r/b:", "r/c:", "r/a:"].map((name, i) =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", script(name, `text-${i}`)],
        stdout: "null",
        stderr: "piped",
      }).output()
    );
    for (const result of await Promise.all(children)) {
      assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
    }
    const names = (await new Images(root).list()).map((r) => r.name).sort();
    assert.equal(names.length, 60); // r/a:* written twice, still one record each
    assert.equal(new Set(names).size, 60);
  });
});
