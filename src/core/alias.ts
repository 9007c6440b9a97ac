// Model version aliases (`prod`, `staging`, …): the names CI promotes a version with.
// Vertex's rule (ModelService.MergeVersionAliases, Model.version_aliases): [a-z][a-zA-Z0-9-]{0,126}[a-z0-9],
// so never a number (a number is a version id). An alias names one version of a model at a time.
import { AvatarError } from "./errors.ts";
import { modelName, type VertexLocation } from "./vertex-names.ts";
import type { PlannedRequest } from "./vertex-specs.ts";

const ALIAS = /^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$/;

/** Exit 2 for an alias Vertex would refuse, or one the CLI keeps for itself. */
export function validateAlias(alias: string): string {
  if (!ALIAS.test(alias)) {
    throw new AvatarError("BAD_INPUT", `"${alias}" is not a valid alias.`, {
      hint: "An alias starts with a lowercase letter, then letters, digits or dashes, and ends with a letter or digit (2–128 characters), e.g. prod.",
    });
  }
  // run-<id> names a training run's own version (deploy --model-version <run id> relies on it).
  if (/^run-\d{8}-\d{6}$/.test(alias)) {
    throw new AvatarError("BAD_INPUT", `"${alias}" is the alias avatar gives that run's version; it cannot move.`, { hint: "Pick another name, e.g. prod or staging." });
  }
  return alias;
}

/** MergeVersionAliases on one version: `alias` adds (moving it from the version that had it), `-alias` removes. */
export function mergeAliasesRequest(loc: VertexLocation, name: string, versionId: string, aliases: string[]) {
  return { name: `${modelName(loc, name)}@${versionId}`, versionAliases: aliases };
}

export function planMergeAliases(loc: VertexLocation, name: string, versionId: string, aliases: string[], note?: string): PlannedRequest {
  return { service: "ModelService", method: "MergeVersionAliases", request: mergeAliasesRequest(loc, name, versionId, aliases), ...(note ? { note } : {}) };
}
