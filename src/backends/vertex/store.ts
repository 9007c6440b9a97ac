// The vertex backend's object store: Cloud Storage through @google-cloud/storage, objects under
// gs://<bucket>/avatar/. Uploads are resumable, create-only (ifGenerationMatch: 0, which also lets
// the client retry), crc32c-validated; an object exists only once its last byte is committed.
import { setTimeout as delay } from "node:timers/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { File, Storage } from "@google-cloud/storage";
import { AvatarError } from "../../core/errors.ts";
import { checkStoreKey, checkStorePrefix, STORE_ROOT } from "../../core/store-keys.ts";
import type { ObjectInfo, ObjectStore, PutBody, PutOptions } from "../store.ts";
import { bucketListable } from "./bucket.ts";
import { createStorage } from "./clients.ts";
import { mapGoogleError } from "./errors.ts";

export interface GcsStoreOptions {
  /**
   * Client for uploads, built with the client's own retries off (maxRetries: 0). Its in-upload
   * resume can stall on a server that reports a lost offset; this store instead retries the whole
   * upload with a fresh session, which is cheap for datasets and never leaves a partial object.
   * Defaults to the main client.
   */
  uploadStorage?: Storage;
  /**
   * Resumable chunk size (a multiple of 256 KiB), buffered in memory per request. Default: none, one
   * streaming request; with a known size the session declares it, so a cut-off body never commits.
   */
  chunkSize?: number;
  /** Whole-upload attempts when the body can be re-created (a function or a buffer). */
  attempts?: number;
  /** First pause between whole-upload attempts; doubles each time. */
  retryDelayMs?: number;
}


interface GoogleishError {
  code?: number | string;
  message?: string;
  errors?: { reason?: string }[];
}

function statusOf(error: unknown): number | undefined {
  const code = (error as GoogleishError | undefined)?.code;
  const n = typeof code === "number" ? code : Number(code);
  return Number.isFinite(n) ? n : undefined;
}

/** The same classes of failure the storage client itself retries. */
export function isTransient(error: unknown): boolean {
  const status = statusOf(error);
  if (status !== undefined && [408, 429, 500, 502, 503, 504].includes(status)) return true;
  const e = (error ?? {}) as GoogleishError & { cause?: unknown };
  const text = `${typeof e.code === "string" ? e.code : ""} ${e.message ?? ""}`.toLowerCase();
  return /econnreset|econnrefused|epipe|etimedout|eai_again|socket hang up|unexpected connection closure|socket connection timeout|other side closed|fetch failed|premature close/.test(text);
}

function interrupted(uri: string): AvatarError {
  return new AvatarError("INTERRUPTED", `Interrupted; ${uri} was not created.`);
}

function alreadyExists(uri: string): AvatarError {
  return new AvatarError("ALREADY_EXISTS", `${uri} already exists.`, { hint: "Objects in the store are never overwritten." });
}

/** Fails the stream (so the upload is aborted, never committed) unless exactly `size` bytes pass. */
function exactLength(size: number, uri: string): Transform {
  let seen = 0;
  const mismatch = () => new AvatarError("INTERNAL", `The upload to ${uri} produced ${seen} bytes where ${size} were declared; nothing was stored.`);
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      callback(seen > size ? mismatch() : null, chunk);
    },
    flush(callback) {
      callback(seen === size ? null : mismatch());
    },
  });
}

export class GcsStore implements ObjectStore {
  readonly kind = "gcs" as const;
  readonly bucket: string;
  readonly #storage: Storage;
  readonly #uploadStorage: Storage;
  readonly #options: { chunkSize?: number; attempts: number; retryDelayMs: number };

  constructor(storage: Storage, bucket: string, options: GcsStoreOptions = {}) {
    this.#storage = storage;
    this.#uploadStorage = options.uploadStorage ?? storage;
    this.bucket = bucket;
    this.#options = {
      chunkSize: options.chunkSize,
      attempts: options.attempts ?? 3,
      retryDelayMs: options.retryDelayMs ?? 1000,
    };
  }

  get rootUri(): string {
    return `gs://${this.bucket}/${STORE_ROOT}`;
  }

  objectName(key: string): string {
    return `${STORE_ROOT}/${checkStoreKey(key)}`;
  }

  uri(key: string): string {
    return `gs://${this.bucket}/${this.objectName(key)}`;
  }

  #file(key: string): File {
    return this.#storage.bucket(this.bucket).file(this.objectName(key));
  }

  #info(key: string, metadata: Record<string, unknown>): ObjectInfo {
    const custom = metadata.metadata as Record<string, unknown> | undefined;
    return {
      key,
      uri: this.uri(key),
      size: Number(metadata.size ?? 0),
      contentType: typeof metadata.contentType === "string" ? metadata.contentType : undefined,
      metadata: custom ? Object.fromEntries(Object.entries(custom).map(([k, v]) => [k, String(v)])) : undefined,
      updated: typeof metadata.updated === "string" ? metadata.updated : undefined,
    };
  }

  async ready(): Promise<void> {
    let exists: boolean;
    try {
      exists = await bucketListable(this.#storage, this.bucket);
    } catch (error) {
      throw mapGoogleError(error, `checking gs://${this.bucket}`);
    }
    if (!exists) {
      throw new AvatarError("NOT_FOUND", `The bucket gs://${this.bucket} does not exist.`, {
        hint: "Check --bucket (or AVATAR_BUCKET), or create it with `avatar init --create-bucket`.",
      });
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const [metadata] = await this.#file(key).getMetadata();
      return this.#info(key, metadata as Record<string, unknown>);
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw mapGoogleError(error, `reading ${this.uri(key)}`);
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      const [exists] = await this.#file(key).exists();
      return exists;
    } catch (error) {
      throw mapGoogleError(error, `checking ${this.uri(key)}`);
    }
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<ObjectInfo> {
    const uri = this.uri(key);
    const replayable = body instanceof Uint8Array || typeof body === "function";
    const attempts = replayable ? Math.max(1, this.#options.attempts) : 1;
    for (let attempt = 1; ; attempt++) {
      if (options.signal?.aborted) throw interrupted(uri);
      try {
        return await this.#putOnce(key, body, options);
      } catch (error) {
        if (options.signal?.aborted) throw interrupted(uri);
        if (statusOf(error) === 412) throw alreadyExists(uri);
        if (attempt < attempts && isTransient(error)) {
          try {
            await delay(this.#options.retryDelayMs * 2 ** (attempt - 1), undefined, { signal: options.signal });
          } catch {
            throw interrupted(uri);
          }
          continue;
        }
        if (isTransient(error) && statusOf(error) === undefined) {
          const code = /\b(E[A-Z_]{3,})\b/.exec(String((error as Error)?.message ?? ""))?.[1] ?? "connection lost";
          throw new AvatarError("UNAVAILABLE", `Network error while uploading ${uri} (${code}); nothing was stored.`, {
            cause: error,
            hint: "Check the network connection (and AVATAR_GCS_ENDPOINT if you use an emulator), then run the same command again.",
          });
        }
        throw mapGoogleError(error, `uploading ${uri}`);
      }
    }
  }

  async #putOnce(key: string, body: PutBody, options: PutOptions): Promise<ObjectInfo> {
    const file = this.#uploadStorage.bucket(this.bucket).file(this.objectName(key));
    const source = body instanceof Uint8Array ? Readable.from([body]) : typeof body === "function" ? body() : body;
    const size = body instanceof Uint8Array ? body.length : options.size;
    const sink = file.createWriteStream({
      resumable: true,
      ...(this.#options.chunkSize ? { chunkSize: this.#options.chunkSize } : {}),
      validation: "crc32c",
      metadata: {
        contentType: options.contentType ?? "application/octet-stream",
        // Sent as X-Upload-Content-Length: the session knows the exact size to expect.
        ...(size !== undefined ? { contentLength: size } : {}),
        ...(options.metadata ? { metadata: options.metadata } : {}),
      },
      ...(options.overwrite ? {} : { preconditionOpts: { ifGenerationMatch: 0 } }),
    });
    sink.on("progress", (event: { bytesWritten?: number }) => {
      if (typeof event.bytesWritten === "number") options.onProgress?.(event.bytesWritten);
    });
    if (size === undefined) await pipeline(source, sink, { signal: options.signal });
    else await pipeline(source, exactLength(size, this.uri(key)), sink, { signal: options.signal });
    return this.#info(key, file.metadata as Record<string, unknown>);
  }

  /** Any object this client can read, named by its gs:// URI (`register --artifact-uri`). */
  async readUri(uri: string): Promise<Readable> {
    const parsed = /^gs:\/\/([^/]+)\/(.+)$/.exec(uri);
    if (!parsed) throw new AvatarError("BAD_INPUT", `${uri} is not a gs://bucket/object URI.`);
    const file = this.#storage.bucket(parsed[1]!).file(parsed[2]!);
    let exists: boolean;
    try {
      [exists] = await file.exists();
    } catch (error) {
      throw mapGoogleError(error, `reading ${uri}`);
    }
    if (!exists) throw new AvatarError("NOT_FOUND", `${uri} does not exist.`, { hint: "Check the URI: the folder must hold pytorch_lora_weights.safetensors and avatar.json." });
    return file.createReadStream({ validation: "crc32c" });
  }

  async read(key: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    if (!(await this.exists(key))) {
      throw new AvatarError("NOT_FOUND", `${this.uri(key)} does not exist.`, { hint: "Check the name; `avatar list` shows what exists." });
    }
    const stream = this.#file(key).createReadStream({ validation: "crc32c" });
    if (options.signal) {
      const abort = () => stream.destroy(interrupted(this.uri(key)));
      if (options.signal.aborted) abort();
      else options.signal.addEventListener("abort", abort, { once: true });
    }
    return stream;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkStorePrefix(prefix);
    try {
      const [files] = await this.#storage.bucket(this.bucket).getFiles({ prefix: `${STORE_ROOT}/${prefix}`, autoPaginate: true });
      return files
        .map((f) => this.#info(f.name.slice(STORE_ROOT.length + 1), f.metadata as Record<string, unknown>))
        .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    } catch (error) {
      throw mapGoogleError(error, `listing ${this.rootUri}/${prefix}`);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.#file(key).delete({ ignoreNotFound: true });
    } catch (error) {
      throw mapGoogleError(error, `deleting ${this.uri(key)}`);
    }
  }

  async close(): Promise<void> {}
}

export async function openGcsStore(options: { bucket: string; project?: string; env: Readonly<Record<string, string | undefined>> }): Promise<GcsStore> {
  const storage = await createStorage({ project: options.project, env: options.env });
  const uploadStorage = await createStorage({ project: options.project, env: options.env, maxRetries: 0 });
  return new GcsStore(storage, options.bucket, { uploadStorage });
}
