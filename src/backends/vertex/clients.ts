// Construction of Google clients. AVATAR_GCS_ENDPOINT points the storage client at an emulator
// (apiEndpoint only: STORAGE_EMULATOR_HOST mangles JSON API paths in @google-cloud/storage v8).
import type { Storage } from "@google-cloud/storage";

export async function createStorage(options: { project?: string; env: Readonly<Record<string, string | undefined>> }): Promise<Storage> {
  const { Storage } = await import("@google-cloud/storage");
  const endpoint = options.env.AVATAR_GCS_ENDPOINT;
  return new Storage({
    projectId: options.project ?? (endpoint ? "avatar-test" : undefined),
    ...(endpoint ? { apiEndpoint: endpoint } : {}),
    retryOptions: { autoRetry: true, maxRetries: 4 },
  });
}
