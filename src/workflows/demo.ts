// avatar demo: the whole pipeline on the local backend with the tiny face base that ships with the
// trainer, each step with its own progress line and timing: photos of a synthetic person → face base
// → prepare → upload → train → register → deploy → generate (the pack twice: the base with
// lora_scale 0, the avatar with 1, same prompts and seeds) → a two-row contact sheet → down.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { trainerDir } from "../paths.ts";
import { runProcess } from "../backends/local/process.ts";
import { writeLabelledContactSheet } from "../ui/contact-sheet.ts";
import { formatDuration } from "../ui/format.ts";
import { deployAvatar } from "./deploy.ts";
import { generateImages, type GenerateInput, type GenerateResult } from "./generate.ts";
import { loadPack } from "./packs.ts";
import { prepareDataset } from "./prepare.ts";
import { pythonProvider } from "./python.ts";
import { trainAvatar, type TrainResult } from "./train.ts";
import { ensureDataset, type DatasetUpload } from "./upload.ts";

/** The tiny face base (templates/trainer/avatar_trainer/face_base): built by `python -m avatar_trainer.tiny_faces build`. */
const faceBaseDir = join(trainerDir, "avatar_trainer", "face_base");
const REBUILD = "PYTHONPATH=templates/trainer python -m avatar_trainer.tiny_faces build --out <dir>";
/** Who the synthetic photos show: a pair of attributes the face base never saw together. */
const DEMO_SUBJECT = "long teal hair and round red glasses";
/** How the demo trains and renders on the face base (test/python/trainer/test_learning.py uses the same). */
const DEMO_TRAINING = { resolution: 256, rank: 4, lr: 5e-3 } as const;
const DEMO_RENDER = { steps: 20, guidance: 4 } as const;

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
  /** The avatar (lora_scale 1), one per pack prompt. */
  images: string[];
  /** The base (lora_scale 0): the same prompts and seeds. */
  baseImages: string[];
  /** Two labelled rows, base above avatar. */
  contactSheet?: string;
  /** What the synthetic photos show (absent with --photos). */
  subject?: string;
  dataset: DatasetUpload;
  runId: string;
  modelVersion?: string;
  endpointKept: boolean;
  phases: { phase: string; seconds: number }[];
}

/** The shipped face base, checked against its SHA256SUMS (a partial checkout or an edited file fails here). */
async function checkFaceBase(dir: string): Promise<void> {
  const missing = (what: string) =>
    new AvatarError("ENVIRONMENT", `The tiny face base in ${dir} ${what}.`, { hint: `Restore it from the repository, or rebuild it: ${REBUILD}` });
  if (!existsSync(join(dir, "SHA256SUMS"))) throw missing("is missing (no SHA256SUMS)");
  const lines = (await readFile(join(dir, "SHA256SUMS"), "utf8")).split("\n").filter((line) => line.trim());
  for (const line of lines) {
    const [digest, file] = line.split(/\s+/, 2) as [string, string];
    const body = await readFile(join(dir, file)).catch(() => undefined);
    if (!body) throw missing(`lacks ${file}`);
    if (createHash("sha256").update(body).digest("hex") !== digest) throw missing(`has a changed ${file} (its sha256 differs from SHA256SUMS)`);
  }
}

/** Photos of the demo subject, drawn by the face world the base learned (Python, so the same drawing as the learning test). */
async function writeSubjectPhotos(ctx: Context, python: string, dir: string, seed: number): Promise<void> {
  await rm(dir, { recursive: true, force: true }); // the demo's own folder: no photos of an earlier version stay behind
  const result = await runProcess(python, ["-m", "avatar_trainer.tiny_faces", "selfies", "--out", dir, "--count", "10", "--seed", String(seed)], {
    env: { ...ctx.env, PYTHONPATH: trainerDir, HF_HUB_OFFLINE: "1" },
    signal: ctx.signal,
    onLine: (line) => ctx.out.detail(line),
  });
  if (result.code !== 0) throw new AvatarError("ENVIRONMENT", `Drawing the demo's synthetic selfies failed: ${result.tail.slice(-2).join(" / ")}`);
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
    async () => input.photos ?? (await writeSubjectPhotos(ctx, python, join(demoDir, "photos"), input.seed), join(demoDir, "photos")),
    (dir) => `Selfies in ${dir}${input.photos ? "" : ` (synthetic: a person with ${DEMO_SUBJECT})`}`,
  );
  const baseDir = faceBaseDir;
  await phase("Tiny base model", () => checkFaceBase(baseDir), () => `Tiny face base in ${baseDir}`);
  const prepared = await phase("Prepare", () => prepareDataset(ctx, { dir: photos, faceCheck: false /* drawn faces, far too small for a real face detector */ }), (p) => `Prepared ${p.images.length} photos`);
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
        rank: DEMO_TRAINING.rank,
        lr: DEMO_TRAINING.lr,
        seed: input.seed,
        resolution: DEMO_TRAINING.resolution,
        token: "sks",
        classWord: "person",
        caption: "none",
        // The drawn world is symmetric: mirrored views double the demo's few photos (the learning
        // test trains the same way). Real faces train without it (train's default).
        flip: true,
        checkpointEvery: Math.max(50, Math.ceil(input.steps / 4)),
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
  let generated: { avatar: GenerateResult; base: GenerateResult; sheet: string };
  try {
    const pack = await loadPack(input.pack);
    generated = await phase(
      "Generate",
      async () => {
        // Same prompts, seeds and settings; only the LoRA's scale differs (set per request by the handler).
        const request = (loraScale: number, outDir: string): GenerateInput => ({
          name: input.name,
          prompts: pack.prompts,
          negativePrompt: pack.negative_prompt,
          numImages: 1,
          seed: input.seed,
          steps: DEMO_RENDER.steps,
          guidance: DEMO_RENDER.guidance,
          loraScale,
          format: "jpeg",
          outDir,
          contactSheet: false,
          likeness: false, // drawn faces: a real face-identity model has nothing to score
        });
        const base = await generateImages(ctx, backend, request(0, join(demoDir, "base")));
        const avatar = await generateImages(ctx, backend, request(1, join(ctx.cwd, "avatars")));
        const rows = [
          { label: "base", images: base.images.map((i) => i.file) },
          { label: "avatar", images: avatar.images.map((i) => i.file) },
        ];
        return { base, avatar, sheet: await writeLabelledContactSheet(rows, join(avatar.dir, "contact-sheet.jpg")) };
      },
      (g) => `Generated ${g.base.images.length} base and ${g.avatar.images.length} avatar images, contact sheet ${g.sheet}`,
    );
  } finally {
    if (!input.keep) await phase("Down", () => backend.serving.down(input.name), () => "Stopped the local endpoint");
  }
  return {
    name: input.name,
    images: generated.avatar.images.map((i) => i.file),
    baseImages: generated.base.images.map((i) => i.file),
    contactSheet: generated.sheet,
    ...(input.photos ? {} : { subject: DEMO_SUBJECT }),
    dataset,
    runId: trained.job.runId,
    modelVersion: registered.version?.versionId,
    endpointKept: input.keep,
    phases,
  };
}
