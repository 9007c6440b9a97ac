// Which checkpoint of a run register turns into the model (issue #12 §4), and its model folder.
// The last step's model stays where the trainer wrote it (runs/<run>/model/); another step gets a
// folder of its own (runs/<run>/step-NNNNNN/: that checkpoint's weights + avatar.json), so nothing
// is overwritten and both stay registrable.
import { text } from "node:stream/consumers";
import type { Backend, PlannedRequest } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { pickCheckpoint, type CheckpointChoice, type CheckpointRow, type Pick, type SampleScore } from "../core/checkpoint-pick.ts";
import { AvatarError } from "../core/errors.ts";
import { MODEL_FILES, runModelKey, runScoresKey, runStepModelKey, type AvatarManifest, type ManifestLikeness } from "../core/run-keys.ts";
import { listCheckpoints, scoreCheckpoints, type RunCheckpoint } from "./checkpoint-scores.ts";

export interface CheckpointPickResult {
  pick: Pick;
  rows: CheckpointRow[];
  samples: Record<number, SampleScore[]>;
  /** Every step with complete weights (the last included). */
  steps: number[];
  references?: { source: string; photos: number; faces: number };
  /** Store key of the model folder to register. */
  modelKey: string;
  /** avatar.json of that folder: the run's, with the checkpoint and its likeness. */
  manifest: AvatarManifest;
}

function manifestLikeness(pick: Pick, scored: boolean): ManifestLikeness | null {
  const row = pick.row;
  if (!row || !scored || row.faces === 0) return null;
  return { score: row.score, mean: row.likeness, worst: row.worst, faces: row.faces, samples: row.samples, near_copies: row.nearCopies, choice: pick.choice };
}

/** Steps with registrable weights: the complete checkpoints with weights up to the last step, and the last step (model/). */
function registrableSteps(checkpoints: readonly RunCheckpoint[], lastStep: number | undefined): number[] {
  const steps = checkpoints.filter((c) => c.weights && (lastStep === undefined || c.step <= lastStep)).map((c) => c.step);
  return [...new Set([...steps, ...(lastStep === undefined ? [] : [lastStep])])].sort((a, b) => a - b);
}

/** The steps of a run with registrable weights (for an error's hint: reads its avatar.json and checkpoints). */
export async function runSteps(backend: Backend, name: string, runId: string): Promise<number[]> {
  const manifest = JSON.parse(await text(await backend.store.read(`${runModelKey(name, runId)}/${MODEL_FILES.manifest}`))) as { steps?: unknown };
  return registrableSteps(await listCheckpoints(backend, name, runId), typeof manifest.steps === "number" ? manifest.steps : undefined);
}

/**
 * Scores the run's checkpoints and picks one. `manifest`: the run's avatar.json (its `steps` is the
 * last step, whose weights are model/). A step that has no complete weights is a usage error (exit 2)
 * naming the steps that exist.
 */
export async function pickRunCheckpoint(ctx: Context, backend: Backend, input: { name: string; runId: string; manifest: AvatarManifest; choice: CheckpointChoice }): Promise<CheckpointPickResult> {
  const { name, runId, manifest, choice } = input;
  const lastStep = manifest.steps;
  const checkpoints = (await listCheckpoints(backend, name, runId)).filter((c) => c.step <= lastStep);
  const steps = registrableSteps(checkpoints, lastStep);
  if (choice.kind === "step" && !steps.includes(choice.step)) {
    throw new AvatarError("BAD_INPUT", `Run ${runId} of ${name} has no checkpoint at step ${choice.step}.`, {
      hint: `Steps with weights: ${steps.join(", ")}. Pass one of them, \`last\` or \`auto\` to --checkpoint.`,
    });
  }
  const scores = await scoreCheckpoints(ctx, backend, name, checkpoints.filter((c) => c.weights || c.step === lastStep), manifest.dataset_sha256, runScoresKey(name, runId));
  let pick = pickCheckpoint(scores.rows, steps, choice);
  if (scores.unscored && choice.kind === "auto" && !pick.noFaces) {
    pick = { ...pickCheckpoint(scores.rows, steps, { kind: "last" }), choice: "auto", reason: `Cannot compare likeness (${scores.unscored}): keeping the last checkpoint.` };
  }
  const modelKey = pick.step === lastStep ? runModelKey(name, runId) : runStepModelKey(name, runId, pick.step);
  return {
    pick,
    rows: scores.rows,
    samples: scores.samples,
    steps,
    ...(scores.references ? { references: scores.references } : {}),
    modelKey,
    manifest: { ...manifest, checkpoint_step: pick.step, likeness: manifestLikeness(pick, !scores.unscored) },
  };
}

const checkpointFolder = (name: string, runId: string, step: number) => `${name}/runs/${runId}/checkpoints/checkpoint-${String(step).padStart(6, "0")}`;

/** What writeCheckpointModel would write (--dry-run). */
export function planCheckpointModel(backend: Backend, input: { name: string; runId: string }, picked: CheckpointPickResult): PlannedRequest[] {
  const objects = [`${picked.modelKey}/${MODEL_FILES.manifest}`];
  if (picked.pick.step !== picked.pick.lastStep) objects.unshift(`${picked.modelKey}/${MODEL_FILES.weights}`);
  return [{ service: "store", method: "put", request: { objects: objects.map((k) => backend.store.uri(k)) }, note: `the model of step ${picked.pick.step}${picked.pick.step === picked.pick.lastStep ? "" : ` (weights copied from ${backend.store.uri(checkpointFolder(input.name, input.runId, picked.pick.step))}/)`}` }];
}

/**
 * The chosen checkpoint's model folder: weights copied from the checkpoint (another step than the
 * last) and avatar.json with the step and its likeness, written last (a folder with an avatar.json is
 * complete). Copies nothing again when the folder already holds the weights.
 */
export async function writeCheckpointModel(backend: Backend, input: { name: string; runId: string }, picked: CheckpointPickResult): Promise<void> {
  const { pick, modelKey } = picked;
  if (pick.step !== pick.lastStep) {
    const source = `${checkpointFolder(input.name, input.runId, pick.step)}/${MODEL_FILES.weights}`;
    const target = `${modelKey}/${MODEL_FILES.weights}`;
    const [from, to] = await Promise.all([backend.store.stat(source), backend.store.stat(target)]);
    if (!from) throw new AvatarError("NOT_FOUND", `${backend.store.uri(source)} does not exist.`, { hint: "The checkpoint was removed; pass another --checkpoint." });
    if (!to || to.size !== from.size) await backend.store.put(target, await backend.store.read(source), { size: from.size, contentType: "application/octet-stream", overwrite: true });
  }
  const manifestKey = `${modelKey}/${MODEL_FILES.manifest}`;
  const body = `${JSON.stringify(picked.manifest, null, 2)}\n`;
  const current = (await backend.store.exists(manifestKey)) ? await text(await backend.store.read(manifestKey)) : undefined;
  if (current !== body) await backend.store.put(manifestKey, Buffer.from(body), { contentType: "application/json", overwrite: true });
}
