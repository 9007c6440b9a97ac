// The smoke job of `avatar doctor --smoke` as a plain request: a CPU-only CustomJob on the training
// image that runs avatar_trainer.smoke from the same FUSE directory as a training run, as the same
// identity (no serviceAccount, like the training job: the Vertex AI Custom Code Service Agent).
// Pure: the vertex backend sends it, --dry-run prints it, tests compare it.
import { MANAGED_BY } from "./names.ts";
import { usdPerHour } from "./rates.ts";
import { fusePath, locationName, trainerPackageKey, type VertexLocation } from "./vertex-names.ts";

/** The cheapest general machine Vertex training takes; 4 vCPUs of the N1/E2 CPU quota. */
export const SMOKE_MACHINE = "e2-standard-4";
export const SMOKE_MACHINE_CPUS = 4;
/** USD per hour of e2-standard-4 for Vertex training in us-central1 (≈ $0.154): an estimate, see core/rates.ts. */
export const SMOKE_APPROX_USD_PER_HOUR = Math.round(usdPerHour("cpu") * 1000) / 1000;
/** Pulling the training image (~10 GB) is most of a smoke run; the check itself takes seconds. */
export const SMOKE_TIMEOUT_SECONDS = 15 * 60;

/** Where one smoke run's objects live under the store root: written by the CLI, then by the job. */
export interface SmokeKeys {
  /** Everything of this run; deleted at the end. */
  root: string;
  /** The directory the job lists through the mount. */
  probeDir: string;
  /** The probe object's path inside probeDir: a nested "folder" with no placeholder object. */
  probeName: string;
  probe: string;
  marker: string;
}

export function smokeKeys(stamp: string): SmokeKeys {
  const root = `_smoke/${stamp}`;
  const probeName = "datasets/probe.bin";
  return { root, probeDir: `${root}/in`, probeName, probe: `${root}/in/${probeName}`, marker: `${root}/out/marker.json` };
}

export interface SmokeJobInput {
  bucket: string;
  stamp: string;
  imageUri: string;
  trainerVersion: string;
  probeSha256: string;
}

/** Same shell line as the trainer's (vertex-specs trainerCommand), another module of the package. */
export function smokeCommand(bucket: string, trainerVersion: string): string[] {
  const dir = fusePath(bucket, trainerPackageKey(trainerVersion));
  return ["sh", "-c", `cd '${dir}' && exec python -m avatar_trainer.smoke "$@"`, "avatar-smoke"];
}

/**
 * google.cloud.aiplatform.v1.CreateCustomJobRequest of one smoke run. Labelled avatar-smoke=<stamp>
 * and not avatar=…: `avatar list` and `status` show only jobs with an avatar label.
 */
export function smokeJobRequest(loc: VertexLocation, input: SmokeJobInput) {
  const keys = smokeKeys(input.stamp);
  return {
    parent: locationName(loc),
    customJob: {
      displayName: `avatar-smoke-${input.stamp}`,
      labels: { "managed-by": MANAGED_BY, "avatar-smoke": input.stamp },
      jobSpec: {
        workerPoolSpecs: [
          {
            // No accelerator: the point is to prove everything but the GPU for a cent.
            machineSpec: { machineType: SMOKE_MACHINE },
            replicaCount: 1,
            containerSpec: {
              imageUri: input.imageUri,
              command: smokeCommand(input.bucket, input.trainerVersion),
              args: [
                "--probe-dir", fusePath(input.bucket, keys.probeDir),
                "--probe", keys.probeName,
                "--probe-sha256", input.probeSha256,
                "--marker", fusePath(input.bucket, keys.marker),
                "--stamp", input.stamp,
              ],
              // The trainer's environment (vertex-specs customJobSpec), so imports behave the same.
              env: [
                { name: "PYTHONUNBUFFERED", value: "1" },
                { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
              ],
            },
          },
        ],
        scheduling: { timeout: { seconds: SMOKE_TIMEOUT_SECONDS } },
      },
    },
  };
}

/** The estimated cost of a smoke run that lasted `seconds`, in USD (never shown as less than a tenth of a cent). */
export function smokeCostUsd(seconds: number): number {
  return Math.max(0.001, (seconds / 3600) * SMOKE_APPROX_USD_PER_HOUR);
}
