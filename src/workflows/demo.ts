// avatar demo: the whole pipeline on the local backend with a tiny model built offline, each step
// with its own progress line and timing: photos → tiny base → prepare → upload → train → register
// → deploy → generate (pack) → contact sheet → down.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { trainerDir } from "../paths.ts";
import { runProcess } from "../backends/local/process.ts";
import { formatDuration } from "../ui/format.ts";
import { deployAvatar } from "./deploy.ts";
import { generateImages, type GenerateResult } from "./generate.ts";
import { loadPack } from "./packs.ts";
import { prepareDataset } from "./prepare.ts";
import { pythonProvider } from "./python.ts";
import { writeSyntheticSelfies } from "./synthetic-selfies.ts";
import { trainAvatar, type TrainResult } from "./train.ts";
import { ensureDataset, type DatasetUpload } from "./upload.ts";

export interface DemoInput {
  name: string;
  photos?: string;
  keep: boolean;
  steps: number;
  pack: string;
  seed: number;
}

export interface DemoResult {
  name: string;
  images: string[];
  contactSheet?: string;
  dataset: DatasetUpload;
  runId: string;
  modelVersion?: string;
  endpointKept: boolean;
  phases: { phase: string; seconds: number }[];
}

async function buildTinyBase(ctx: Context, python: string, dir: string): Promise<void> {
  // The marker, not just model_index.json: an older kit's tiny model (2x VAE) is slow at 256 px.
  if (existsSync(join(dir, "avatar-tiny.json"))) return;
  const result = await runProcess(python, ["-m", "avatar_trainer.tiny", "--pipeline", "sd15", "--out", dir], {
    env: { ...ctx.env, PYTHONPATH: trainerDir, HF_HUB_OFFLINE: "1" },
    signal: ctx.signal,
    onLine: (line) => ctx.out.detail(line),
  });
  if (result.code !== 0) throw new AvatarError("ENVIRONMENT", `Building the tiny demo model failed: ${result.tail.slice(-2).join(" / ")}`);
}

export async function runDemo(ctx: Context, backend: Backend, input: DemoInput): Promise<DemoResult> {
  const phases: DemoResult["phases"] = [];
  const demoDir = join(ctx.config.values.home, "demo");
  async function phase<T>(label: string, work: () => Promise<T>, done?: (value: T) => string): Promise<T> {
    const started = Date.now();
    ctx.out.info(ctx.out.style.bold(`▸ ${label}`));
    const value = await work();
    const seconds = (Date.now() - started) / 1000;
    phases.push({ phase: label, seconds });
    ctx.out.success(`${done ? done(value) : label} ${ctx.out.style.dim(`(${formatDuration(seconds * 1000)})`)}`);
    return value;
  }

  const python = await phase("Python environment", () => pythonProvider(ctx, { announce: false })(), () => "Python environment ready");
  const photos = await phase(
    "Selfies",
    async () => input.photos ?? (await writeSyntheticSelfies(join(demoDir, "photos"), 8, input.seed), join(demoDir, "photos")),
    (dir) => `Selfies in ${dir}${input.photos ? "" : " (synthetic)"}`,
  );
  const baseDir = join(demoDir, "tiny-sd15");
  await phase("Tiny base model", () => buildTinyBase(ctx, python, baseDir), () => `Tiny SD 1.5-shaped base model in ${baseDir}`);
  const prepared = await phase("Prepare", () => prepareDataset(ctx, { dir: photos, faceCheck: false /* drawn faces, far too small for the detector */ }), (p) => `Prepared ${p.images.length} photos`);
  let dataset: DatasetUpload;
  try {
    dataset = await phase("Upload", () => ensureDataset(ctx, backend.store, prepared, input.name), (d) => (d.status === "exists" ? `Dataset already in the store: ${d.uri}` : `Uploaded ${d.uri}`));
  } finally {
    await prepared.dispose();
  }
  const trained: TrainResult = await phase(
    "Train",
    () =>
      trainAvatar(ctx, backend, {
        name: input.name,
        dataset: { sha256: dataset.sha256, images: dataset.images },
        base: baseDir,
        steps: input.steps,
        rank: 4,
        lr: 1e-3,
        seed: input.seed,
        resolution: 64,
        token: "sks",
        classWord: "person",
        caption: "none",
        checkpointEvery: 2,
        spot: false,
        detach: false,
        force: false,
        register: false,
      }),
    (t) => `Trained run ${t.job.runId}${t.resumed ? " (resumed from its checkpoint)" : ""}`,
  );
  const { registerRun } = await import("./register.ts");
  const registered = await phase("Register", () => registerRun(ctx, backend, { name: input.name, runId: trained.job.runId, checkpoint: { kind: "auto" } }), (r) => `Registered ${input.name} version ${r.version?.versionId}`);
  await phase("Deploy", () => deployAvatar(ctx, backend, { name: input.name, gpu: ctx.config.values.gpu }), (d) => `Local endpoint ready${d.endpoint?.url ? ` at ${d.endpoint.url}` : ""}`);
  let generated: GenerateResult;
  try {
    const pack = await loadPack(input.pack);
    generated = await phase(
      "Generate",
      () =>
        generateImages(ctx, backend, {
          name: input.name,
          prompts: pack.prompts,
          negativePrompt: pack.negative_prompt,
          numImages: 1,
          seed: input.seed,
          steps: 8,
          format: "jpeg",
          outDir: join(ctx.cwd, "avatars"),
          contactSheet: true,
          likeness: false, // the tiny model draws noise and the demo's selfies are drawn: nothing to score
        }),
      (g) => `Generated ${g.images.length} images and a contact sheet in ${g.dir}`,
    );
  } finally {
    if (!input.keep) await phase("Down", () => backend.serving.down(input.name), () => "Stopped the local endpoint");
  }
  return {
    name: input.name,
    images: generated.images.map((i) => i.file),
    contactSheet: generated.contactSheet,
    dataset,
    runId: trained.job.runId,
    modelVersion: registered.version?.versionId,
    endpointKept: input.keep,
    phases,
  };
}
