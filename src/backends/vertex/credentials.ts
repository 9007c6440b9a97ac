// Finds Application Default Credentials the way google-auth-library does, without loading it and
// without reading or printing any secret: only the path and the credential type are reported.
// Done before any Google call: with no credentials the auth library probes the GCE metadata server
// for about 30 s and prints a MetadataLookupWarning before it fails.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { AvatarError } from "../../core/errors.ts";

export interface AdcInfo {
  found: boolean;
  source?: "GOOGLE_APPLICATION_CREDENTIALS" | "gcloud" | "emulator" | "metadata";
  path?: string;
  type?: string;
  problem?: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** The well-known file `gcloud auth application-default login` writes. */
function wellKnownFile(env: Env): string {
  if (process.platform === "win32" && env.APPDATA && !env.CLOUDSDK_CONFIG) return join(env.APPDATA, "gcloud", "application_default_credentials.json");
  const gcloudDir = env.CLOUDSDK_CONFIG || join(env.HOME || homedir(), ".config", "gcloud");
  return join(gcloudDir, "application_default_credentials.json");
}

/**
 * Google's own compute (GCE, Cloud Run, Cloud Shell, Cloud Functions) gives credentials through its
 * metadata server. Recognised without a network probe: by the environment those platforms set, or
 * the machine's DMI product name (what gcp-metadata itself reads on Linux).
 */
function onGoogleCompute(env: Env): boolean {
  if (env.GCE_METADATA_HOST || env.GCE_METADATA_IP || env.K_SERVICE || env.FUNCTION_TARGET || env.CLOUD_SHELL === "true") return true;
  if (process.platform !== "linux") return false;
  try {
    return /Google/.test(readFileSync("/sys/class/dmi/id/product_name", "utf8"));
  } catch {
    return false;
  }
}

/** Both Google services point at local emulators: nothing needs credentials. */
export const fullyEmulated = (env: Env) => Boolean(env.AVATAR_GCS_ENDPOINT && env.AVATAR_VERTEX_ENDPOINT);

export function findAdc(env: Env): AdcInfo {
  if (fullyEmulated(env)) {
    return { found: true, source: "emulator", type: "none (local emulators take no credentials)" };
  }
  const explicit = env.GOOGLE_APPLICATION_CREDENTIALS;
  const path = explicit || wellKnownFile(env);
  const source = explicit ? "GOOGLE_APPLICATION_CREDENTIALS" : "gcloud";
  if (!existsSync(path)) {
    if (explicit) return { found: false, source, path, problem: `GOOGLE_APPLICATION_CREDENTIALS points at ${path}, which does not exist` };
    return onGoogleCompute(env) ? { found: true, source: "metadata", type: "the metadata server of this Google Cloud machine" } : { found: false };
  }
  try {
    const type = (JSON.parse(readFileSync(path, "utf8")) as { type?: unknown }).type;
    return { found: true, source, path, type: typeof type === "string" ? type : "unknown" };
  } catch {
    return { found: false, source, path, problem: `${path} is not a valid credentials file` };
  }
}

/**
 * Credentials for the services a command uses: none are needed when each of them points at a local
 * emulator (AVATAR_GCS_ENDPOINT for Cloud Storage, AVATAR_VERTEX_ENDPOINT for Vertex AI).
 */
export function credentialsFor(env: Env, services: readonly ("gcs" | "vertex")[]): AdcInfo {
  const emulated = services.every((s) => (s === "gcs" ? env.AVATAR_GCS_ENDPOINT : env.AVATAR_VERTEX_ENDPOINT));
  if (emulated) return { found: true, source: "emulator", type: "none (local emulators take no credentials)" };
  return findAdc({ ...env, AVATAR_GCS_ENDPOINT: undefined, AVATAR_VERTEX_ENDPOINT: undefined });
}

export const ADC_HINT = "Run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS (CI: Workload Identity Federation).";

/** The one-line error for a command that needs Google and finds no credentials. */
export function missingCredentials(adc: AdcInfo): AvatarError {
  return new AvatarError("AUTH", `No Google credentials: ${adc.problem ?? "no Application Default Credentials found"}.`, {
    hint: `${ADC_HINT} \`--dry-run\` works without them.`,
  });
}
