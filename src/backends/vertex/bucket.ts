// Bucket existence and creation through the official storage client.
import type { BucketSpec } from "../../core/bucket-spec.ts";
import { createStorage } from "./clients.ts";
import { mapGoogleError } from "./errors.ts";

export async function bucketExists(options: { bucket: string; project?: string; env: NodeJS.ProcessEnv }): Promise<boolean> {
  const storage = await createStorage(options);
  try {
    const [exists] = await storage.bucket(options.bucket).exists();
    return exists;
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
