// Deploy: the avatar's default (or a chosen) model version to its endpoint, with a live stage display.
import { isOffline, type Backend, type DeploySpec, type EndpointInfo, type ModelVersion, type PlannedRequest } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import type { Gpu } from "../core/config.ts";
import { AvatarError } from "../core/errors.ts";
import type { DeployEstimate } from "../core/costs.ts";
import { resourceLabels } from "../core/names.ts";
import { confirmDeploy } from "./costs.ts";

export interface DeployInput {
  name: string;
  version?: string;
  gpu: Gpu;
  /** When quota refuses the new version beside the old one: undeploy the old one first (a gap). */
  replace?: boolean;
  /** vertex: a shared endpoint (1.5 MB, 60 s) instead of a dedicated one, where dedicated is unavailable. */
  sharedEndpoint?: boolean;
}

/** --replace, else a question on a terminal; a script without --replace gets the quota error and its hint. */
function replaceConfirmer(ctx: Context, input: DeployInput): (running: string) => Promise<boolean> {
  return async (running) => {
    if (input.replace) return true;
    if (!ctx.prompts.interactive) return false;
    return ctx.prompts.confirm({ message: `No serving quota for a second GPU. Undeploy ${running} first? ${input.name} will not answer until the new version serves.`, default: false });
  };
}

export interface DeployResult {
  endpoint: EndpointInfo | undefined;
  version: ModelVersion;
  reused: boolean;
  dryRun: boolean;
  /** --dry-run on a backend with remote state: the requests that would have been sent. */
  requests?: PlannedRequest[];
  /** vertex: what it bills (an estimate at list price). */
  estimate?: DeployEstimate;
}

/** A dry run without credentials cannot look the version up: it plans with the alias or id given. */
function unknownVersion(input: DeployInput): ModelVersion {
  return { modelId: `avatar-${input.name}`, name: input.name, versionId: input.version ?? "default", runId: "", artifactUri: "", aliases: [], labels: {}, createdAt: "" };
}

export async function deployAvatar(ctx: Context, backend: Backend, input: DeployInput): Promise<DeployResult> {
  const version = (await backend.registry.get(input.name, input.version)) ?? (isOffline(backend) ? unknownVersion(input) : undefined);
  if (!version) {
    throw new AvatarError("NOT_FOUND", `${input.name} has no registered model${input.version ? ` version ${input.version}` : ""}.`, {
      hint: `Train one with \`avatar train ./selfies --name ${input.name}\`, or list versions with \`avatar status ${input.name}\`.`,
    });
  }
  const spec: DeploySpec = {
    name: input.name,
    version,
    gpu: input.gpu,
    minReplicas: 1,
    maxReplicas: 1,
    labels: resourceLabels(input.name, version.runId),
    endpointType: input.sharedEndpoint ? "shared" : "dedicated",
  };
  const estimate = await confirmDeploy(ctx, backend, { name: input.name, versionId: version.versionId, gpu: input.gpu });
  if (ctx.flags.dryRun) {
    const requests = backend.serving.plan ? await backend.serving.plan(spec) : undefined;
    return { endpoint: undefined, version, reused: false, dryRun: true, ...(requests ? { requests } : {}), ...(estimate ? { estimate } : {}) };
  }
  const spinner = await ctx.out.spinner(`Deploying ${input.name} v${version.versionId}`);
  const stop = ctx.keepsRunning(`the ${input.name} endpoint (deploying; \`avatar down ${input.name}\` stops it)`);
  try {
    const { endpoint, reused } = await backend.serving.deploy(spec, {
      signal: ctx.signal,
      onStage: (stage) => spinner.update(`Deploying ${input.name} v${version.versionId}: ${stage}`),
      confirmReplace: async (running) => {
        if (!input.replace && ctx.prompts.interactive) spinner.stop(); // the question needs the line
        return replaceConfirmer(ctx, input)(running);
      },
    });
    spinner.succeed(reused ? `${input.name} v${version.versionId} is already serving` : `Deployed ${input.name} v${version.versionId}`);
    return { endpoint, version, reused, dryRun: false, ...(estimate ? { estimate } : {}) };
  } catch (error) {
    spinner.fail(`Deploying ${input.name} failed`);
    throw error;
  } finally {
    stop();
  }
}
