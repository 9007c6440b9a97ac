import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

const FORMATS = ["diffusers", "kohya"] as const;

export const exportCommand = defineCommand({
  name: "export",
  summary: "Write an avatar's LoRA to a .safetensors file that ComfyUI, A1111 or diffusers load",
  description:
    "Reads a registered model version from the store (the local store, or the bucket on vertex) and writes its LoRA: --format diffusers as trained (pipe.load_lora_weights), or --format kohya with lora_unet_… keys and .alpha entries (ComfyUI, AUTOMATIC1111, Forge). <out>.json and <out>.md beside it name the trigger phrase and the base model to use it with. Needs no Python.",
  args: [{ name: "name", description: "avatar name", required: true }],
  options: [
    { flags: "--model-version <version>", description: "model version, alias or run id (default: the default version)" },
    { flags: "--format <format>", description: "diffusers (as trained) or kohya (ComfyUI, A1111)", default: "diffusers" },
    { flags: "-o, --out <file>", description: "the .safetensors file to write (default: ./<name>-v<version>-<format>.safetensors)" },
  ],
  examples: [
    "avatar export alice --format kohya --out alice.safetensors",
    "avatar export alice --model-version 2 --out ~/ComfyUI/models/loras/alice.safetensors --format kohya --yes",
    "avatar export alice --backend vertex --json",
  ],
  async run(ctx, { args, options }) {
    const name = validateAvatarName(args[0]!);
    const format = String(options.format);
    if (!(FORMATS as readonly string[]).includes(format)) {
      throw new AvatarError("USAGE", `--format ${format} is not a format avatar exports.`, { hint: "Pass --format diffusers or --format kohya." });
    }
    const out = options.out as string | undefined;
    if (out !== undefined && !/\.safetensors$/i.test(out)) {
      throw new AvatarError("USAGE", `--out ${out} does not end in .safetensors.`, { hint: "ComfyUI and A1111 list LoRAs by that extension: pass e.g. --out alice.safetensors." });
    }
    const { withBackend } = await import("../workflows/session.ts");
    const { exportLora } = await import("../workflows/export.ts");
    return withBackend(ctx, async (backend) => {
      const started = Date.now();
      const result = await exportLora(ctx, backend, {
        name,
        version: options.modelVersion as string | undefined,
        format: format as (typeof FORMATS)[number],
        out,
      });
      const seconds = (Date.now() - started) / 1000;
      const what = `${name} v${result.version} (${result.format}, ${result.layers} LoRA layers, ${result.pipeline}, base ${result.baseModel})`;
      const human = result.dryRun
        ? [`Would write ${what} to ${result.out}, with ${result.sidecars.json} and ${result.sidecars.readme}.`]
        : [
            `Exported ${what} to ${result.out} in ${seconds.toFixed(1)} s`,
            `trigger    ${result.trigger}`,
            `card       ${result.sidecars.json}, ${result.sidecars.readme}`,
          ];
      const next = result.format === "kohya" ? `cp ${result.out} <ComfyUI>/models/loras/` : `avatar export ${name} --format kohya`;
      return { data: { ...result, seconds }, human, next: result.dryRun ? undefined : next };
    });
  },
});
