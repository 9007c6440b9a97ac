// `avatar register --artifact-uri`: a LoRA trained elsewhere (a local folder, or gs:// on vertex)
// is copied into the store's layout, <name>/runs/<run-id>/model/, and registered like a run of
// ours. The run id is the one in its avatar.json, so importing the same artifact again is a no-op.
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import type { Backend, PlannedRequest } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";
import { isRunId, newRunId } from "../core/names.ts";
import { MODEL_FILES, manifestProblem, runModelKey, type AvatarManifest } from "../core/run-keys.ts";
import { checkServableBase, registerRun, type RegisterResult } from "./register.ts";

export interface ImportResult extends RegisterResult {
  imported: { from: string; runId: string; copied: boolean };
}

interface Source {
  label: string;
  open(file: string): Promise<Readable>;
}

const notAModel = (where: string, why: string) =>
  new AvatarError("BAD_INPUT", `${where} ${why}.`, { hint: `--artifact-uri takes a folder (or gs:// prefix on vertex) holding ${MODEL_FILES.weights} and ${MODEL_FILES.manifest}, as the trainer writes them.` });

async function openSource(ctx: Context, backend: Backend, uri: string): Promise<Source> {
  if (uri.startsWith("gs://")) {
    const readUri = backend.store.readUri?.bind(backend.store);
    if (!readUri) throw new AvatarError("BAD_INPUT", `${uri} is in Cloud Storage; the ${backend.kind} backend reads local folders.`, { hint: "Pass --backend vertex, or download the folder and pass its path." });
    const base = uri.replace(/\/+$/, "");
    return {
      label: base,
      async open(file) {
        try {
          return await readUri(`${base}/${file}`);
        } catch (error) {
          if (error instanceof AvatarError && error.code === "NOT_FOUND") throw notAModel(base, `has no ${file}`);
          throw error;
        }
      },
    };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith("file://")) {
    throw new AvatarError("BAD_INPUT", `--artifact-uri ${uri}: only gs:// URIs, file:// URIs and folder paths are read.`);
  }
  const dir = uri.startsWith("file://") ? fileURLToPath(uri) : resolve(ctx.cwd, uri);
  const isDir = await stat(dir).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw notAModel(dir, "is not a folder");
  return {
    label: dir,
    async open(file) {
      const path = join(dir, file);
      if (!(await stat(path).then((s) => s.isFile(), () => false))) throw notAModel(dir, `has no ${file}`);
      return createReadStream(path);
    },
  };
}

/** A stream opened on first use, and anew on every call: what a put that may retry needs. */
function replayable(open: () => Promise<Readable>): () => Readable {
  return () => {
    const out = new PassThrough();
    open().then(
      (source) => pipeline(source, out).catch((error: unknown) => out.destroy(error as Error)),
      (error: unknown) => out.destroy(error as Error),
    );
    return out;
  };
}

export async function importArtifact(ctx: Context, backend: Backend, input: { name: string; uri: string }): Promise<ImportResult> {
  const source = await openSource(ctx, backend, input.uri);
  const manifestText = await text(await source.open(MODEL_FILES.manifest));
  (await source.open(MODEL_FILES.weights)).destroy(); // there, before anything is written
  let manifest: AvatarManifest;
  try {
    manifest = JSON.parse(manifestText) as AvatarManifest;
  } catch {
    throw notAModel(`${source.label}/${MODEL_FILES.manifest}`, "is not valid JSON");
  }
  const problem = manifestProblem(manifest);
  if (problem) throw notAModel(`${source.label}/${MODEL_FILES.manifest}`, problem);
  if (manifest.name !== input.name) {
    throw new AvatarError("BAD_INPUT", `${source.label} holds avatar "${manifest.name}", not "${input.name}".`, { hint: `Register it as --name ${manifest.name}.` });
  }
  checkServableBase(backend, manifest, source.label);
  // The artifact's own run id keeps a second import of it idempotent; without one it gets a new id.
  const runId = isRunId(manifest.run_id) ? manifest.run_id : newRunId();
  manifest = { ...manifest, run_id: runId };
  const modelKey = runModelKey(input.name, runId);
  const here = backend.store.uri(modelKey);

  let copied = false;
  if (await backend.store.exists(`${modelKey}/${MODEL_FILES.manifest}`)) {
    const existing = await text(await backend.store.read(`${modelKey}/${MODEL_FILES.manifest}`));
    let same = false;
    try {
      same = JSON.stringify(JSON.parse(existing)) === JSON.stringify(manifest);
    } catch {
      // an unreadable avatar.json there is not this model either
    }
    if (!same) {
      throw new AvatarError("BAD_INPUT", `Run ${runId} of ${input.name} already holds a different model (${here}).`, {
        hint: `Its avatar.json differs from ${source.label}'s; register that run with --run ${runId}, or give the artifact its own run_id.`,
      });
    }
  } else if (ctx.flags.dryRun) {
    const planned: PlannedRequest = { service: "store", method: "copy", request: { from: source.label, to: here, objects: [MODEL_FILES.weights, MODEL_FILES.manifest] } };
    const result = await registerRun(ctx, backend, { name: input.name, runId, manifest });
    return { ...result, requests: [planned, ...(result.requests ?? [])], imported: { from: source.label, runId, copied: false } };
  } else {
    const spinner = await ctx.out.spinner(`Copying ${source.label} to ${here}`);
    try {
      // Weights first, avatar.json last: a model folder with avatar.json is complete.
      await backend.store.put(`${modelKey}/${MODEL_FILES.weights}`, replayable(() => source.open(MODEL_FILES.weights)), { overwrite: true });
      await backend.store.put(`${modelKey}/${MODEL_FILES.manifest}`, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), { contentType: "application/json", overwrite: true });
    } catch (error) {
      spinner.fail();
      throw error;
    }
    spinner.succeed(`Copied ${source.label} to ${here}`);
    copied = true;
  }
  const result = await registerRun(ctx, backend, { name: input.name, runId, manifest });
  return { ...result, imported: { from: source.label, runId, copied } };
}
