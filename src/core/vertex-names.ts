// Vertex AI resource names, label filters, state and stage names: pure, shared by the vertex backend,
// its dry-run plans and the tests. Vertex answers with the project NUMBER in resource names, so names
// are compared by their trailing id, never as whole strings.
import type { Gpu } from "./config.ts";
import { STORE_ROOT } from "./store-keys.ts";

export interface VertexLocation {
  project: string;
  region: string;
}

export const locationName = (loc: VertexLocation) => `projects/${loc.project}/locations/${loc.region}`;

/** One registry model and one endpoint per avatar, both with this id. */
export const avatarResourceId = (name: string) => `avatar-${name}`;
export const modelName = (loc: VertexLocation, name: string) => `${locationName(loc)}/models/${avatarResourceId(name)}`;
export const endpointName = (loc: VertexLocation, name: string) => `${locationName(loc)}/endpoints/${avatarResourceId(name)}`;
export const customJobName = (loc: VertexLocation, id: string) => `${locationName(loc)}/customJobs/${id}`;

/** The id at the end of a resource name (`…/customJobs/123` → `123`), without an `@version` suffix. */
export function resourceId(name: string): string {
  return (name.split("/").at(-1) ?? name).split("@")[0]!;
}

/** The avatar a registry model or endpoint id belongs to (`avatar-alice` → `alice`), or undefined. */
export function avatarOfResourceId(id: string): string | undefined {
  return id.startsWith("avatar-") && id.length > "avatar-".length ? id.slice("avatar-".length) : undefined;
}

/**
 * List filter for an avatar's resources. Only the `avatar` label is filtered server-side: its key has
 * no dash, so the filter grammar cannot misread it; other labels are matched on the results.
 */
export function avatarFilter(name?: string): string {
  return name ? `labels.avatar="${name}"` : "labels.avatar:*";
}

/** Model version alias of a training run (aliases must start with a letter). */
export const runAlias = (runId: string) => `run-${runId}`;

/** `@default`, `@<version id>`, `@run-<run id>` or `@<alias>` for getModel. */
export function versionSuffix(version: string | undefined): string {
  if (!version || version === "default") return "@default";
  if (/^\d{8}-\d{6}$/.test(version)) return `@${runAlias(version)}`;
  return `@${version}`;
}

/** Where the job container sees an object of the store: Cloud Storage FUSE mounts buckets at /gcs. */
export const fusePath = (bucket: string, key: string) => `/gcs/${bucket}/${STORE_ROOT}/${key}`;
export const gcsUri = (bucket: string, key: string) => `gs://${bucket}/${STORE_ROOT}/${key}`;

/** The trainer package of one version lives once per bucket under this key. */
export const trainerPackageKey = (version: string) => `_trainer/${version}`;
/** Written last when a trainer package upload is complete. */
export const trainerManifestKey = (version: string) => `${trainerPackageKey(version)}/MANIFEST.json`;

export type VertexJobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** google.cloud.aiplatform.v1.JobState (string or number) → the backend's job states. */
const jobStateNames = [
  "JOB_STATE_UNSPECIFIED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED",
  "JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED", "JOB_STATE_EXPIRED", "JOB_STATE_UPDATING", "JOB_STATE_PARTIALLY_SUCCEEDED",
];

export function jobStateOf(state: string | number | null | undefined): VertexJobState {
  const name = typeof state === "number" ? jobStateNames[state] : state;
  switch (name) {
    case "JOB_STATE_SUCCEEDED":
      return "succeeded";
    case "JOB_STATE_FAILED":
    case "JOB_STATE_EXPIRED":
    case "JOB_STATE_PARTIALLY_SUCCEEDED": // not a CustomJob state; a single-worker job has no partial success
      return "failed";
    case "JOB_STATE_CANCELLED":
      return "cancelled";
    case "JOB_STATE_RUNNING":
    case "JOB_STATE_CANCELLING": // still running until the cancel lands
    case "JOB_STATE_UPDATING":
    case "JOB_STATE_PAUSED":
      return "running";
    default: // QUEUED, PENDING, UNSPECIFIED: waiting for machines
      return "queued";
  }
}

/** A short phase name for a JobState (`JOB_STATE_PENDING` → `pending`). */
export function jobPhase(state: string | number | null | undefined): string {
  const text = typeof state === "number" ? (jobStateNames[state] ?? "") : String(state ?? "");
  return text.replace(/^JOB_STATE_/, "").toLowerCase();
}

const deploymentStages: Record<number, string> = {
  0: "DEPLOYMENT_STAGE_UNSPECIFIED", 3: "STARTING_MODEL_SERVER", 4: "FINISHING_UP", 5: "STARTING_DEPLOYMENT", 6: "PREPARING_MODEL",
  7: "CREATING_SERVING_CLUSTER", 8: "ADDING_NODES_TO_CLUSTER", 9: "GETTING_CONTAINER_IMAGE", 10: "DEPLOYMENT_TERMINATED",
  11: "SUCCESSFULLY_DEPLOYED", 12: "FAILED_TO_DEPLOY",
};

/** google.cloud.aiplatform.v1.DeploymentStage → words for a spinner (`PREPARING_MODEL` → `preparing model`). */
export function deploymentStageText(stage: string | number | null | undefined): string | undefined {
  const name = typeof stage === "number" ? deploymentStages[stage] : stage;
  if (!name || name === "DEPLOYMENT_STAGE_UNSPECIFIED") return undefined;
  return name.toLowerCase().replace(/_/g, " ");
}

/** GPU preset of an accelerator type (for endpoint info), or undefined. */
export function gpuOfAccelerator(type: string | number | null | undefined): Gpu | undefined {
  if (type === "NVIDIA_L4" || type === 11) return "l4";
  if (type === "NVIDIA_TESLA_T4" || type === 5) return "t4";
  return undefined;
}

/** google.protobuf.Timestamp (seconds as string or number) → ISO 8601, or undefined. */
export function isoTime(ts: { seconds?: string | number | { toString(): string } | null; nanos?: number | null } | null | undefined): string | undefined {
  if (!ts || ts.seconds === undefined || ts.seconds === null) return undefined;
  const seconds = Number(String(ts.seconds));
  if (!Number.isFinite(seconds) || seconds === 0) return undefined;
  return new Date(seconds * 1000 + Math.floor((ts.nanos ?? 0) / 1e6)).toISOString();
}

/** Regions with L4 GPUs for Vertex training and prediction (Compute Engine G2 zones; approximate). */
export const L4_REGIONS = ["us-central1", "us-east4", "us-west1", "europe-west4", "europe-west1", "asia-southeast1", "asia-northeast1"] as const;

/**
 * The Vertex quota a GPU uses, e.g. custom_model_training_nvidia_l4_gpus; Spot training draws on
 * custom_model_training_preemptible_nvidia_l4_gpus instead (research/vertex-real-behaviour.md).
 */
export function gpuQuotaName(kind: "training" | "serving", gpu: Gpu, options: { spot?: boolean } = {}): string {
  const preemptible = kind === "training" && options.spot ? "preemptible_" : "";
  return `custom_model_${kind}_${preemptible}nvidia_${gpu === "l4" ? "l4" : "t4"}_gpus`;
}
