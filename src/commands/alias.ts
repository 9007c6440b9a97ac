import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";

export const aliasCommand = defineCommand({
  name: "alias",
  summary: "Point a version alias (prod, staging, …) at a model version; deploy --model-version <alias> deploys it",
  description:
    "An alias names one version of the avatar's model at a time: setting it on a version takes it from the version that had it. CI promotes with it: register --alias staging, then alias prod --model-version staging, then deploy --model-version prod.",
  args: [
    { name: "name", description: "avatar name", required: true },
    { name: "alias", description: "the alias: a lowercase letter, then letters, digits or dashes (e.g. prod)", required: true },
  ],
  options: [
    { flags: "--model-version <version>", description: "version id, alias or run id it should name (default: the default version)" },
    { flags: "--remove", description: "take the alias off the version that has it" },
  ],
  examples: ["avatar alias alice prod --model-version 3", "avatar alias alice prod --model-version staging --json", "avatar alias alice staging --remove"],
  async run(ctx, { args, options }) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    const name = validateAvatarName(args[0]!);
    const alias = args[1]!;
    const { withBackend } = await import("../workflows/session.ts");
    const { removeAlias, setAlias } = await import("../workflows/alias.ts");
    if (options.remove === true && options.modelVersion !== undefined) {
      throw new AvatarError("USAGE", "--remove takes the alias off whichever version has it; --model-version does not go with it.", { hint: `\`avatar alias ${name} ${alias} --remove\`` });
    }
    return withBackend(ctx, async (backend) => {
      const result = options.remove === true ? await removeAlias(ctx, backend, { name, alias }) : await setAlias(ctx, backend, { name, alias, version: options.modelVersion as string | undefined });
      const human = result.dryRun
        ? [result.removed ? `Would remove ${alias} from ${name}'s model.` : `Would point ${alias} at ${name} version ${result.versionId}.`, ...formatPlannedRequests(result.requests)]
        : result.removed !== undefined
          ? [result.removed ? `Removed ${alias} from ${name} version ${result.from}.` : `No version of ${name} had ${alias}; nothing changed.`]
          : [`${name} ${alias} → version ${result.versionId}${result.from ? ` (was version ${result.from})` : ""}.`];
      return { data: result, human, next: result.dryRun || result.removed !== undefined ? undefined : `avatar deploy ${name} --model-version ${alias}` };
    });
  },
});
