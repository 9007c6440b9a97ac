// Finds Application Default Credentials the way google-auth-library does, without loading it and
// without reading or printing any secret: only the path and the credential type are reported.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface AdcInfo {
  found: boolean;
  source?: "GOOGLE_APPLICATION_CREDENTIALS" | "gcloud" | "emulator";
  path?: string;
  type?: string;
  problem?: string;
}

export function findAdc(env: Readonly<Record<string, string | undefined>>): AdcInfo {
  if (env.AVATAR_GCS_ENDPOINT && env.AVATAR_VERTEX_ENDPOINT) {
    return { found: true, source: "emulator", type: "none (local emulators take no credentials)" };
  }
  const explicit = env.GOOGLE_APPLICATION_CREDENTIALS;
  const gcloudDir = env.CLOUDSDK_CONFIG || join(env.HOME || homedir(), ".config", "gcloud");
  const path = explicit || join(gcloudDir, "application_default_credentials.json");
  const source = explicit ? "GOOGLE_APPLICATION_CREDENTIALS" : "gcloud";
  if (!existsSync(path)) {
    return explicit
      ? { found: false, source, path, problem: `GOOGLE_APPLICATION_CREDENTIALS points at ${path}, which does not exist` }
      : { found: false };
  }
  try {
    const type = (JSON.parse(readFileSync(path, "utf8")) as { type?: unknown }).type;
    return { found: true, source, path, type: typeof type === "string" ? type : "unknown" };
  } catch {
    return { found: false, source, path, problem: `${path} is not a valid credentials file` };
  }
}
