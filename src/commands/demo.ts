import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

export const demoCommand = defineCommand({
  name: "demo",
  summary: "The whole pipeline on this machine with a tiny model: no cloud, a few minutes on a CPU",
  description:
    "Makes synthetic selfies (or uses --photos), builds a tiny randomly initialised base model offline, then prepares, uploads to the local store, trains a LoRA for a few steps, registers, deploys a local endpoint, generates a pack of images with a contact sheet, and stops the endpoint. The images are noise-like (the base model is random): the point is that every step is the real one.",
  options: [
    { flags: "--photos <dir>", description: "use your own photos instead of synthetic ones" },
    { flags: "--name <name>", description: "avatar name", default: "demo" },
    { flags: "--steps <n>", description: "training steps", default: "6", number: "int" },
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
    if (steps < 1 || steps > 200) throw new AvatarError("BAD_INPUT", "--steps must be between 1 and 200 for the demo.");
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
        "Images:",
        ...result.images.map((file) => `  ${file}`),
        ...(result.contactSheet ? [`Contact sheet: ${result.contactSheet}`] : []),
        "",
        "That was the real pipeline on a tiny random model. For a real avatar on Google Cloud (about 30-60 min, a few USD):",
        "  avatar init                                   # project, region, bucket, GPU",
        "  avatar train ./selfies --name me --backend vertex",
        "  avatar deploy me && avatar generate me --pack headshots",
        "  avatar down me                                # stop billing",
      ];
      return { data: result, human, next: result.endpointKept ? `avatar generate ${name} "{avatar} as a pirate"` : "avatar init" };
    });
  },
});
