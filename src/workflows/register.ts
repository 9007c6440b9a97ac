// Register: handler.py + requirements.txt beside the weights, then a registry version (idempotent).
import { readFile } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { join } from "node:path";
import { isOffline, type Backend, type ModelVersion, type PlannedRequest, type RegisterSpec } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { likenessLabel, type CheckpointChoice, type CheckpointRow, type Pick } from "../core/checkpoint-pick.ts";
import { AvatarError } from "../core/errors.ts";
import { resourceLabels } from "../core/names.ts";
import { MODEL_FILES, manifestProblem, runModelKey, type AvatarManifest } from "../core/run-keys.ts";
import { handlersDir } from "../paths.ts";

export interface RegisterInput {
  name: string;
  runId: string;
  /** Already read and checked by the caller (an imported artifact); skips reading it from the store. */
  manifest?: AvatarManifest;
  /** Which checkpoint becomes the model (scored by likeness); undefined: the run's model/ as it is. */
  checkpoint?: CheckpointChoice;
}

/** The checkpoint register chose, why, and the scores of every sampled checkpoint. */
export interface RegisteredCheckpoint extends Pick {
  rows: CheckpointRow[];
  steps: number[];
  references?: { source: string; photos: number; faces: number };
  /** The likeness recorded in avatar.json (null: not scored). */
  likeness: AvatarManifest["likeness"];
}

export interface RegisterResult {
  version: ModelVersion | undefined;
  created: boolean;
  artifactUri: string;
  /** Absent only in a dry run without credentials (it could not be read). */
  manifest?: AvatarManifest;
  dryRun: boolean;
  /** --dry-run: what would be written and sent. */
  requests?: PlannedRequest[];
  /** With a checkpoint choice on a run with a readable avatar.json. */
  checkpoint?: RegisteredCheckpoint;
}

/** What the version's description and labels say about the chosen checkpoint. */
function checkpointNotes(checkpoint: RegisteredCheckpoint | undefined): { labels: Record<string, string>; description: string } {
  if (!checkpoint) return { labels: {}, description: "" };
  const l = checkpoint.likeness;
  const of = checkpoint.step === checkpoint.lastStep ? "the last step" : `${checkpoint.lastStep} steps`;
  return {
    labels: { "avatar-checkpoint": String(checkpoint.step), ...(l ? { "avatar-likeness": likenessLabel(l.score) } : {}) },
    description: `; checkpoint ${checkpoint.step} (${of}, ${checkpoint.choice})${l ? `, likeness ${l.score.toFixed(3)} (mean ${l.mean?.toFixed(3) ?? "-"}, worst ${l.worst?.toFixed(3) ?? "-"}, faces ${l.faces}/${l.samples}, near-copies ${l.near_copies})` : ", likeness not scored"}`,
  };
}

async function readManifest(backend: Backend, key: string): Promise<AvatarManifest> {
  const body = await text(await backend.store.read(key));
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new AvatarError("BAD_INPUT", `${backend.store.uri(key)} is not valid JSON.`, { hint: "Re-run the training; the trainer writes it." });
  }
  const problem = manifestProblem(parsed);
  if (problem) throw new AvatarError("BAD_INPUT", `${backend.store.uri(key)} ${problem}.`, { hint: "Re-run the training with this version of avatar." });
  return parsed as AvatarManifest;
}

/** Refuses, before anything is written, a model whose base the backend's servers cannot load. */
export function checkServableBase(backend: Backend, manifest: AvatarManifest, where: string): void {
  const problem = backend.baseProblem?.(manifest.base_model);
  if (problem) {
    throw new AvatarError("BAD_INPUT", `${where} was trained on base_model ${problem}.`, {
      hint: "Retrain it on sdxl, sd15 or a Hub id, or serve it on the local backend (`avatar serve <model-dir>`).",
    });
  }
}

export async function registerRun(ctx: Context, backend: Backend, input: RegisterInput): Promise<RegisterResult> {
  let modelKey = runModelKey(input.name, input.runId);
  let artifactUri = backend.store.uri(modelKey);
  const offline = isOffline(backend);
  for (const file of input.manifest || offline ? [] : [MODEL_FILES.weights, MODEL_FILES.manifest]) {
    if (!(await backend.store.exists(`${modelKey}/${file}`))) {
      throw new AvatarError("NOT_FOUND", `${artifactUri}/${file} does not exist: run ${input.runId} of ${input.name} has no finished model.`, {
        hint: `\`avatar status ${input.name}\` lists the runs and their states.`,
      });
    }
  }
  let manifest = input.manifest ?? (offline ? undefined : await readManifest(backend, `${modelKey}/${MODEL_FILES.manifest}`));
  if (manifest && manifest.name !== input.name) {
    throw new AvatarError("BAD_INPUT", `${artifactUri} belongs to avatar "${manifest.name}", not "${input.name}".`);
  }
  if (manifest) checkServableBase(backend, manifest, artifactUri);
  // The checkpoint that looks most like the person (or the one asked for) becomes the model.
  const picking = input.checkpoint && manifest && typeof manifest.steps === "number" ? await import("./pick-checkpoint.ts") : undefined;
  const picked = picking ? await picking.pickRunCheckpoint(ctx, backend, { name: input.name, runId: input.runId, manifest: manifest!, choice: input.checkpoint! }) : undefined;
  let checkpoint: RegisteredCheckpoint | undefined;
  if (picked) {
    ({ modelKey, manifest } = picked);
    artifactUri = backend.store.uri(modelKey);
    checkpoint = { ...picked.pick, rows: picked.rows, steps: picked.steps, ...(picked.references ? { references: picked.references } : {}), likeness: picked.manifest.likeness ?? null };
  }
  const notes = checkpointNotes(checkpoint);
  const spec: RegisterSpec = {
    name: input.name,
    runId: input.runId,
    modelKey,
    labels: { ...resourceLabels(input.name, input.runId), ...notes.labels },
    ...(manifest ? { description: `${manifest.pipeline} LoRA of ${manifest.base_model}, trigger "${manifest.token} ${manifest.class_word}"${notes.description}` } : {}),
  };
  const handlerFiles = [MODEL_FILES.handler, MODEL_FILES.requirements];
  if (ctx.flags.dryRun) {
    const requests: PlannedRequest[] = [
      ...(picked ? picking!.planCheckpointModel(backend, input, picked) : []),
      { service: "store", method: "put", request: { objects: handlerFiles.map((f) => backend.store.uri(`${modelKey}/${f}`)) }, note: "handler.py beside the weights" },
      ...(backend.registry.plan ? await backend.registry.plan(spec) : []),
    ];
    return { version: undefined, created: false, artifactUri, manifest, dryRun: true, requests, ...(checkpoint ? { checkpoint } : {}) };
  }
  if (picked) await picking!.writeCheckpointModel(backend, input, picked);
  // The serving container imports handler.py from the model directory (research/hf-serving.md §3).
  for (const file of handlerFiles) {
    const body = await readFile(join(handlersDir, file));
    await backend.store.put(`${modelKey}/${file}`, body, { contentType: "text/plain", overwrite: true });
  }
  const { version, created } = await backend.registry.register(spec);
  return { version, created, artifactUri, manifest, dryRun: false, ...(checkpoint ? { checkpoint } : {}) };
}
