// What a smoke run proved, as doctor checks: the facts the vertex backend gathered (was the job
// created, how it ended, the marker the job wrote through the mount) → ok / warn / fail with the
// fix for each failure. Pure, so every branch is a table test.
import { SMOKE_MACHINE, SMOKE_MACHINE_CPUS } from "./smoke-spec.ts";

export type SmokeCheckStatus = "ok" | "warn" | "fail";
/** Shaped like the doctor's Check (workflows/doctor.ts), which it becomes. */
export interface SmokeCheck {
  name: string;
  status: SmokeCheckStatus;
  message: string;
  hint?: string;
}

/** marker.json as avatar_trainer.smoke writes it (schema 1). */
export interface SmokeMarker {
  schema?: number;
  ok?: boolean;
  trainer_version?: string;
  python?: string;
  versions?: Record<string, string>;
  checks?: { name: string; status: string; detail?: string }[];
}

export interface SmokeOutcome {
  project: string;
  region: string;
  bucket: string;
  imageUri: string;
  /** CreateCustomJob was refused (the mapped error). */
  createError?: { code: string; message: string; hint?: string };
  /** The job as it ended (or as it was when the CLI stopped waiting). */
  job?: { name: string; state: string; error?: string };
  /** The job never reached an end before the CLI's deadline (it was cancelled then). */
  gaveUp?: boolean;
  marker?: SmokeMarker;
  /** The marker object exists but is not a marker. */
  markerProblem?: string;
  seconds: number;
}

/** The project NUMBER from a Vertex resource name (Vertex answers with numbers, not ids). */
export function projectNumberOf(resourceName: string | undefined): string | undefined {
  return /^projects\/(\d+)\//.exec(resourceName ?? "")?.[1];
}

/** The identity custom jobs run as when they name no service account. */
export function customCodeServiceAgent(projectNumber: string): string {
  return `service-${projectNumber}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com`;
}

export function bucketAccessHint(outcome: Pick<SmokeOutcome, "project" | "bucket" | "job">): string {
  const number = projectNumberOf(outcome.job?.name);
  const agent = customCodeServiceAgent(number ?? "PROJECT_NUMBER");
  const find = number ? "" : ` (PROJECT_NUMBER: gcloud projects describe ${outcome.project} --format='value(projectNumber)')`;
  return (
    `Training jobs run as the Vertex AI Custom Code Service Agent ${agent}; it needs roles/storage.objectAdmin on the bucket: ` +
    `gcloud storage buckets add-iam-policy-binding gs://${outcome.bucket} --member=serviceAccount:${agent} --role=roles/storage.objectAdmin${find}`
  );
}

// Image pull failures as Vertex words them (e.g. "… should be granted access to the image …").
const IMAGE_TROUBLE = /pull|granted access to the image|image .*(not found|does not exist)|manifest|artifact ?registry|container image/i;

function logsHint(outcome: SmokeOutcome): string {
  const id = outcome.job?.name.split("/").at(-1) ?? "<job>";
  return `The job's output: gcloud ai custom-jobs stream-logs ${id} --project=${outcome.project} --region=${outcome.region}`;
}

const markerCheck = (marker: SmokeMarker | undefined, name: string) => marker?.checks?.find((c) => c.name === name);

function jobCheck(o: SmokeOutcome): SmokeCheck {
  if (o.createError) {
    const quota = o.createError.code === "QUOTA";
    return {
      name: "smoke-job",
      status: "fail",
      message: o.createError.message,
      hint: quota
        ? `The smoke job needs ${SMOKE_MACHINE_CPUS} vCPUs of aiplatform.googleapis.com/custom_model_training_cpus in ${o.region} (new projects may have 0): request it on https://console.cloud.google.com/iam-admin/quotas?project=${o.project}&service=aiplatform.googleapis.com&metric=aiplatform.googleapis.com%2Fcustom_model_training_cpus`
        : o.createError.hint,
    };
  }
  const job = o.job;
  if (!job) return { name: "smoke-job", status: "fail", message: "no smoke job was created" };
  const id = job.name.split("/").at(-1);
  if (o.gaveUp) {
    return { name: "smoke-job", status: "fail", message: `job ${id} did not finish in time (still ${job.state}); it was cancelled`, hint: `Vertex had no ${SMOKE_MACHINE} for it in ${o.region} or the image pull is slow; try again, or another region. ${logsHint(o)}` };
  }
  return { name: "smoke-job", status: "ok", message: `job ${id} (${SMOKE_MACHINE}, no GPU) ran in ${o.region}: ${job.state} after ${Math.round(o.seconds)} s` };
}

function imageCheck(o: SmokeOutcome): SmokeCheck {
  if (o.marker) {
    const python = o.marker.python ? ` (Python ${o.marker.python})` : "";
    return { name: "image", status: "ok", message: `${o.imageUri} started and ran the smoke module${python}` };
  }
  const error = o.job?.error ?? "";
  if (IMAGE_TROUBLE.test(error)) {
    return {
      name: "image",
      status: "fail",
      message: `the job could not start the training image: ${error}`,
      hint: `Check the image name (AVATAR_TRAIN_IMAGE, or unset it for the pinned Hugging Face image); a private Artifact Registry image needs roles/artifactregistry.reader for ${customCodeServiceAgent(projectNumberOf(o.job?.name) ?? "PROJECT_NUMBER")}.`,
    };
  }
  return { name: "image", status: "warn", message: `not confirmed: the job ended before the smoke module wrote anything${error ? ` (${error})` : ""}`, hint: logsHint(o) };
}

function mountCheck(o: SmokeOutcome): SmokeCheck {
  const where = `/gcs/${o.bucket}/…`;
  if (o.markerProblem) return { name: "bucket-mount", status: "fail", message: `the job's marker is unreadable: ${o.markerProblem}`, hint: logsHint(o) };
  if (!o.marker) {
    const how = o.job?.state === "succeeded" ? "the job succeeded but its marker never reached the bucket" : `the job wrote no marker through ${where}`;
    return { name: "bucket-mount", status: "fail", message: `${how}: it could not read the trainer package or write to the bucket`, hint: `${bucketAccessHint(o)} ${logsHint(o)}` };
  }
  const list = markerCheck(o.marker, "mount-list");
  const read = markerCheck(o.marker, "mount-read");
  if (list?.status === "ok" && read?.status === "ok") {
    return { name: "bucket-mount", status: "ok", message: `the job listed and read the probe through ${where} (written without folder objects) and wrote its marker back` };
  }
  if (read?.status === "ok") {
    return {
      name: "bucket-mount",
      status: "fail",
      message: `the job reads objects through ${where} but its listings miss folders that exist only as name prefixes: ${list?.detail ?? "no listing result"}`,
      hint: "The trainer lists its checkpoint folder to resume, so resuming would start over. Report this (with `avatar doctor --smoke --json`): the CLI would have to write folder placeholder objects.",
    };
  }
  return { name: "bucket-mount", status: "fail", message: `the job did not see the probe the CLI wrote: ${read?.detail ?? list?.detail ?? "no result"}`, hint: bucketAccessHint(o) };
}

function importCheck(o: SmokeOutcome): SmokeCheck {
  const result = markerCheck(o.marker, "trainer-import");
  if (!result) return { name: "trainer-import", status: "warn", message: "not checked: the job did not get that far" };
  if (result.status === "ok") return { name: "trainer-import", status: "ok", message: result.detail ?? "ok" };
  return {
    name: "trainer-import",
    status: "fail",
    message: `the trainer does not import in ${o.imageUri}: ${result.detail ?? "no detail"}`,
    hint: "Use the training image the CLI pins (unset AVATAR_TRAIN_IMAGE), or one with torch 2.3.1, diffusers 0.32.1, transformers 4.48.0 and peft 0.14.0.",
  };
}

/** The checks of one smoke run. Not created: only smoke-job says why; the rest were not reached. */
export function smokeChecks(o: SmokeOutcome): SmokeCheck[] {
  if (o.createError || !o.job) {
    const skipped = (name: string): SmokeCheck => ({ name, status: "warn", message: "not checked: the smoke job was not created" });
    return [jobCheck(o), skipped("image"), skipped("bucket-mount"), skipped("trainer-import")];
  }
  return [jobCheck(o), imageCheck(o), mountCheck(o), importCheck(o)];
}
