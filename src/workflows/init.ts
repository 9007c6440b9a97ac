// avatar init: ask for what is not given, optionally create a private bucket, write avatar.config.json.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Context } from "../context.ts";
import { bucketSpec, type BucketSpec } from "../core/bucket-spec.ts";
import { CONFIG_FILE_NAME, type ConfigKey, type ConfigValues } from "../core/config.ts";
import { AvatarError } from "../core/errors.ts";
import { bucketProblem, projectProblem, regionProblem } from "../core/validate.ts";
import { writeRecord } from "../backends/local/records.ts";

export interface InitOptions {
  createBucket: boolean;
}

export interface InitResult {
  path: string;
  written: boolean;
  config: Record<string, string>;
  bucket?: { name: string; action: "exists" | "created" | "would-create" | "skipped"; request?: BucketSpec };
}

/** A value given explicitly (flag, env, .env) is used as is; otherwise ask, offering the current value. */
function given(ctx: Context, key: ConfigKey): boolean {
  const source = ctx.config.sources[key];
  return source === "flag" || source === "env" || source === "dotenv";
}

async function ask(ctx: Context, key: ConfigKey, message: string, flag: string, problem?: (v: string) => string | undefined): Promise<string | undefined> {
  const current = ctx.config.values[key];
  if (given(ctx, key)) return current;
  return ctx.prompts.text({
    message,
    flag,
    default: current,
    validate: (value) => (problem ? problem(value.trim()) : undefined),
  });
}

async function choose<T extends string>(ctx: Context, key: ConfigKey, message: string, flag: string, choices: { value: T; name: string }[]): Promise<T> {
  const current = ctx.config.values[key] as T;
  if (given(ctx, key)) return current;
  return ctx.prompts.select({ message, flag, choices, default: current });
}

async function handleBucket(ctx: Context, values: Partial<ConfigValues>, options: InitOptions): Promise<InitResult["bucket"]> {
  const name = values.bucket!;
  const spec = bucketSpec(name, values.region!);
  const { bucketExists, createBucket } = await import("../backends/vertex/bucket.ts");
  const { ADC_HINT, findAdc, missingCredentials } = await import("../backends/vertex/credentials.ts");
  const env = ctx.env;
  const adc = findAdc(env);
  if (!adc.found) {
    // Say so in one line instead of letting the client probe the metadata server for 30 s.
    if (options.createBucket && !ctx.flags.dryRun) throw missingCredentials(adc);
    if (options.createBucket) return { name, action: "would-create", request: spec };
    ctx.out.warn(`No Google credentials, so gs://${name} was not checked. ${ADC_HINT}`);
    return { name, action: "skipped" };
  }
  let exists: boolean;
  try {
    exists = await bucketExists({ bucket: name, project: values.project, env });
  } catch (error) {
    if (!options.createBucket) {
      ctx.out.warn(`Could not check gs://${name}: ${(error as Error).message}`);
      return { name, action: "skipped" };
    }
    throw error;
  }
  if (exists) return { name, action: "exists" };
  const create =
    options.createBucket ||
    (ctx.prompts.interactive &&
      (await ctx.prompts.confirm({ message: `gs://${name} does not exist. Create it in ${values.region} (private, uniform access)?`, default: true })));
  if (!create) {
    ctx.out.warn(`gs://${name} does not exist; create it before training (or re-run with --create-bucket).`);
    return { name, action: "skipped" };
  }
  if (ctx.flags.dryRun) return { name, action: "would-create", request: spec };
  await createBucket(spec, { project: values.project, env });
  return { name, action: "created", request: spec };
}

export async function runInit(ctx: Context, options: InitOptions): Promise<InitResult> {
  const values: Partial<ConfigValues> = {};
  values.backend = await choose<"vertex" | "local">(ctx, "backend", "Where should avatar run?", "--backend", [
    { value: "vertex", name: "vertex: your Google Cloud project (Vertex AI + Cloud Storage)" },
    { value: "local", name: "local: this machine (demo model on CPU, real models on a CUDA GPU)" },
  ]);
  if (values.backend === "vertex") {
    values.project = await ask(ctx, "project", "Google Cloud project id:", "--project", projectProblem);
    if (!values.project) {
      throw new AvatarError("USAGE", "The vertex backend needs a Google Cloud project.", { hint: "Pass --project <id>." });
    }
    values.region = await ask(ctx, "region", "Region (needs L4 or T4 GPUs):", "--region", regionProblem);
    const bucketDefault = ctx.config.values.bucket ?? (ctx.prompts.interactive ? `${values.project}-avatar` : undefined);
    values.bucket = given(ctx, "bucket")
      ? ctx.config.values.bucket
      : await ctx.prompts.text({ message: "Cloud Storage bucket:", flag: "--bucket", default: bucketDefault, validate: bucketProblem });
  } else if (ctx.config.sources.store !== "default") {
    values.store = ctx.config.values.store;
  }
  values.gpu = await choose<"l4" | "t4">(ctx, "gpu", "Default GPU:", "--gpu", [
    { value: "l4", name: "l4: NVIDIA L4 24 GB (g2-standard-8), SDXL in under an hour" },
    { value: "t4", name: "t4: NVIDIA T4 16 GB (n1-standard-8), cheaper, SD 1.5 recommended" },
  ]);
  const baseDefault = values.gpu === "t4" ? "sd15" : "sdxl";
  values.baseModel = given(ctx, "baseModel")
    ? ctx.config.values.baseModel
    : await ctx.prompts.select<"sdxl" | "sd15">({
        message: "Base model:",
        flag: "--base",
        default: baseDefault,
        choices: [
          { value: "sdxl", name: "sdxl: Stable Diffusion XL, 1024 px" },
          { value: "sd15", name: "sd15: Stable Diffusion 1.5, 512 px, fast" },
        ],
      });

  const bucket = values.backend === "vertex" ? await handleBucket(ctx, values, options) : undefined;

  const path = ctx.flags.config ? resolve(ctx.cwd, ctx.flags.config) : join(ctx.cwd, CONFIG_FILE_NAME);
  const config = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Record<string, string>;
  const text = `${JSON.stringify(config, null, 2)}\n`;
  if (existsSync(path) && (await readFile(path, "utf8")) !== text) {
    const overwrite = await ctx.prompts.confirm({ message: `${path} exists. Overwrite it?`, default: false });
    if (!overwrite) return { path, written: false, config, bucket };
  }
  if (!ctx.flags.dryRun) await writeRecord(path, config); // the same text: 2-space JSON and a newline
  return { path, written: !ctx.flags.dryRun, config, bucket };
}
