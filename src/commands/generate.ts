import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";
import type { CommandResult } from "../ui/output.ts";
import type { BatchGenerateResult } from "../workflows/generate-batch.ts";

/** An image's likeness for its human line (absent: not scored). */
const likenessNote = (i: { likeness?: number | null }) => (i.likeness === undefined ? "" : `  likeness ${i.likeness === null ? "– (no face)" : i.likeness.toFixed(2)}`);

/** Likeness scoring: on unless --no-likeness or AVATAR_LIKENESS=0|off|false. */
const likenessOn = (ctx: { env: NodeJS.ProcessEnv }, options: Readonly<Record<string, unknown>>) =>
  options.likeness !== false && !["0", "off", "false"].includes(String(ctx.env.AVATAR_LIKENESS ?? "").toLowerCase());

/** Human lines of a --no-endpoint run: the images, the failed ones with their errors, where the outputs are. */
async function batchResult(name: string, result: BatchGenerateResult): Promise<CommandResult> {
  if (result.dryRun) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts");
    const human = [`Would launch a batch job of ${result.planned} image${result.planned === 1 ? "" : "s"} for ${name} (outputs in ${result.outputs}).`];
    // The estimate line itself went to stderr before the plan (workflows/costs.ts confirmCost).
    return { data: result, human: [...human, ...formatPlannedRequests(result.requests)], next: `avatar generate ${name} … --no-endpoint  (without --dry-run)` };
  }
  const human = (result.images ?? []).map((i) => `${i.file}  seed ${i.seed}${likenessNote(i)}${i.nsfw ? "  (blacked out by the safety checker)" : ""}`);
  for (const f of result.failed) human.push(`failed  image ${f.position} (${f.prompt}, seed ${f.seed}): ${f.error}`);
  if (result.contactSheet) human.push(`contact sheet  ${result.contactSheet}`);
  if (result.stored) human.push(`kept in  ${result.stored.uri}`);
  return { data: result, human, next: `avatar status ${name}  (nothing is left running)` };
}

export const generateCommand = defineCommand({
  name: "generate",
  summary: "Generate images of an avatar from prompts or a style pack",
  description:
    "Sends each prompt to the avatar's endpoint and writes the images (plus a contact sheet and images.json with seeds) to ./avatars/<name>/<stamp>/. Use {avatar} in a prompt for the trigger phrase; prompts without it get 'a photo of {avatar}, ' in front. With --batch, the prompts come from a file and the results are also kept in the store (the bucket on vertex) under <name>/outputs/<stamp>/. With --no-endpoint (vertex), a batch prediction job makes the same files without an endpoint: nothing is left running (or billing) afterwards.",
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
    { flags: "--no-likeness", description: "skip scoring each image's likeness to the avatar's photos (images.json; also AVATAR_LIKENESS=0)" },
    { flags: "--studio <studio>", description: "generate from this studio (default: the avatar's own endpoint, else a studio that serves it)" },
    { flags: "--no-endpoint", description: "vertex: a batch prediction job instead of the endpoint (none needed; results also kept in the bucket)" },
    { flags: "--gpu <gpu>", description: "with --no-endpoint: l4 or t4", choices: ["l4", "t4"] },
    { flags: "--spot", description: "with --no-endpoint: Spot VMs (cheaper; a preempted job is restarted by Vertex)" },
    { flags: "--model-version <version>", description: "with --no-endpoint: model version, alias or run id (default: the default version)" },
    { flags: "--collect <stamp>", description: "wait for the batch job of an earlier --no-endpoint run (its outputs/<stamp>) and write its images" },
  ],
  examples: [
    'avatar generate alice "{avatar} as an astronaut"',
    "avatar generate alice --pack headshots --seed 7",
    "avatar generate alice --batch prompts.txt -n 2 --json",
    "avatar generate alice --pack headshots --no-endpoint --spot",
  ],
  async run(ctx, { args, options }) {
    const name = validateAvatarName(args[0]!);
    const batch = options.endpoint === false;
    for (const flag of ["spot", "modelVersion"] as const) {
      if (options[flag] !== undefined && !batch) {
        throw new AvatarError("USAGE", `--${flag === "spot" ? "spot" : "model-version"} is for --no-endpoint.`, { hint: "A deployed endpoint already serves one version on its own machine; add --no-endpoint for a batch job." });
      }
    }
    if (options.collect !== undefined) {
      if (args.length > 1 || options.pack !== undefined || options.batch !== undefined) throw new AvatarError("USAGE", "--collect takes no prompts: they are in the batch job.", { hint: `avatar generate ${name} --collect <stamp>` });
      const { withBackend } = await import("../workflows/session.ts");
      const { collectBatch } = await import("../workflows/generate-batch.ts");
      const stamp = String(options.collect);
      return withBackend(ctx, async (backend) => batchResult(name, await collectBatch(ctx, backend, { name, stamp, outDir: String(options.out), contactSheet: options.contactSheet !== false, likeness: likenessOn(ctx, options) })));
    }
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
    const studio = options.studio === undefined ? undefined : (await import("../core/studio.ts")).validateStudioName(String(options.studio));
    if (studio && batch) throw new AvatarError("USAGE", "--studio and --no-endpoint do not go together: a studio is an endpoint.", { hint: `avatar generate ${name} --studio ${studio} "…"` });
    const request = {
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
      likeness: likenessOn(ctx, options),
      ...(studio ? { studio } : {}),
    };
    if (batch) {
      const { generateWithoutEndpoint } = await import("../workflows/generate-batch.ts");
      const input = { ...request, gpu: ctx.config.values.gpu, spot: options.spot === true, version: options.modelVersion as string | undefined };
      return withBackend(ctx, async (backend) => batchResult(name, await generateWithoutEndpoint(ctx, backend, input)));
    }
    const { generateImages } = await import("../workflows/generate.ts");
    return withBackend(ctx, async (backend) => {
      const result = await generateImages(ctx, backend, request);
      const human = result.images.map((i) => `${i.file}  seed ${i.seed}${likenessNote(i)}${i.nsfw ? "  (blacked out by the safety checker)" : ""}`);
      if (result.contactSheet) human.push(`contact sheet  ${result.contactSheet}`);
      if (result.stored) human.push(`kept in  ${result.stored.uri}`);
      if (result.studio) return { data: result, human, next: `avatar down --studio ${result.studio}  (stop the studio when you are done)` };
      await (await import("../workflows/costs.ts")).remindBilling(ctx, backend, name); // the endpoint stays up and bills
      return { data: result, human, next: `avatar down ${name}  (stop the endpoint when you are done)` };
    });
  },
});
