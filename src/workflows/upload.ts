// avatar upload: prepare → zip → store under <root>/<name>/datasets/<sha256>.zip. The name is the
// hash of the normalised images, known before any byte is sent, so a re-run that finds the object
// uploads nothing. The zip streams from the spooled images straight into the store.
import type { Context } from "../context.ts";
import type { ObjectStore } from "../backends/store.ts";
import { datasetZipSize } from "../core/dataset.ts";
import { AvatarError } from "../core/errors.ts";
import { resourceLabels, validateAvatarName } from "../core/names.ts";
import { datasetKey } from "../core/store-keys.ts";
import { prepareDataset, type PreparedDataset, type PrepareOptions, type PrepareSummary } from "./prepare.ts";
import { datasetZip } from "./zip.ts";

export interface UploadOptions extends PrepareOptions {
  name: string;
  dryRun?: boolean;
}

export type DatasetStatus = "uploaded" | "exists" | "dry-run";

export interface DatasetUpload {
  name: string;
  /** gs://… or file://… */
  uri: string;
  /** Key in the store (relative to its avatar/ root). */
  key: string;
  sha256: string;
  /** Size of the zip in bytes. */
  bytes: number;
  images: number;
  status: DatasetStatus;
  /** Bytes sent by this run (0 when the dataset was already there or on a dry run). */
  uploadedBytes: number;
  /** On a dry run: whether the object is already there (undefined when it could not be checked). */
  exists?: boolean;
}

export interface UploadResult extends DatasetUpload {
  prepare: PrepareSummary;
}

/**
 * Makes sure the prepared dataset is in the store: checks for the content-addressed object first,
 * then streams the zip (create-only, so a concurrent run that wins is also "exists").
 */
export async function ensureDataset(
  ctx: Pick<Context, "out" | "signal">,
  store: ObjectStore,
  prepared: PreparedDataset,
  name: string,
  options: { dryRun?: boolean } = {},
): Promise<DatasetUpload> {
  const { summary, images, manifest } = prepared;
  const extras = manifest ? [{ entry: manifest.entry, data: manifest.data, bytes: manifest.bytes }] : [];
  const key = datasetKey(name, summary.sha256);
  const uri = store.uri(key);
  const bytes = datasetZipSize(images, extras);
  const base = { name, uri, key, sha256: summary.sha256, bytes, images: images.length, uploadedBytes: 0 };

  if (options.dryRun) {
    let exists: boolean | undefined;
    try {
      exists = await store.exists(key);
    } catch (error) {
      ctx.out.detail(`Could not check ${uri}: ${(error as Error).message}`);
    }
    return { ...base, status: "dry-run", ...(exists === undefined ? {} : { exists }) };
  }

  if (await store.exists(key)) return { ...base, status: "exists" };

  const progress = ctx.out.progress(`Uploading ${images.length} photos`, bytes, "bytes");
  let sent = 0;
  try {
    const info = await store.put(key, () => datasetZip(images, extras), {
      contentType: "application/zip",
      metadata: { ...resourceLabels(name), "avatar-dataset-sha256": summary.sha256, "avatar-images": String(images.length) },
      size: bytes,
      signal: ctx.signal,
      onProgress: (n) => {
        sent = n;
        progress.update(n);
      },
    });
    progress.done();
    return { ...base, bytes: info.size, status: "uploaded", uploadedBytes: Math.max(sent, info.size) };
  } catch (error) {
    progress.done();
    if (error instanceof AvatarError && error.code === "ALREADY_EXISTS") return { ...base, status: "exists" };
    throw error;
  }
}

export async function uploadDataset(ctx: Pick<Context, "cwd" | "out" | "signal" | "config" | "env" | "flags">, options: UploadOptions): Promise<UploadResult> {
  const name = validateAvatarName(options.name);
  // Open and check the store while the photos are being prepared: loading the cloud client and a
  // round trip overlap with image work, and a missing bucket still stops the run at once.
  const stopPrepare = new AbortController();
  const opening = (async () => {
    const { openStore } = await import("../backends/store.ts");
    const store = await openStore(ctx);
    if (!options.dryRun) {
      try {
        await store.ready();
      } catch (error) {
        await store.close();
        throw error;
      }
    }
    return store;
  })();
  opening.catch(() => stopPrepare.abort());
  let prepared: PreparedDataset;
  try {
    prepared = await prepareDataset({ ...ctx, signal: AbortSignal.any([ctx.signal, stopPrepare.signal]) }, options);
  } catch (error) {
    if (stopPrepare.signal.aborted && !ctx.signal.aborted) await opening; // throws the store's error
    await opening.then((store) => store.close(), () => undefined);
    throw error;
  }
  try {
    const store = await opening;
    try {
      const upload = await ensureDataset(ctx, store, prepared, name, { dryRun: options.dryRun });
      const unchecked = store.unchecked?.();
      if (unchecked) ctx.out.warn(unchecked);
      return { ...upload, prepare: prepared.summary };
    } finally {
      await store.close();
    }
  } finally {
    await prepared.dispose();
  }
}
