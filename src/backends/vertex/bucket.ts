// Bucket existence and creation through the official storage client.
import type { Storage } from "@google-cloud/storage";
import type { BucketSpec } from "../../core/bucket-spec.ts";
import { STORE_ROOT } from "../../core/store-keys.ts";
import { createStorage } from "./clients.ts";
import { mapGoogleError } from "./errors.ts";

/**
 * Whether the bucket exists, asked with an object list of one (storage.objects.list) rather than a
 * bucket metadata read: storage.buckets.get is not in roles/storage.objectAdmin, the only role the
 * CLI otherwise needs on the bucket. A missing bucket answers 404; a forbidden one throws (403).
 */
export async function bucketListable(storage: Storage, bucket: string): Promise<boolean> {
  try {
    await storage.bucket(bucket).getFiles({ prefix: `${STORE_ROOT}/`, maxResults: 1, autoPaginate: false });
    return true;
  } catch (error) {
    if (Number((error as { code?: unknown }).code) === 404) return false;
    throw error;
  }
}

export async function bucketExists(options: { bucket: string; project?: string; env: NodeJS.ProcessEnv }): Promise<boolean> {
  const storage = await createStorage(options);
  try {
    return await bucketListable(storage, options.bucket);
  } catch (error) {
    throw mapGoogleError(error, `checking gs://${options.bucket}`);
  }
}

export async function createBucket(spec: BucketSpec, options: { project?: string; env: NodeJS.ProcessEnv }): Promise<void> {
  const storage = await createStorage(options);
  const { name, ...metadata } = spec;
  try {
    await storage.createBucket(name, metadata);
  } catch (error) {
    throw mapGoogleError(error, `creating gs://${name}`);
  }
}
