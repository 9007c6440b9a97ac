import { resolve } from "node:path";
import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";
import { trainerOptionsProblem } from "../core/trainer-args.ts";
import { faceCheckOption, faceInput } from "./prepare.ts";

export const trainCommand = defineCommand({
  name: "train",
  summary: "Prepare and upload selfies, train a LoRA, wait for it and register it",
  description:
    "Runs prepare → zip → upload (skipped when the same photos are already there) → training job → wait with progress → register. Ctrl-C while waiting: on vertex the job keeps running (`avatar status <name> --wait` re-attaches); on local the trainer stops and the same command resumes from its last checkpoint.",
  args: [{ name: "dir", description: "folder of 5-20 photos of one person", required: true }],
  options: [
    { flags: "-n, --name <name>", description: "avatar name (lowercase letters, digits, dashes)" },
    { flags: "--base <model>", description: "sdxl, sd15, a Hub id or a local diffusers directory (default: from config)" },
    { flags: "--base-revision <rev>", description: "branch, tag or commit of a Hub base (default main; the exact commit is recorded in avatar.json)" },
    { flags: "--gpu <gpu>", description: "l4 or t4 (vertex)", choices: ["l4", "t4"] },
    { flags: "--steps <n>", description: "training steps (default: 100 per usable photo, 500-1500)", number: "int" },
    { flags: "--rank <n>", description: "LoRA rank", default: "16", number: "int" },
    { flags: "--lr <x>", description: "learning rate", default: "0.0001", number: "float" },
    { flags: "--resolution <px>", description: "training resolution (default: the base model's)", number: "int" },
    { flags: "--seed <n>", description: "seed", default: "42", number: "int" },
    { flags: "--token <word>", description: "trigger token", default: "sks" },
    { flags: "--class-word <word>", description: "class of the subject: person, man, woman (default: the avatar's last one; asked on a terminal at its first train; else person)" },
    { flags: "--caption <mode>", description: "none (trigger only) or blip (auto-captions)", choices: ["none", "blip"], default: "none" },
    { flags: "--caption-model <id>", description: "BLIP model id or directory for --caption blip" },
    { flags: "--checkpoint-every <n>", description: "checkpoint interval in steps", number: "int" },
    { flags: "--mask-weight <x>", description: "loss weight outside the face, 0-1 (default 0.4; 1 = no face weighting)", number: "float" },
    { flags: "--samples-every <n>", description: "render 4 sample images into the checkpoint every N steps, 0 = never (default: about 5 per run)", number: "int" },
    { flags: "--sample-steps <n>", description: "sampler steps per sample image (default 25)", number: "int" },
    { flags: "--flip", description: "horizontal-flip augmentation (off: mirroring averages away a face's asymmetries)" },
    { flags: "--max-size <px>", description: "long side of the normalised photos with --no-face-check (face crops are the base resolution)", default: "1024", number: "int" },
    { flags: "--recursive", description: "also read photos in sub-folders" },
    faceCheckOption,
    { flags: "--spot", description: "vertex: Spot VMs (cheaper, may be preempted; checkpoints resume)" },
    { flags: "--detach", description: "launch and return; `avatar status <name> --wait` re-attaches" },
    { flags: "--no-register", description: "do not register the model after training" },
    { flags: "--force", description: "train a full-size base model even without a GPU" },
  ],
  examples: ["avatar train ./selfies --name alice", "avatar train ./selfies --name alice --base sd15 --steps 600 --detach --json"],
  async run(ctx, { args, options }) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    if (typeof options.name !== "string") throw new AvatarError("USAGE", "Which avatar?", { hint: "Pass --name <name>." });
    const name = validateAvatarName(options.name);
    const choices = {
      steps: options.steps as number | undefined,
      rank: Number(options.rank),
      lr: Number(options.lr),
      resolution: options.resolution as number | undefined,
      token: String(options.token),
      classWord: options.classWord === undefined ? undefined : String(options.classWord),
      checkpointEvery: options.checkpointEvery as number | undefined,
      maskWeight: options.maskWeight as number | undefined,
      samplesEvery: options.samplesEvery as number | undefined,
      sampleSteps: options.sampleSteps as number | undefined,
    };
    if (typeof options.baseRevision === "string" && !/^[\w./-]{1,128}$/.test(options.baseRevision)) {
      throw new AvatarError("BAD_INPUT", `--base-revision "${options.baseRevision}" is not a branch, tag or commit.`, { hint: "e.g. --base-revision main, or a 40-character commit hash." });
    }
    const problem = trainerOptionsProblem(choices);
    if (problem) throw new AvatarError("BAD_INPUT", `${problem}.`, { hint: "`avatar train --help` lists the options." });
    const { withBackend } = await import("../workflows/session.ts");
    const { prepareDataset } = await import("../workflows/prepare.ts");
    const { ensureDataset } = await import("../workflows/upload.ts");
    const { trainAvatar } = await import("../workflows/train.ts");
    const { checkTrainable, photoCountHint, resolveClassWord } = await import("../workflows/train.ts");
    const { resolveBase } = await import("../workflows/base-model.ts");
    const base = (options.base as string | undefined) ?? ctx.config.values.baseModel;
    return withBackend(ctx, async (backend) => {
      // Refuse what cannot train here before minutes of photo work and an upload.
      const resolved = resolveBase(base, ctx.cwd);
      await checkTrainable(ctx, backend, resolved, options.force === true);
      const { classWord, source } = await resolveClassWord(ctx, backend, name, choices.classWord);
      if (source === "remembered") ctx.out.detail(`class word "${classWord}" from ${name}'s earlier runs (--class-word changes it)`);
      // What it will cost, asked before anything is uploaded or launched (vertex only).
      const { confirmCost, trainingCost } = await import("../workflows/costs.ts");
      const photos = choices.steps === undefined ? await photoCountHint(resolve(ctx.cwd, args[0]!), options.recursive === true) : undefined;
      const estimate = trainingCost(backend, { base: resolved.base, pipeline: resolved.pipeline, steps: choices.steps, photos, gpu: ctx.config.values.gpu, spot: options.spot === true });
      await confirmCost(ctx, estimate, name, `Train ${name}`);
      const faces = await faceInput(ctx, base, choices.resolution);
      const prepared = await prepareDataset(ctx, { dir: args[0]!, maxSize: Number(options.maxSize), recursive: options.recursive === true, ...faces });
      let dataset;
      try {
        dataset = await ensureDataset(ctx, backend.store, prepared, name, { dryRun: ctx.flags.dryRun });
      } finally {
        await prepared.dispose();
      }
      ctx.out.success(`Dataset ${dataset.status === "exists" ? "already in the store" : dataset.status === "dry-run" ? "checked (dry run)" : "uploaded"}: ${dataset.uri} (${dataset.images} photos)`);
      const result = await trainAvatar(ctx, backend, {
        name,
        dataset: { sha256: dataset.sha256, images: dataset.images },
        base,
        ...(typeof options.baseRevision === "string" ? { baseRevision: options.baseRevision } : {}),
        ...choices,
        classWord,
        flip: options.flip === true,
        seed: Number(options.seed),
        caption: options.caption as "none" | "blip",
        captionModel: options.captionModel as string | undefined,
        spot: options.spot === true,
        detach: options.detach === true,
        force: options.force === true,
        register: options.register !== false,
      });
      const { checkpointTable } = await import("../ui/checkpoint-table.ts");
      const human = [
        ...(result.registered?.checkpoint ? checkpointTable(result.registered.checkpoint) : []),
        `run      ${result.job.runId} (${result.job.state}${result.resumed ? ", resumed" : ""})`,
        `model    ${result.registered?.artifactUri ?? result.job.modelUri}`,
        ...(result.registered?.version ? [`version  ${result.registered.version.versionId}`] : []),
        ...formatPlannedRequests(result.requests),
      ];
      const next = result.job.state === "running" ? `avatar status ${name} --wait` : result.registered ? `avatar deploy ${name}` : `avatar register --name ${name} --run ${result.job.runId}`;
      return { data: { dataset, ...result, ...(estimate ? { estimate } : {}) }, human, next: ctx.flags.dryRun ? undefined : next };
    });
  },
});
