// GPU and base-model presets (design.md, "Training job"). What they cost: core/rates.ts.
import type { BaseModel, Gpu } from "./config.ts";

export interface GpuPreset {
  gpu: Gpu;
  machineType: string;
  acceleratorType: "NVIDIA_L4" | "NVIDIA_TESLA_T4";
  acceleratorCount: 1;
  bf16: boolean;
}

export const gpuPresets: Readonly<Record<Gpu, GpuPreset>> = {
  l4: { gpu: "l4", machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1, bf16: true },
  t4: { gpu: "t4", machineType: "n1-standard-8", acceleratorType: "NVIDIA_TESLA_T4", acceleratorCount: 1, bf16: false },
};

export interface BaseModelPreset {
  id: BaseModel;
  hubId: string;
  pipeline: "sdxl" | "sd15";
  resolution: number;
  defaultSteps: number;
}

export const baseModelPresets: Readonly<Record<BaseModel, BaseModelPreset>> = {
  sdxl: { id: "sdxl", hubId: "stabilityai/stable-diffusion-xl-base-1.0", pipeline: "sdxl", resolution: 1024, defaultSteps: 1000 },
  sd15: { id: "sd15", hubId: "stable-diffusion-v1-5/stable-diffusion-v1-5", pipeline: "sd15", resolution: 512, defaultSteps: 800 },
};

/**
 * Steps per usable photo when the user gives no --steps, clamped: a DreamBooth LoRA needs roughly
 * the same number of passes over each photo whatever the set's size (a rule of thumb; README,
 * "Training defaults"), but fewer than 500 steps under-trains a face and more than 1500 overfits
 * (and costs) without adding likeness at lr 1e-4.
 */
export const STEPS_PER_PHOTO = 100;
export const STEP_LIMITS = { min: 500, max: 1500 } as const;

/**
 * Training steps of a run: the ones asked for; else 100 per usable photo clamped to 500–1500 when
 * the photo count is known; else the base preset's default (1000 for a base that is no preset).
 */
export function stepsFor(base: string, steps?: number, photos?: number): number {
  if (steps !== undefined) return steps;
  if (photos !== undefined && photos > 0) return Math.min(STEP_LIMITS.max, Math.max(STEP_LIMITS.min, STEPS_PER_PHOTO * photos));
  return Object.values(baseModelPresets).find((p) => p.hubId === base)?.defaultSteps ?? 1000;
}

/** The fp16-safe SDXL VAE: T4 has no bf16, and the stock SDXL VAE overflows in fp16. */
export const FP16_SAFE_SDXL_VAE = "madebyollin/sdxl-vae-fp16-fix";
