// The trainer's command line (templates/trainer): the same arguments on Vertex and on the local backend.

export interface TrainerArgsInput {
  dataset: string;
  outputDir: string;
  checkpointDir: string;
  /** Also append the log lines here (Vertex: the run's logs/trainer.log through the FUSE mount). */
  logFile?: string;
  base: string;
  /** A Hub base's branch, tag or commit (the trainer pins it to one commit; default main). */
  baseRevision?: string;
  pipeline?: "sd15" | "sdxl";
  resolution?: number;
  token: string;
  classWord: string;
  steps: number;
  rank: number;
  lr: number;
  seed: number;
  caption: "none" | "blip";
  captionModel?: string;
  checkpointEvery: number;
  logEvery: number;
  vae?: string;
  gradientCheckpointing?: boolean;
  flip?: boolean;
  /** Loss weight outside the face (faces.json in the dataset); 1 = no face weighting. Trainer default 0.4. */
  maskWeight?: number;
  /** Render the sample prompts every N steps (0 = never); trainer default: about 5 sampled checkpoints. */
  samplesEvery?: number;
  /** Sampler steps per sample image; trainer default 25 (2 on the tiny models). */
  sampleSteps?: number;
  name: string;
  runId: string;
  datasetSha256: string;
}

export function trainerArgs(input: TrainerArgsInput): string[] {
  const args = [
    "--dataset", input.dataset,
    "--output-dir", input.outputDir,
    "--checkpoint-dir", input.checkpointDir,
    "--base", input.base,
    "--token", input.token,
    "--class-word", input.classWord,
    "--steps", String(input.steps),
    "--rank", String(input.rank),
    "--lr", String(input.lr),
    "--seed", String(input.seed),
    "--caption", input.caption,
    "--checkpoint-every", String(input.checkpointEvery),
    "--log-every", String(input.logEvery),
    "--name", input.name,
    "--run-id", input.runId,
    "--dataset-sha256", input.datasetSha256,
  ];
  if (input.logFile) args.push("--log-file", input.logFile);
  if (input.baseRevision) args.push("--base-revision", input.baseRevision);
  if (input.pipeline) args.push("--pipeline", input.pipeline);
  if (input.resolution) args.push("--resolution", String(input.resolution));
  if (input.captionModel) args.push("--caption-model", input.captionModel);
  if (input.vae) args.push("--vae", input.vae);
  if (input.gradientCheckpointing) args.push("--gradient-checkpointing");
  if (input.flip) args.push("--flip");
  if (input.maskWeight !== undefined) args.push("--mask-weight", String(input.maskWeight));
  if (input.samplesEvery !== undefined) args.push("--samples-every", String(input.samplesEvery));
  if (input.sampleSteps !== undefined) args.push("--sample-steps", String(input.sampleSteps));
  return args;
}

export interface TrainerChoices {
  steps?: number;
  rank: number;
  lr: number;
  resolution?: number;
  token: string;
  /** Undefined: remembered from the avatar's earlier runs, asked on a terminal, else "person". */
  classWord?: string;
  checkpointEvery?: number;
  maskWeight?: number;
  samplesEvery?: number;
  sampleSteps?: number;
}

/**
 * Why the trainer's own argument checks (templates/trainer cli.py) would refuse these options, or
 * undefined. Checked before any photo work or upload: on Vertex a refusal by the trainer would
 * only show up minutes later as a failed job.
 */
export function trainerOptionsProblem(o: TrainerChoices): string | undefined {
  const whole = (flag: string, value: number | undefined) =>
    value !== undefined && (!Number.isInteger(value) || value < 1) ? `${flag} must be a whole number of at least 1, got ${value}` : undefined;
  const word = (flag: string, value: string) => (/^\S{1,64}$/.test(value) ? undefined : `${flag} must be one word without spaces (up to 64 characters), got "${value}"`);
  return (
    whole("--steps", o.steps) ??
    whole("--rank", o.rank) ??
    whole("--checkpoint-every", o.checkpointEvery) ??
    whole("--sample-steps", o.sampleSteps) ??
    (o.samplesEvery === undefined || (Number.isInteger(o.samplesEvery) && o.samplesEvery >= 0) ? undefined : `--samples-every must be a whole number of 0 or more, got ${o.samplesEvery}`) ??
    (o.maskWeight === undefined || (Number.isFinite(o.maskWeight) && o.maskWeight >= 0 && o.maskWeight <= 1) ? undefined : `--mask-weight must be a number between 0 and 1, got ${o.maskWeight}`) ??
    (Number.isFinite(o.lr) && o.lr > 0 ? undefined : `--lr must be a positive number, got ${o.lr}`) ??
    (o.resolution === undefined || (Number.isInteger(o.resolution) && o.resolution % 8 === 0 && o.resolution >= 64 && o.resolution <= 2048)
      ? undefined
      : `--resolution must be a multiple of 8 between 64 and 2048, got ${o.resolution}`) ??
    word("--token", o.token) ??
    (o.classWord === undefined ? undefined : word("--class-word", o.classWord))
  );
}

export interface TrainerProgress {
  step: number;
  total: number;
  loss?: number;
  itPerSecond?: number;
  etaSeconds?: number;
}

/** Parses one trainer log line (`step=120/1000 loss=0.0831 it_s=1.42 eta_s=620`); undefined for other lines. */
export function parseTrainerLine(line: string): { kind: "step"; progress: TrainerProgress } | { kind: "phase" | "checkpoint" | "done"; fields: Record<string, string> } | undefined {
  const fields: Record<string, string> = {};
  for (const match of line.trim().matchAll(/([a-z_]+)=(\S+)/g)) fields[match[1]!] = match[2]!;
  const head = line.trim().split(/\s+/)[0] ?? "";
  if (head.startsWith("step=")) {
    const [step, total] = (fields.step ?? "").split("/").map(Number);
    if (!Number.isFinite(step) || !Number.isFinite(total)) return undefined;
    const num = (key: string) => (fields[key] === undefined ? undefined : Number(fields[key]));
    return { kind: "step", progress: { step: step!, total: total!, loss: num("loss"), itPerSecond: num("it_s"), etaSeconds: num("eta_s") } };
  }
  if (head.startsWith("phase=")) return { kind: "phase", fields };
  if (head === "checkpoint") return { kind: "checkpoint", fields };
  if (head === "done") return { kind: "done", fields };
  return undefined;
}
