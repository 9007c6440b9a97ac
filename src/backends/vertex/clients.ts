// Construction of Google clients. AVATAR_GCS_ENDPOINT points the storage client at an emulator
// (apiEndpoint only: STORAGE_EMULATOR_HOST mangles JSON API paths in @google-cloud/storage v8).
import type { Storage } from "@google-cloud/storage";

export interface StorageOptions {
  project?: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Quick probes (doctor) want an answer, not exponential backoff. */
  maxRetries?: number;
}

export async function createStorage(options: StorageOptions): Promise<Storage> {
  const { Storage } = await import("@google-cloud/storage");
  const endpoint = options.env.AVATAR_GCS_ENDPOINT;
  return new Storage({
    projectId: options.project ?? (endpoint ? "avatar-test" : undefined),
    ...(endpoint ? { apiEndpoint: endpoint } : {}),
    retryOptions: { autoRetry: (options.maxRetries ?? 4) > 0, maxRetries: options.maxRetries ?? 4 },
  });
}
