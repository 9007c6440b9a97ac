// The object store both backends share: GCS (vertex) or a directory (local), with the same layout.
// Keys are relative to the store root (`gs://<bucket>/avatar/` or `<store>/avatar/`), see core/store-keys.
import type { Readable } from "node:stream";
import type { Context } from "../context.ts";
import { requireValue } from "../core/config.ts";

export interface ObjectInfo {
  key: string;
  uri: string;
  size: number;
  contentType?: string;
  /** Custom metadata (GCS object metadata; a sidecar-free best effort locally). */
  metadata?: Record<string, string>;
  updated?: string;
}

/**
 * What to upload. A function is called once per attempt, so the store can retry a failed upload
 * from the start; a plain stream can be sent only once.
 */
export type PutBody = Uint8Array | Readable | (() => Readable);

export interface PutOptions {
  contentType?: string;
  metadata?: Record<string, string>;
  /**
   * Exact size when known: GCS declares it when the upload session starts, so a body of any other
   * length fails instead of committing.
   */
  size?: number;
  /** Called with the total bytes sent so far. */
  onProgress?: (bytes: number) => void;
  signal?: AbortSignal;
  /**
   * Default false: create-only. When the key already exists the put fails with an AvatarError
   * whose code is ALREADY_EXISTS and nothing is written.
   */
  overwrite?: boolean;
}

export interface ObjectStore {
  readonly kind: "gcs" | "local";
  /** URI of the root, e.g. gs://bucket/avatar or file:///home/me/.avatar/store/avatar. */
  readonly rootUri: string;
  uri(key: string): string;
  /** Fails (NOT_FOUND, PERMISSION, …) when the store itself is unusable, e.g. the bucket is missing. */
  ready(): Promise<void>;
  exists(key: string): Promise<boolean>;
  /** undefined when there is no such object. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  /**
   * Writes an object so that it appears complete or not at all: a failed or interrupted put never
   * leaves an object at `key`.
   */
  put(key: string, body: PutBody, options?: PutOptions): Promise<ObjectInfo>;
  /** Fails with NOT_FOUND when missing. */
  read(key: string, options?: { signal?: AbortSignal }): Promise<Readable>;
  /** An object outside this store's root, by its full URI (gs:// on GCS; absent on the local store). */
  readUri?(uri: string): Promise<Readable>;
  /** Objects whose key starts with prefix, sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Idempotent: deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
  /** A dry run's offline stand-in (no credentials): one line on what it could not check, or undefined. */
  unchecked?(): string | undefined;
}

/** The store of the configured backend: GCS for vertex (needs a bucket), a directory for local. */
export async function openStore(ctx: Pick<Context, "config" | "env"> & Partial<Pick<Context, "flags">>): Promise<ObjectStore> {
  const values = ctx.config.values;
  if (values.backend === "vertex") {
    const bucket = requireValue(ctx.config, "bucket");
    const { openVertexStore } = await import("./vertex/open-store.ts");
    return (await openVertexStore({ bucket, project: values.project, env: ctx.env, dryRun: ctx.flags?.dryRun === true })).store;
  }
  const { LocalStore } = await import("./local/store.ts");
  return new LocalStore(values.store);
}
