// The trainer's command line (templates/trainer): the same arguments on Vertex and on the local backend.

export interface TrainerArgsInput {
  dataset: string;
  outputDir: string;
  checkpointDir: string;
  /** Also append the log lines here (Vertex: the run's logs/trainer.log through the FUSE mount). */
  logFile?: string;
  base: string;
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
  if (input.pipeline) args.push("--pipeline", input.pipeline);
  if (input.resolution) args.push("--resolution", String(input.resolution));
  if (input.captionModel) args.push("--caption-model", input.captionModel);
  if (input.vae) args.push("--vae", input.vae);
  if (input.gradientCheckpointing) args.push("--gradient-checkpointing");
  if (input.flip) args.push("--flip");
  return args;
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
