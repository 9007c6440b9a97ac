// avatar export: a registered model's LoRA as a file other tools load, from the store (local
// directory or the bucket): diffusers format as trained, or kohya format (ComfyUI, A1111), plus
// <out>.json (trigger, base model …) and <out>.md (how to use it) beside it. No Python needed.
import { createHash } from "node:crypto";
import { rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { buffer, text } from "node:stream/consumers";
import type { Backend, ModelVersion } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { KohyaError, kohyaMetadata, toKohya } from "../core/kohya.ts";
import { MODEL_FILES, manifestProblem, runModelKey, type AvatarManifest } from "../core/run-keys.ts";
import { parseSafetensors, SafetensorsError, safetensorsChunks } from "../core/safetensors.ts";

export const EXPORT_FORMATS = ["diffusers", "kohya"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportInput {
  name: string;
  /** Version id, alias or run id; default: the default version. */
  version?: string;
  format: ExportFormat;
  /** The .safetensors file to write, relative to the cwd (default: ./<name>-v<version>-<format>.safetensors). */
  out?: string;
}

export interface ExportResult {
  name: string;
  version: string;
  runId: string;
  format: ExportFormat;
  artifactUri: string;
  out: string;
  /** <out-stem>.json and <out-stem>.md, written beside the weights. */
  sidecars: { json: string; readme: string };
  trigger: string;
  baseModel: string;
  baseRevision: string | null;
  pipeline: "sd15" | "sdxl";
  /** LoRA layers in the file; kohya files add an `.alpha` per layer. */
  layers: number;
  tensors: number;
  bytes: number;
  sha256: string;
  dryRun: boolean;
}

/** `<dir>/<stem>.safetensors` → `<dir>/<stem>.json`, `<dir>/<stem>.md`. */
export function sidecarPaths(out: string): { json: string; readme: string } {
  const stem = join(dirname(out), basename(out).replace(/\.safetensors$/i, ""));
  return { json: `${stem}.json`, readme: `${stem}.md` };
}

/** Checked before anything is read from the store: the folder exists, nothing is overwritten unasked. */
async function checkDestination(ctx: Context, out: string): Promise<void> {
  const parent = await stat(dirname(out)).catch(() => undefined);
  if (!parent?.isDirectory()) {
    throw new AvatarError("BAD_INPUT", `--out ${out}: the folder ${dirname(out)} does not exist.`, { hint: "Create it first, or pass a path in an existing folder." });
  }
  const { json, readme } = sidecarPaths(out);
  const existing: string[] = [];
  for (const path of [out, json, readme]) {
    const s = await stat(path).catch(() => undefined);
    if (s?.isDirectory()) throw new AvatarError("BAD_INPUT", `--out ${out}: ${path} is a folder.`, { hint: "Pass a file name ending in .safetensors." });
    if (s) existing.push(path);
  }
  if (existing.length > 0 && !ctx.flags.dryRun) {
    const overwrite = await ctx.prompts.confirm({ message: `${existing.join(", ")} ${existing.length > 1 ? "exist" : "exists"}. Overwrite?`, default: false });
    if (!overwrite) throw new AvatarError("USAGE", `${existing.join(", ")} left as ${existing.length > 1 ? "they were" : "it was"}; nothing exported.`, { hint: "Pass another --out, or --yes to overwrite." });
  }
}

/** The model folder of a version: its artifactUri, read through the store (its root, or by URI). */
function modelFolder(backend: Backend, name: string, version: ModelVersion): { uri: string; open(file: string): Promise<Readable> } {
  const root = `${backend.store.rootUri}/`;
  const uri = version.artifactUri.replace(/\/+$/, "");
  if (uri.startsWith(root)) {
    const key = uri.slice(root.length);
    return { uri, open: (file) => backend.store.read(`${key}/${file}`) };
  }
  const readUri = backend.store.readUri?.bind(backend.store);
  if (readUri) return { uri, open: (file) => readUri(`${uri}/${file}`) };
  // Outside this store and unreadable by URI: the run's folder in this store's layout.
  const key = runModelKey(name, version.runId);
  return { uri: backend.store.uri(key), open: (file) => backend.store.read(`${key}/${file}`) };
}

async function readManifest(folder: { uri: string; open(file: string): Promise<Readable> }): Promise<AvatarManifest> {
  const where = `${folder.uri}/${MODEL_FILES.manifest}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(await text(await folder.open(MODEL_FILES.manifest)));
  } catch (error) {
    if (error instanceof AvatarError) throw error;
    throw new AvatarError("BAD_INPUT", `${where} is not valid JSON.`);
  }
  const problem = manifestProblem(parsed);
  if (problem) throw new AvatarError("BAD_INPUT", `${where} ${problem}.`);
  return parsed as AvatarManifest;
}

function readmeText(result: Omit<ExportResult, "sidecars" | "dryRun">, manifest: AvatarManifest): string {
  const file = basename(result.out);
  const base = `${result.baseModel}${result.baseRevision ? ` (revision ${result.baseRevision})` : ""}`;
  const how =
    result.format === "kohya"
      ? [
          `- ComfyUI: put ${file} in models/loras/, add a "LoraLoaderModelOnly" (or "Load LoRA") node after the checkpoint loader.`,
          `- AUTOMATIC1111 / Forge: put ${file} in models/Lora/ and add <lora:${file.replace(/\.safetensors$/i, "")}:1> to the prompt.`,
        ]
      : [
          "- diffusers:",
          "",
          "  ```python",
          `  pipe.load_lora_weights(".", weight_name="${file}")`,
          "  ```",
        ];
  return [
    `# ${result.name} v${result.version} — ${result.format} LoRA`,
    "",
    `Trigger phrase: \`${result.trigger}\` (e.g. "${manifest.instance_prompt}, as an astronaut").`,
    `Base model: ${base}, ${result.pipeline === "sdxl" ? "SDXL" : "SD 1.5"}, trained at ${manifest.resolution} px; use it with that base.`,
    `Rank ${manifest.rank}, ${manifest.steps} steps, run ${result.runId}. sha256 ${result.sha256}.`,
    "",
    ...how,
    "",
  ].join("\n");
}

async function writeAtomically(path: string, body: Iterable<Uint8Array> | string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    await writeFile(temp, body);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new AvatarError("BAD_INPUT", `Cannot write ${path} (${reason}).`, { hint: "Check the folder's permissions and free space.", cause: error });
  }
}

export async function exportLora(ctx: Context, backend: Backend, input: ExportInput): Promise<ExportResult> {
  const notFound = () =>
    new AvatarError("NOT_FOUND", `${input.name} has no registered model${input.version ? ` version ${input.version}` : ""}.`, {
      hint: `List avatars with \`avatar list\` and versions with \`avatar status ${input.name}\`; train one with \`avatar train ./selfies --name ${input.name}\`.`,
    });
  // The registry first (an unknown avatar is exit 6 whatever --out says), then the destination,
  // then the store: nothing is read from the bucket for an export that cannot be written.
  const version = await backend.registry.get(input.name, input.version);
  if (!version) throw notFound();
  const out = resolve(ctx.cwd, input.out ?? `${input.name}-v${version.versionId}-${input.format}.safetensors`);
  await checkDestination(ctx, out);
  const folder = modelFolder(backend, input.name, version);
  const spinner = await ctx.out.spinner(`Reading ${folder.uri}`);
  let body: Uint8Array[]; // the file's chunks: views into the weights read, not copies
  let layers: number;
  let tensors: number;
  let manifest: AvatarManifest;
  try {
    manifest = await readManifest(folder);
    const weights = await buffer(await folder.open(MODEL_FILES.weights));
    const where = `${folder.uri}/${MODEL_FILES.weights}`;
    let parsed;
    try {
      parsed = parseSafetensors(weights);
    } catch (error) {
      if (error instanceof SafetensorsError) throw new AvatarError("BAD_INPUT", `${where} ${error.message}.`);
      throw error;
    }
    if (input.format === "diffusers") {
      body = [weights]; // as trained: byte for byte what the registered model serves
      layers = [...parsed.tensors.keys()].filter((k) => /\.(lora\.down|lora_A)\.weight$/.test(k)).length;
      tensors = parsed.tensors.size;
    } else {
      let converted;
      try {
        converted = toKohya(parsed.tensors, manifest.pipeline);
      } catch (error) {
        if (error instanceof KohyaError) throw new AvatarError("BAD_INPUT", `${where} ${error.message}.`, { hint: "--format diffusers exports it as it is." });
        throw error;
      }
      const trigger = `${manifest.token} ${manifest.class_word}`;
      body = safetensorsChunks(converted.tensors, kohyaMetadata({ title: `${input.name}-v${version.versionId}`, pipeline: manifest.pipeline, rank: converted.rank, trigger, resolution: manifest.resolution }));
      layers = converted.modules;
      tensors = converted.tensors.size;
    }
  } catch (error) {
    spinner.fail(`Reading ${folder.uri} failed`);
    throw error;
  }
  spinner.stop();
  const result = {
    name: input.name,
    version: version.versionId,
    runId: version.runId,
    format: input.format,
    artifactUri: version.artifactUri,
    out,
    trigger: `${manifest.token} ${manifest.class_word}`,
    baseModel: manifest.base_model,
    baseRevision: manifest.base_revision ?? null,
    pipeline: manifest.pipeline,
    layers,
    tensors,
    bytes: body.reduce((n, chunk) => n + chunk.byteLength, 0),
    sha256: body.reduce((hash, chunk) => hash.update(chunk), createHash("sha256")).digest("hex"),
  };
  const sidecars = sidecarPaths(out);
  if (ctx.flags.dryRun) return { ...result, sidecars, dryRun: true };
  const card = {
    file: basename(out),
    format: result.format,
    avatar: result.name,
    model_version: result.version,
    run_id: result.runId,
    trigger: result.trigger,
    instance_prompt: manifest.instance_prompt,
    base_model: result.baseModel,
    base_revision: result.baseRevision,
    pipeline: result.pipeline,
    resolution: manifest.resolution,
    rank: manifest.rank,
    layers: result.layers,
    sha256: result.sha256,
    source: result.artifactUri,
  };
  await writeAtomically(out, body);
  await writeAtomically(sidecars.json, `${JSON.stringify(card, null, 2)}\n`);
  await writeAtomically(sidecars.readme, readmeText(result, manifest));
  return { ...result, sidecars, dryRun: false };
}
