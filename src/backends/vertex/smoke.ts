// `avatar doctor --smoke` on Vertex: the trainer package and a probe object go into the bucket
// through the JSON API (no folder placeholders), a CPU-only CustomJob on the training image runs
// avatar_trainer.smoke from /gcs/<bucket>/…, the CLI waits for it, reads the marker the job wrote
// back through the mount, and deletes what the run left (probe and marker). The facts go back as a
// SmokeOutcome; core/smoke-checks.ts turns them into checks. Ctrl-C cancels the job: it is ours and
// cheap, so nothing is left running.
import { createHash } from "node:crypto";
import { text as readText } from "node:stream/consumers";
import { setTimeout as sleep } from "node:timers/promises";
import { AvatarError } from "../../core/errors.ts";
import type { SmokeMarker, SmokeOutcome } from "../../core/smoke-checks.ts";
import { SMOKE_TIMEOUT_SECONDS, smokeJobRequest, smokeKeys } from "../../core/smoke-spec.ts";
import { gcsUri, jobPhase, jobStateOf, trainerManifestKey } from "../../core/vertex-names.ts";
import { trainImage, type PlannedRequest } from "../../core/vertex-specs.ts";
import { VertexClients } from "./clients.ts";
import { mapVertexError } from "./errors.ts";
import { pollIntervals } from "./lro.ts";
import { retryPolicy, retryRead } from "./retry.ts";
import { openGcsStore } from "./store.ts";
import { ensureTrainerPackage, loadTrainerPackage, trainerPackageKeys } from "./trainer-package.ts";

/** How long a job may sit queued (no machine yet) on top of its own timeout before the CLI gives up. */
const QUEUE_ALLOWANCE_MS = 15 * 60_000;

export interface SmokeOptions {
  project: string;
  region: string;
  bucket: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Names this run's objects and labels its job: a UTC stamp plus a random suffix. */
  stamp: string;
  signal?: AbortSignal;
  onPhase?: (text: string) => void;
  onDetail?: (line: string) => void;
  /** Notes the job as running outside this process; returns the function that removes the note. */
  keepsRunning?: (note: string) => () => void;
}

/** The probe's bytes: its content names the run, so a stale object of another run cannot pass. */
export function probeBody(stamp: string): Buffer {
  return Buffer.from(`avatar doctor --smoke probe ${stamp}\n`.repeat(32));
}

const sha256 = (body: Buffer) => createHash("sha256").update(body).digest("hex");

async function smokeRequest(options: Pick<SmokeOptions, "project" | "region" | "bucket" | "env" | "stamp">) {
  const pkg = await loadTrainerPackage();
  const probe = probeBody(options.stamp);
  const request = smokeJobRequest(
    { project: options.project, region: options.region },
    { bucket: options.bucket, stamp: options.stamp, imageUri: trainImage(options.env), trainerVersion: pkg.version, probeSha256: sha256(probe) },
  );
  return { pkg, probe, request };
}

export interface SmokePlan {
  requests: PlannedRequest[];
  /** What a dry run could not know, because it sends nothing. */
  notChecked: string[];
}

/** --dry-run: the requests of a smoke run, built without any network call (no credentials needed). */
export async function planSmoke(options: Pick<SmokeOptions, "project" | "region" | "bucket" | "env" | "stamp">): Promise<SmokePlan> {
  const { pkg, probe, request } = await smokeRequest(options);
  const keys = smokeKeys(options.stamp);
  const uri = (key: string) => gcsUri(options.bucket, key);
  return {
    requests: [
      { service: "Cloud Storage", method: "upload", request: { objects: trainerPackageKeys(pkg).map(uri) }, note: `trainer package ${pkg.version}, skipped when ${uri(trainerManifestKey(pkg.version))} exists` },
      { service: "Cloud Storage", method: "upload", request: { object: uri(keys.probe), bytes: probe.length, sha256: sha256(probe) }, note: "the probe, with no folder placeholder objects above it" },
      { service: "JobService", method: "CreateCustomJob", request, note: "then GetCustomJob until it ends; Ctrl-C cancels it" },
      { service: "Cloud Storage", method: "delete", request: { objects: [uri(keys.probe), uri(keys.marker)] }, note: "after reading the job's marker" },
    ],
    notChecked: [`whether trainer package ${pkg.version} is already in gs://${options.bucket}`, "quotas, credentials, the bucket and the job itself (a dry run sends nothing)"],
  };
}

interface CustomJobLike {
  name?: string | null;
  state?: string | number | null;
  error?: { code?: number | null; message?: string | null } | null;
}

/** Runs the smoke job and reports what happened. Throws only for an interrupt or a store failure. */
export async function runSmoke(options: SmokeOptions): Promise<SmokeOutcome> {
  const started = Date.now();
  const { pkg, probe, request } = await smokeRequest(options);
  const keys = smokeKeys(options.stamp);
  const base = { project: options.project, region: options.region, bucket: options.bucket, imageUri: trainImage(options.env) };
  const store = await openGcsStore({ bucket: options.bucket, project: options.project, env: options.env });
  const clients = new VertexClients({ region: options.region, env: options.env });
  const poll = pollIntervals(options.env);
  const retry = { ...retryPolicy(poll.jobMs, options.onDetail), signal: options.signal };
  const context = { doing: "running the smoke job", project: options.project, region: options.region };
  const cleanUp = async () => {
    for (const key of [keys.probe, keys.marker]) await store.delete(key).catch(() => undefined);
  };
  try {
    options.onPhase?.("uploading the trainer package and the probe");
    if (await ensureTrainerPackage(store, pkg)) options.onDetail?.(`uploaded trainer package ${pkg.version}`);
    await store.put(keys.probe, probe, { contentType: "application/octet-stream", size: probe.length });

    const jobs = await clients.jobs();
    let job: CustomJobLike;
    try {
      options.onPhase?.("creating the smoke job");
      [job] = (await jobs.createCustomJob(request)) as unknown as [CustomJobLike];
    } catch (error) {
      await cleanUp();
      const mapped = mapVertexError(error, { ...context, doing: "creating the smoke job" });
      return { ...base, createError: { code: mapped.code, message: mapped.message, hint: mapped.hint }, seconds: (Date.now() - started) / 1000 };
    }
    const name = job.name ?? "";
    const id = name.split("/").at(-1) ?? name;
    const stop = options.keepsRunning?.(`smoke job ${id} (CPU only); cancelling it`);
    const deadline = started + SMOKE_TIMEOUT_SECONDS * 1000 + QUEUE_ALLOWANCE_MS;
    let gaveUp = false;
    try {
      for (;;) {
        const state = jobStateOf(job.state);
        options.onPhase?.(`smoke job ${id} ${jobPhase(job.state)}`);
        if (state === "succeeded" || state === "failed" || state === "cancelled") break;
        if (Date.now() > deadline) {
          gaveUp = true;
          await jobs.cancelCustomJob({ name }).catch(() => undefined);
          break;
        }
        try {
          await sleep(poll.jobMs, undefined, { signal: options.signal });
        } catch {
          await jobs.cancelCustomJob({ name }).catch(() => undefined);
          await cleanUp();
          throw new AvatarError("INTERRUPTED", `Interrupted; cancelled smoke job ${id} (it was ours, on a CPU machine).`);
        }
        try {
          [job] = (await retryRead(`reading smoke job ${id}`, () => jobs.getCustomJob({ name }), retry)) as unknown as [CustomJobLike];
        } catch (error) {
          await jobs.cancelCustomJob({ name }).catch(() => undefined);
          await cleanUp();
          throw mapVertexError(error, { ...context, doing: `reading smoke job ${id}` });
        }
      }
    } finally {
      stop?.();
    }

    let marker: SmokeMarker | undefined;
    let markerProblem: string | undefined;
    try {
      const text = await readText(await store.read(keys.marker));
      try {
        marker = JSON.parse(text) as SmokeMarker;
      } catch (error) {
        markerProblem = (error as Error).message;
      }
    } catch (error) {
      if (!(error instanceof AvatarError && error.code === "NOT_FOUND")) throw error;
    }
    await cleanUp();
    return {
      ...base,
      job: { name, state: gaveUp ? jobPhase(job.state) : jobStateOf(job.state), ...(job.error?.message ? { error: job.error.message } : {}) },
      ...(gaveUp ? { gaveUp } : {}),
      ...(marker ? { marker } : {}),
      ...(markerProblem ? { markerProblem } : {}),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await clients.close();
    await store.close();
  }
}
