import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

export const generateCommand = defineCommand({
  name: "generate",
  summary: "Generate images of an avatar from prompts or a style pack",
  description:
    "Sends each prompt to the avatar's endpoint and writes the images (plus a contact sheet and images.json with seeds) to ./avatars/<name>/<stamp>/. Use {avatar} in a prompt for the trigger phrase; prompts without it get 'a photo of {avatar}, ' in front. With --batch, the prompts come from a file and the results are also kept in the store (the bucket on vertex) under <name>/outputs/<stamp>/.",
  args: [
    { name: "name", description: "avatar name", required: true },
    { name: "prompt", description: "one or more prompts (or use --pack or --batch)", variadic: true },
  ],
  options: [
    { flags: "--pack <pack>", description: "a style pack from templates/packs (demo, headshots, fantasy)" },
    { flags: "--batch <file>", description: "prompts from a file, one per line (# comments; - reads stdin); results also kept in the store" },
    { flags: "-n, --num-images <n>", description: "images per prompt (1-8)", default: "1", number: "int" },
    { flags: "--seed <n>", description: "seed of the first image (then +1 per image)", number: "int" },
    { flags: "--steps <n>", description: "denoising steps (1-100)", number: "int" },
    { flags: "--guidance <x>", description: "classifier-free guidance (0-30)", number: "float" },
    { flags: "--width <px>", description: "image width (256-1536, multiple of 8)", number: "int" },
    { flags: "--height <px>", description: "image height (256-1536, multiple of 8)", number: "int" },
    { flags: "--lora-scale <x>", description: "strength of the avatar LoRA (0-2)", number: "float" },
    { flags: "--negative <text>", description: "negative prompt" },
    { flags: "--format <format>", description: "jpeg or png", choices: ["jpeg", "png"], default: "jpeg" },
    { flags: "--out <dir>", description: "output folder", default: "avatars" },
    { flags: "--no-contact-sheet", description: "skip the contact sheet" },
  ],
  examples: [
    'avatar generate alice "{avatar} as an astronaut"',
    "avatar generate alice --pack headshots --seed 7",
    "avatar generate alice --batch prompts.txt -n 2 --json",
  ],
  async run(ctx, { args, options }) {
    const name = validateAvatarName(args[0]!);
    let prompts = args.slice(1);
    let negative = options.negative as string | undefined;
    if (options.pack !== undefined) {
      const { loadPack } = await import("../workflows/packs.ts");
      const pack = await loadPack(String(options.pack));
      prompts = [...prompts, ...pack.prompts];
      negative ??= pack.negative_prompt;
    }
    if (options.batch !== undefined) {
      const { loadPromptFile } = await import("../workflows/packs.ts");
      prompts = [...prompts, ...(await loadPromptFile(String(options.batch), ctx.cwd, ctx.streams.stdin))];
    }
    if (prompts.length === 0) throw new AvatarError("USAGE", "No prompt given.", { hint: `Pass a prompt (avatar generate ${name} "{avatar} as an astronaut"), --pack demo or --batch <file>.` });
    const numImages = Number(options.numImages);
    if (numImages < 1 || numImages > 8) throw new AvatarError("BAD_INPUT", "--num-images must be between 1 and 8.");
    const { withBackend } = await import("../workflows/session.ts");
    const { generateImages } = await import("../workflows/generate.ts");
    return withBackend(ctx, async (backend) => {
      const result = await generateImages(ctx, backend, {
        name,
        prompts,
        negativePrompt: negative,
        numImages,
        seed: options.seed as number | undefined,
        steps: options.steps as number | undefined,
        guidance: options.guidance as number | undefined,
        width: options.width as number | undefined,
        height: options.height as number | undefined,
        loraScale: options.loraScale as number | undefined,
        format: options.format as "jpeg" | "png",
        outDir: String(options.out),
        contactSheet: options.contactSheet !== false,
        store: options.batch !== undefined,
      });
      const human = result.images.map((i) => `${i.file}  seed ${i.seed}${i.nsfw ? "  (blacked out by the safety checker)" : ""}`);
      if (result.contactSheet) human.push(`contact sheet  ${result.contactSheet}`);
      if (result.stored) human.push(`kept in  ${result.stored.uri}`);
      await (await import("../workflows/costs.ts")).remindBilling(ctx, backend, name); // the endpoint stays up and bills
      return { data: result, human, next: `avatar down ${name}  (stop the endpoint when you are done)` };
    });
  },
});
