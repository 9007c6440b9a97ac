// Which base model a run uses, and whether this machine can train it in reasonable time.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { promisify } from "node:util";
import type { BaseModel } from "../core/config.ts";
import { AvatarError } from "../core/errors.ts";
import { baseModelPresets } from "../core/presets.ts";

export interface ResolvedBase {
  /** What the trainer's --base gets: a Hub id or an absolute local directory. */
  base: string;
  pipeline?: "sd15" | "sdxl";
  resolution?: number;
  /** A tiny test-sized model (the demo's): fine on a CPU. */
  tiny: boolean;
}

/** A preset (sdxl, sd15), a local diffusers directory, or a Hub id like org/name. */
export function resolveBase(spec: string, cwd: string): ResolvedBase {
  const preset = baseModelPresets[spec as BaseModel];
  if (preset) return { base: preset.hubId, pipeline: preset.pipeline, resolution: preset.resolution, tiny: false };
  const dir = isAbsolute(spec) ? spec : resolve(cwd, spec);
  if (existsSync(dir)) {
    if (!existsSync(join(dir, "model_index.json"))) {
      throw new AvatarError("BAD_INPUT", `${dir} is not a diffusers model directory (no model_index.json).`, {
        hint: "Pass sdxl, sd15, a Hub id like stabilityai/stable-diffusion-xl-base-1.0, or a directory saved with save_pretrained.",
      });
    }
    return { base: dir, tiny: isTinyUnet(dir) };
  }
  if (/^[\w.-]+\/[\w.-]+$/.test(spec)) return { base: spec, tiny: false };
  throw new AvatarError("BAD_INPUT", `Unknown base model "${spec}".`, { hint: "Use sdxl, sd15, a Hub id (org/name) or a local diffusers directory." });
}

/** The tiny kit marks its models; real SD UNets start at 320 channels, the tiny kit's have a handful. */
function isTinyUnet(dir: string): boolean {
  if (existsSync(join(dir, "avatar-tiny.json"))) return true;
  try {
    const config = JSON.parse(readFileSync(join(dir, "unet", "config.json"), "utf8")) as { block_out_channels?: number[] };
    return Math.max(...(config.block_out_channels ?? [1024])) < 128;
  } catch {
    return false;
  }
}

export async function hasCudaGpu(): Promise<boolean> {
  try {
    await promisify(execFile)("nvidia-smi", ["-L"], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * The square size the trainer will train at, which prepare crops to (the trainer's rule, in
 * templates/trainer: --resolution, else 1024 for SDXL and 512 for SD 1.5). A local directory's
 * pipeline class tells; for a Hub id that is no preset, "xl" in the name means SDXL (pass train
 * --resolution when that guess is wrong).
 */
export function baseResolution(spec: string, cwd: string, override?: number): number {
  if (override) return override;
  const resolved = resolveBase(spec, cwd);
  if (resolved.resolution) return resolved.resolution;
  const sdxl = (() => {
    if (!existsSync(resolved.base)) return /xl/i.test(resolved.base);
    try {
      const index = JSON.parse(readFileSync(join(resolved.base, "model_index.json"), "utf8")) as { _class_name?: string };
      return /XL/.test(index._class_name ?? "");
    } catch {
      return false;
    }
  })();
  return sdxl ? baseModelPresets.sdxl.resolution : baseModelPresets.sd15.resolution;
}
