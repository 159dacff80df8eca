/**
 * What the handlers of `dist serve` share: the store, its image records seen as repositories and
 * tags, and the server's settings.
 *
 * A record named `HOST/REPO:TAG` (any host) is served as repository `REPO`, tag `TAG`: pulling
 * `SERVER/library/alpine:3` finds the record `docker.io/library/alpine:3`. When records of two
 * hosts share a repository and tag, the one whose name sorts first is served. A tag pushed to the
 * server is recorded as `SERVER/REPO:TAG`, SERVER as the client named it (its `Host` header); a
 * manifest pushed by digest as `SERVER/REPO@DIGEST`. A manifest is served by digest in the
 * repositories whose records reach it; blobs are served by digest in any repository.
 *
 * @module
 */
import type { Descriptor } from "../../content/descriptor.ts";
import type { Digest } from "../../content/digest.ts";
import { walkImage } from "../../content/images/graph.ts";
import { type ImageRecord, Images } from "../../content/images/records.ts";
import { parseReference } from "../../content/reference.ts";
import type { Lease } from "../../content/images/lease.ts";
import type { Store } from "../../content/store/store.ts";

/**
 * How long an uploaded blob is kept from garbage collection without a manifest that uses it: a
 * push sends its manifest seconds after its blobs; an hour covers a slow or resumed one.
 */
const UPLOAD_GRACE_MS = 60 * 60 * 1000;

/** Settings of the server. */
export interface ServeSettings {
  /** Accept pushes (uploads, manifest `PUT`s). */
  allowPush: boolean;
  /** Accept `DELETE` of manifests and blobs (never of blobs an image uses). */
  allowDelete: boolean;
}

/** A record as the server sees it: repository, tag, and what it points at. */
export interface Tagged {
  repository: string;
  /** Undefined for a record of a manifest pushed by digest. */
  tag?: string;
  record: ImageRecord;
}

/** The store and settings handed to every handler. */
export class ServeContext {
  readonly store: Store;
  readonly images: Images;
  readonly settings: ServeSettings;
  readonly #lease?: Lease;

  /** `lease` (one that lets garbage collection run) protects what clients upload. */
  constructor(store: Store, settings: ServeSettings, lease?: Lease) {
    this.store = store;
    this.images = new Images(store.root);
    this.settings = settings;
    this.#lease = lease;
  }

  /**
   * Keeps `digest` from garbage collection for a while: a blob or manifest a client is putting
   * here, which no record uses until its manifest (or tag) comes. Called before it is written.
   */
  protectUpload(digest: Digest): void {
    this.#lease?.protect(digest, Date.now() + UPLOAD_GRACE_MS);
  }

  /** Ends {@link protectUpload}'s hold on `digest`: a client deletes it. */
  forgetUpload(digest: Digest): void {
    this.#lease?.forget(digest);
  }

  /** Every record that names a repository, sorted by record name. */
  async tagged(): Promise<Tagged[]> {
    const out: Tagged[] = [];
    for (const record of await this.images.list()) {
      let ref;
      try {
        ref = parseReference(record.name);
      } catch {
        continue; // another tool's name that is no reference: not served
      }
      out.push({ repository: ref.repository, tag: ref.digest ? undefined : ref.tag, record });
    }
    return out.sort((a, b) => (a.record.name < b.record.name ? -1 : 1));
  }

  /** Whether a record of `repository` reaches the manifest or index `digest`. */
  async reaches(repository: string, digest: Digest): Promise<boolean> {
    const roots = (await this.tagged()).filter((t) => t.repository === repository)
      .map((t) => t.record.target);
    if (roots.some((root) => root.digest === digest)) return true;
    for await (const node of walkImage(this.store, roots)) {
      if (node.descriptor.digest === digest && node.present) return true;
    }
    return false;
  }

  /** The descriptor tagged `tag` in `repository`, if any. */
  async lookupTag(repository: string, tag: string): Promise<Descriptor | undefined> {
    return (await this.tagged()).find((t) => t.repository === repository && t.tag === tag)
      ?.record.target;
  }
}
