import { defineCommand } from "./spec.ts";
import { table } from "../ui/format.ts";

export const initCommand = defineCommand({
  name: "init",
  summary: "Set up avatar.config.json (backend, project, region, bucket, GPU, base model)",
  description:
    "Asks for what flags and AVATAR_* variables do not give, offers to create a private bucket, and writes avatar.config.json in the current folder. Fully scriptable: pass every value as a flag with --no-input.",
  options: [
    { flags: "--gpu <gpu>", description: "default GPU: l4 or t4", choices: ["l4", "t4"] },
    { flags: "--base <model>", description: "default base model: sdxl or sd15", choices: ["sdxl", "sd15"] },
    { flags: "--store <dir>", description: "local backend: where datasets and models are kept" },
    { flags: "--create-bucket", description: "create the bucket if it does not exist (private, uniform access)" },
  ],
  examples: [
    "avatar init",
    "avatar init --no-input --backend local",
    "avatar init --no-input --backend vertex --project my-proj --region us-central1 --bucket my-proj-avatar --gpu l4 --create-bucket",
  ],
  async run(ctx, { options }) {
    const { runInit } = await import("../workflows/init.ts");
    const result = await runInit(ctx, { createBucket: options.createBucket === true });
    const human = table(Object.entries(result.config).map(([k, v]) => [k, v]));
    if (result.bucket) human.push(`bucket gs://${result.bucket.name}: ${result.bucket.action}`);
    human.push(result.written ? `Wrote ${result.path}` : ctx.flags.dryRun ? `Would write ${result.path}` : `Left ${result.path} unchanged`);
    return {
      data: result,
      human,
      next: result.config.backend === "local" ? "avatar demo" : "avatar doctor",
    };
  },
});
