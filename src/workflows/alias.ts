// Promotion: point an alias (prod, staging, …) at a model version, so CI can deploy "what prod is"
// with `deploy --model-version prod`. An alias names one version at a time: setting it moves it.
import { isOffline, type Backend, type ModelVersion, type PlannedRequest } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { validateAlias } from "../core/alias.ts";
import { AvatarError } from "../core/errors.ts";

export interface AliasResult {
  name: string;
  alias: string;
  /** The version the alias names now (undefined after a removal). */
  versionId?: string;
  /** The version it was taken from, if another one had it. */
  from?: string;
  removed?: boolean;
  dryRun: boolean;
  requests?: PlannedRequest[];
}

/** Moves `alias` to a version given as id, alias or run id (default: the default version). */
export async function setAlias(ctx: Context, backend: Backend, input: { name: string; alias: string; version?: string }): Promise<AliasResult> {
  const alias = validateAlias(input.alias);
  const target: ModelVersion | undefined = await backend.registry.get(input.name, input.version);
  if (!target) {
    // A dry run without credentials cannot look versions up: it plans with a version id as given.
    if (isOffline(backend)) {
      if (input.version && /^\d+$/.test(input.version)) {
        return { name: input.name, alias, versionId: input.version, dryRun: true, requests: (await backend.registry.planAlias?.(input.name, alias, input.version)) ?? [] };
      }
      throw new AvatarError("USAGE", `Without Google credentials a dry run cannot look up ${input.version ? `version ${input.version}` : "the default version"} of ${input.name}.`, {
        hint: "Pass a version id (--model-version 3), or log in with `gcloud auth application-default login`.",
      });
    }
    throw new AvatarError("NOT_FOUND", input.version ? `${input.name} has no model version ${input.version}.` : `${input.name} has no registered model.`, {
      hint: `\`avatar status ${input.name}\` lists its versions and aliases.`,
    });
  }
  if (ctx.flags.dryRun) {
    const requests = backend.registry.planAlias ? await backend.registry.planAlias(input.name, alias, target.versionId) : undefined;
    return { name: input.name, alias, versionId: target.versionId, dryRun: true, ...(requests ? { requests } : {}) };
  }
  const { from } = await backend.registry.moveAlias(input.name, alias, target.versionId);
  return { name: input.name, alias, versionId: target.versionId, ...(from ? { from } : {}), dryRun: false };
}

export async function removeAlias(ctx: Context, backend: Backend, input: { name: string; alias: string }): Promise<AliasResult> {
  const alias = validateAlias(input.alias);
  if (alias === "default") {
    throw new AvatarError("BAD_INPUT", "The default alias cannot be removed: a model always has one default version.", {
      hint: `Move it instead: \`avatar alias ${input.name} default --model-version <version>\`.`,
    });
  }
  if (ctx.flags.dryRun) {
    const requests = backend.registry.planAlias ? await backend.registry.planAlias(input.name, alias, undefined) : undefined;
    return { name: input.name, alias, removed: true, dryRun: true, ...(requests ? { requests } : {}) };
  }
  const from = await backend.registry.removeAlias(input.name, alias);
  return { name: input.name, alias, removed: Boolean(from), ...(from ? { from } : {}), dryRun: false };
}

/** register --alias: the alias on the version just registered (a dry run plans it, on the new version if the run has none yet). */
export async function aliasRegistered(ctx: Context, backend: Backend, input: { name: string; alias: string; runId: string; version?: ModelVersion }): Promise<AliasResult> {
  if (!ctx.flags.dryRun && input.version) return setAlias(ctx, backend, { name: input.name, alias: input.alias, version: input.version.versionId });
  const existing = input.version ?? (await backend.registry.get(input.name, input.runId));
  const requests = backend.registry.planAlias ? await backend.registry.planAlias(input.name, input.alias, existing?.versionId ?? "<the new version>") : undefined;
  return { name: input.name, alias: validateAlias(input.alias), ...(existing ? { versionId: existing.versionId } : {}), dryRun: true, ...(requests ? { requests } : {}) };
}
