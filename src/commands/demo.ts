import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

/** LoRA steps of the demo: enough for the face base to draw the subject (about a minute on 2 CPU cores). */
const DEMO_STEPS = 1000;

export const demoCommand = defineCommand({
  name: "demo",
  summary: "The whole pipeline on this machine with a tiny model: no cloud, a few minutes on a CPU",
  description:
    "Draws synthetic selfies of one person (long teal hair and round red glasses, a pair the tiny face base never saw together; or uses --photos), then prepares, uploads to the local store, trains a LoRA on the tiny face base that ships with the trainer, registers, deploys a local endpoint, renders the pack twice with the same seeds (the base with lora_scale 0, the avatar with 1), writes a contact sheet with both rows, and stops the endpoint. Every step is the real one; the base is 64 px faces drawn at 256 px.",
  options: [
    { flags: "--photos <dir>", description: "use your own photos instead of synthetic ones" },
    { flags: "--name <name>", description: "avatar name", default: "demo" },
    { flags: "--steps <n>", description: "training steps", default: String(DEMO_STEPS), number: "int" },
    { flags: "--pack <pack>", description: "style pack to generate", default: "demo" },
    { flags: "--seed <n>", description: "seed", default: "7", number: "int" },
    { flags: "--keep", description: "leave the local endpoint running (stop it with `avatar down demo`)" },
  ],
  examples: ["avatar demo", "avatar demo --photos ./selfies --keep", "avatar demo --json"],
  async run(ctx, { options }) {
    if (ctx.config.values.backend !== "local") {
      throw new AvatarError("USAGE", "avatar demo runs on the local backend only.", { hint: "Drop --backend vertex (or AVATAR_BACKEND) for the demo." });
    }
    const name = validateAvatarName(String(options.name));
    const steps = Number(options.steps);
    if (steps < 1 || steps > 2000) throw new AvatarError("BAD_INPUT", "--steps must be between 1 and 2000 for the demo.");
    const { withBackend } = await import("../workflows/session.ts");
    const { runDemo } = await import("../workflows/demo.ts");
    return withBackend(ctx, async (backend) => {
      const result = await runDemo(ctx, backend, {
        name,
        photos: options.photos as string | undefined,
        keep: options.keep === true,
        steps,
        pack: String(options.pack),
        seed: Number(options.seed),
      });
      const human = [
        "",
        "Avatar (lora_scale 1):",
        ...result.images.map((file) => `  ${file}`),
        "Base (lora_scale 0, same prompts and seeds):",
        ...result.baseImages.map((file) => `  ${file}`),
        ...(result.contactSheet ? [`Contact sheet (base above avatar): ${result.contactSheet}`] : []),
        ...(result.subject ? ["", `The photos show a person with ${result.subject}; the base never drew them together, the avatar row should.`] : []),
        "",
        "That was the real pipeline on a tiny model. For a real avatar on Google Cloud (about 30-60 min, a few USD):",
        "  avatar init                                   # project, region, bucket, GPU",
        "  avatar train ./selfies --name me --backend vertex",
        "  avatar deploy me && avatar generate me --pack headshots",
        "  avatar down me                                # stop billing",
      ];
      return { data: result, human, next: result.endpointKept ? `avatar generate ${name} "{avatar} as a pirate"` : "avatar init" };
    });
  },
});
