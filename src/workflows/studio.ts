// Studios: many avatars of one base behind one endpoint (core/studio.ts). What a studio serves is
// its manifest in the store; its model (handler.py in studio mode + studio.json) is registered and
// deployed once, and adding or removing an avatar rewrites the manifest only.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { text } from "node:stream/consumers";
import type { Backend, EndpointInfo, ModelVersion, PlannedRequest } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import type { Gpu } from "../core/config.ts";
import { endpointBilling, type Billing, type DeployEstimate } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { newRunId } from "../core/names.ts";
import { MODEL_FILES, manifestProblem, runModelKey, type AvatarManifest } from "../core/run-keys.ts";
import {
  baseMismatch, emptyStudioManifest, studioLabels, studioManifestKey, studioManifestProblem, studioModelJson, studioModelKey,
  isServiceAccountEmail, studioOf, studioOfManifestKey, studioResource, studiosPrefix, withAvatar, withoutAvatars, type StudioManifest,
} from "../core/studio.ts";
import { handlersDir } from "../paths.ts";
import { checkServableBase } from "./register.ts";
import { confirmDeploy, endpointRate } from "./costs.ts";

/** The environment variable naming the serving identity of studios on Vertex (DeployedModel.serviceAccount). */
export const SERVICE_ACCOUNT_ENV = "AVATAR_SERVING_SERVICE_ACCOUNT";

async function readJson(backend: Backend, key: string): Promise<unknown> {
  const body = await text(await backend.store.read(key));
  try {
    return JSON.parse(body);
  } catch {
    throw new AvatarError("BAD_INPUT", `${backend.store.uri(key)} is not valid JSON.`, { hint: "Restore it from the bucket's object versions, or remove the studio and add its avatars again." });
  }
}

export async function readStudioManifest(backend: Backend, studio: string): Promise<StudioManifest | undefined> {
  const key = studioManifestKey(studio);
  // One read (the store's read answers NOT_FOUND itself), not an existence check first.
  const parsed = await readJson(backend, key).catch((error: unknown) => (error instanceof AvatarError && error.code === "NOT_FOUND" ? undefined : Promise.reject(error)));
  if (parsed === undefined) return undefined;
  const problem = studioManifestProblem(parsed);
  if (problem) throw new AvatarError("BAD_INPUT", `${backend.store.uri(key)} ${problem}.`, { hint: `Remove the studio (\`avatar studio remove ${studio} --all\`) and add its avatars again.` });
  return parsed as StudioManifest;
}

async function writeStudioManifest(backend: Backend, manifest: StudioManifest): Promise<void> {
  const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  await backend.store.put(studioManifestKey(manifest.studio), body, { contentType: "application/json", overwrite: true });
}

async function avatarManifest(backend: Backend, version: ModelVersion): Promise<AvatarManifest> {
  const key = `${runModelKey(version.name, version.runId)}/${MODEL_FILES.manifest}`;
  const parsed = await readJson(backend, key);
  const problem = manifestProblem(parsed);
  if (problem) throw new AvatarError("BAD_INPUT", `${backend.store.uri(key)} ${problem}.`, { hint: "Re-run the training with this version of avatar." });
  return parsed as AvatarManifest;
}

export interface StudioInfo {
  studio: string;
  pipeline: string;
  base_model: string;
  avatars: string[];
  endpoint: EndpointInfo | undefined;
  /** vertex, while serving: the GPU's list price per hour, and per avatar. */
  usdPerHour?: number;
  usdPerHourPerAvatar?: number;
  billing?: Billing;
}

function studioInfo(backend: Backend, manifest: StudioManifest, endpoint: EndpointInfo | undefined, now: Date): StudioInfo {
  const avatars = Object.keys(manifest.avatars).sort();
  const rate = backend.kind === "vertex" ? endpointRate(endpoint) : undefined;
  const billing = backend.kind === "vertex" && endpoint ? endpointBilling(endpoint, now) : undefined;
  return {
    studio: manifest.studio,
    pipeline: manifest.pipeline,
    base_model: manifest.base_model,
    avatars,
    endpoint,
    ...(rate !== undefined ? { usdPerHour: Math.round(rate * 10_000) / 10_000, usdPerHourPerAvatar: Math.round((rate / Math.max(1, avatars.length)) * 10_000) / 10_000 } : {}),
    ...(billing ? { billing } : {}),
  };
}

/** Every studio: the manifests in the store, with their endpoints (found by label). */
export async function listStudios(backend: Backend, now = new Date()): Promise<StudioInfo[]> {
  // A store that is not there (yet) has no studios: `avatar list` must still answer.
  const noStore = (error: unknown) => (error instanceof AvatarError && error.code === "NOT_FOUND" ? [] : Promise.reject(error));
  const [objects, endpoints] = await Promise.all([backend.store.list(studiosPrefix()).catch(noStore), backend.serving.list()]);
  const names = new Set(objects.map((o) => studioOfManifestKey(o.key)).filter((s): s is string => Boolean(s)));
  // An endpoint whose manifest is gone still bills: list it too.
  for (const e of endpoints) if (studioOf(e)) names.add(studioOf(e)!);
  return Promise.all(
    [...names].sort().map(async (studio) => {
      const manifest = (await readStudioManifest(backend, studio)) ?? { schema: 1 as const, studio, pipeline: "sd15" as const, base_model: "?", updated_at: "", avatars: {} };
      return studioInfo(backend, manifest, endpoints.find((e) => studioOf(e) === studio), now);
    }),
  );
}

export interface StudioDeployInput {
  name: string;
  studio: string;
  version?: string;
  gpu: Gpu;
  sharedEndpoint?: boolean;
  /** vertex: the serving identity (DeployedModel.serviceAccount), needed to read the bucket. */
  serviceAccount?: string;
}

export interface StudioDeployResult {
  studio: string;
  name: string;
  version: ModelVersion;
  /** The avatars the studio serves after this deploy. */
  avatars: string[];
  /** The manifest already had this version of the avatar. */
  alreadyServed: boolean;
  /** The studio endpoint was (re)deployed by this command; false: it was serving and only the manifest changed. */
  deployed: boolean;
  endpoint?: EndpointInfo;
  dryRun: boolean;
  requests?: PlannedRequest[];
  estimate?: DeployEstimate;
}

/**
 * The studio's model: handler.py + requirements.txt + studio.json (which names the base), as a new
 * version. Registered once per studio, and again only when an emptied studio takes another base.
 */
async function registerStudioModel(backend: Backend, manifest: StudioManifest): Promise<ModelVersion> {
  const modelKey = studioModelKey(manifest.studio);
  for (const file of [MODEL_FILES.handler, MODEL_FILES.requirements]) {
    await backend.store.put(`${modelKey}/${file}`, await readFile(join(handlersDir, file)), { contentType: "text/plain", overwrite: true });
  }
  const studioJson = studioModelJson(manifest, backend.store.uri(studioManifestKey(manifest.studio)));
  await backend.store.put(`${modelKey}/studio.json`, Buffer.from(`${JSON.stringify(studioJson, null, 2)}\n`), { contentType: "application/json", overwrite: true });
  const runId = newRunId();
  const { version } = await backend.registry.register({
    name: studioResource(manifest.studio),
    runId,
    modelKey,
    labels: studioLabels(manifest.studio, runId),
    description: `avatar studio ${manifest.studio}: ${manifest.pipeline} LoRAs of ${manifest.base_model}, swapped per request`,
  });
  return version;
}

function serviceAccountFor(ctx: Context, backend: Backend, input: StudioDeployInput): string | undefined {
  if (backend.kind !== "vertex") return undefined;
  const account = input.serviceAccount ?? ctx.env[SERVICE_ACCOUNT_ENV];
  const { project, bucket } = ctx.config.values;
  const sa = `avatar-serving@${project ?? "PROJECT"}.iam.gserviceaccount.com`;
  // Checked here, not left to DeployModel: a wrong value would otherwise surface minutes later.
  if (account && !isServiceAccountEmail(account)) {
    throw new AvatarError("USAGE", `"${account}" is not a service account email (${input.serviceAccount ? "--service-account" : SERVICE_ACCOUNT_ENV}).`, { hint: `Name one like ${sa}.` });
  }
  if (account) return account;
  throw new AvatarError("USAGE", `A studio on Vertex AI needs a serving service account: it reads each avatar's LoRA from gs://${bucket ?? "BUCKET"}, and Vertex's default serving identity may read only the model's own artifacts.`, {
    hint: [
      `Pass --service-account <email> (or set ${SERVICE_ACCOUNT_ENV}) naming one that can read the bucket, e.g.:`,
      `  gcloud iam service-accounts create avatar-serving --project ${project ?? "PROJECT"}`,
      `  gcloud storage buckets add-iam-policy-binding gs://${bucket ?? "BUCKET"} --member serviceAccount:${sa} --role roles/storage.objectViewer`,
      `  gcloud iam service-accounts add-iam-policy-binding ${sa} --member user:YOU --role roles/iam.serviceAccountUser`,
      "`avatar doctor` checks the grant.",
    ].join("\n"),
  });
}

export async function deployToStudio(ctx: Context, backend: Backend, input: StudioDeployInput): Promise<StudioDeployResult> {
  const version = await backend.registry.get(input.name, input.version);
  if (!version) {
    throw new AvatarError("NOT_FOUND", `${input.name} has no registered model${input.version ? ` version ${input.version}` : ""}.`, {
      hint: `Train one with \`avatar train ./selfies --name ${input.name}\`, or list versions with \`avatar status ${input.name}\`.`,
    });
  }
  const avatar = await avatarManifest(backend, version);
  checkServableBase(backend, avatar, version.artifactUri);
  const serviceAccount = serviceAccountFor(ctx, backend, input);
  const current = await readStudioManifest(backend, input.studio);
  const mismatch = current && Object.keys(current.avatars).length > 0 ? baseMismatch(current, avatar) : undefined;
  if (mismatch) {
    throw new AvatarError("BAD_INPUT", `Cannot add ${input.name} to studio ${input.studio}: ${mismatch}.`, {
      hint: `Deploy ${input.name} on its own (\`avatar deploy ${input.name}\`) or to a studio of its base (\`avatar deploy ${input.name} --studio <another>\`).`,
    });
  }
  // An empty studio takes the base of its next avatar (its model and endpoint change if that base differs).
  const empty = !current || Object.keys(current.avatars).length === 0;
  const base = empty ? emptyStudioManifest(input.studio, avatar) : current;
  const previous = current?.avatars[input.name];
  const alreadyServed = previous?.model_uri === version.artifactUri && previous.run_id === version.runId;
  const next = withAvatar(base, input.name, { model_uri: version.artifactUri, run_id: version.runId, version: version.versionId });
  const resource = studioResource(input.studio);
  const serving = await backend.serving.get(resource);
  const existingModel = await backend.registry.get(resource);
  const rebased = Boolean(current && empty && baseMismatch(current, avatar)); // the studio's base changes: its model must too
  if (ctx.flags.dryRun) {
    const requests: PlannedRequest[] = [
      { service: "store", method: "put", request: { object: backend.store.uri(studioManifestKey(input.studio)), avatars: Object.keys(next.avatars).sort() }, note: alreadyServed ? "unchanged" : `adds ${input.name} v${version.versionId}` },
      ...(existingModel && !rebased ? [] : [{ service: "ModelService", method: "UploadModel", request: { name: resource }, note: "the studio's model (handler.py in studio mode), once" }]),
      ...(serving?.state === "ready" && !rebased ? [{ service: "EndpointService", method: "DeployModel", request: null, note: `not needed: studio ${input.studio} is serving; it re-reads the manifest` }] : [{ service: "EndpointService", method: "DeployModel", request: { endpoint: resource, gpu: input.gpu, ...(serviceAccount ? { serviceAccount } : {}) } }]),
    ];
    return { studio: input.studio, name: input.name, version, avatars: Object.keys(next.avatars).sort(), alreadyServed, deployed: false, dryRun: true, requests };
  }
  if (rebased && existingModel) {
    // An emptied studio taking another base: its serving model (studio.json names the base) is replaced.
    if (serving) await backend.serving.down(resource, { signal: ctx.signal });
  }
  await writeStudioManifest(backend, next);
  const studioVersion = !rebased && existingModel ? existingModel : await registerStudioModel(backend, next);
  const live = rebased ? undefined : serving;
  if (live?.state === "ready" && live.modelVersion === studioVersion.versionId) {
    return { studio: input.studio, name: input.name, version, avatars: Object.keys(next.avatars).sort(), alreadyServed, deployed: false, endpoint: live, dryRun: false };
  }
  const estimate = await confirmDeploy(ctx, backend, { name: resource, versionId: studioVersion.versionId, gpu: input.gpu });
  const spinner = await ctx.out.spinner(`Deploying studio ${input.studio}`);
  const stop = ctx.keepsRunning(`the studio ${input.studio} endpoint (deploying; \`avatar down --studio ${input.studio}\` stops it)`);
  try {
    const { endpoint } = await backend.serving.deploy(
      {
        name: resource,
        version: studioVersion,
        gpu: input.gpu,
        minReplicas: 1,
        maxReplicas: 1,
        labels: studioLabels(input.studio, studioVersion.runId),
        endpointType: input.sharedEndpoint ? "shared" : "dedicated",
        ...(serviceAccount ? { serviceAccount } : {}),
      },
      { signal: ctx.signal, onStage: (stage) => spinner.update(`Deploying studio ${input.studio}: ${stage}`) },
    );
    spinner.succeed(`Studio ${input.studio} is serving`);
    return { studio: input.studio, name: input.name, version, avatars: Object.keys(next.avatars).sort(), alreadyServed, deployed: true, endpoint, dryRun: false, ...(estimate ? { estimate } : {}) };
  } catch (error) {
    spinner.fail(`Deploying studio ${input.studio} failed`);
    if (error instanceof AvatarError && error.code === "REMOTE_FAILED" && backend.kind === "vertex") {
      throw new AvatarError(error.code, error.message, { cause: error, hint: `${error.hint ?? ""} A studio's server reads ${backend.store.uri(studioManifestKey(input.studio))} at start: check that ${serviceAccount} can read the bucket (\`avatar doctor\`).`.trim() });
    }
    throw error;
  } finally {
    stop();
  }
}

export interface StudioRemoveResult {
  studio: string;
  removed: string[];
  avatars: string[];
  dryRun: boolean;
}

/** Stops serving avatars from a studio: the manifest changes, the endpoint stays (no redeploy). */
export async function removeFromStudio(ctx: Context, backend: Backend, studio: string, names: string[]): Promise<StudioRemoveResult> {
  const manifest = await readStudioManifest(backend, studio);
  if (!manifest) throw new AvatarError("NOT_FOUND", `There is no studio ${studio}.`, { hint: "`avatar studio list` shows the studios." });
  const unknown = names.filter((n) => !(n in manifest.avatars));
  if (unknown.length) {
    const served = Object.keys(manifest.avatars).sort().join(", ") || "no avatars";
    throw new AvatarError("NOT_FOUND", `Studio ${studio} does not serve ${unknown.join(", ")} (it serves ${served}).`, { hint: `\`avatar studio list\` shows what each studio serves.` });
  }
  const next = withoutAvatars(manifest, names);
  if (!ctx.flags.dryRun) await writeStudioManifest(backend, next);
  return { studio, removed: names, avatars: Object.keys(next.avatars).sort(), dryRun: ctx.flags.dryRun };
}

/** Stops the studio's endpoint (nothing bills); the manifest stays, so a later deploy serves the same avatars. */
export async function downStudio(ctx: Context, backend: Backend, studio: string): Promise<{ studio: string; stopped: boolean; dryRun: boolean; requests?: PlannedRequest[] }> {
  const resource = studioResource(studio);
  if (ctx.flags.dryRun) {
    const requests = backend.serving.planDown ? await backend.serving.planDown(resource) : undefined;
    return { studio, stopped: Boolean(await backend.serving.get(resource)), dryRun: true, ...(requests ? { requests } : {}) };
  }
  const stopped = await backend.serving.down(resource, { signal: ctx.signal, onStage: (stage) => ctx.out.info(stage) });
  return { studio, stopped, dryRun: false };
}

/**
 * Where `generate <name>` sends its requests: the avatar's own endpoint, else a serving studio
 * whose manifest has it (or the studio asked for). `avatar` goes in parameters.avatar.
 */
export async function findServingEndpoint(backend: Backend, name: string, studio?: string): Promise<{ endpoint: string; avatar?: string; studio?: string } | undefined> {
  if (studio) {
    const manifest = await readStudioManifest(backend, studio);
    if (!manifest) throw new AvatarError("NOT_FOUND", `There is no studio ${studio}.`, { hint: "`avatar studio list` shows the studios." });
    if (!(name in manifest.avatars)) {
      throw new AvatarError("NOT_FOUND", `Studio ${studio} does not serve ${name} (it serves ${Object.keys(manifest.avatars).sort().join(", ") || "no avatars"}).`, {
        hint: `Add it with \`avatar deploy ${name} --studio ${studio}\` (no redeploy).`,
      });
    }
    const endpoint = await backend.serving.get(studioResource(studio));
    if (endpoint?.state !== "ready") throw new AvatarError("NOT_FOUND", `Studio ${studio} is not serving.`, { hint: `Run \`avatar deploy ${name} --studio ${studio}\`.` });
    return { endpoint: studioResource(studio), avatar: name, studio };
  }
  const own = await backend.serving.get(name);
  if (own?.state === "ready") return { endpoint: name };
  for (const info of await listStudios(backend)) {
    if (info.avatars.includes(name) && info.endpoint?.state === "ready") return { endpoint: studioResource(info.studio), avatar: name, studio: info.studio };
  }
  return undefined;
}
