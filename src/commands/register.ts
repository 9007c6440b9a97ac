import { defineCommand } from "./spec.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAlias } from "../core/alias.ts";
import { isRunId, validateAvatarName } from "../core/names.ts";
import { parseCheckpointChoice } from "../core/checkpoint-pick.ts";

export const registerCommand = defineCommand({
  name: "register",
  summary: "Register a finished training run, or a LoRA trained elsewhere, in the model registry (idempotent)",
  description:
    "Scores the run's checkpoints by how much their sample images look like the training photos (face identity), registers the best one (--checkpoint auto; or last, or a step) and prints a table of the scores. Puts handler.py and requirements.txt beside the chosen weights and registers them as a new version of the avatar's model. Registering the same run and checkpoint again returns the existing version. With --artifact-uri, a model folder trained elsewhere (pytorch_lora_weights.safetensors + avatar.json, as the trainer writes them; a local folder, or gs:// on vertex) is first copied into the store as run <its run_id>.",
  options: [
    { flags: "-n, --name <name>", description: "avatar name" },
    { flags: "--run <run-id>", description: "training run id (YYYYMMDD-HHMMSS); default: the newest succeeded run" },
    { flags: "--artifact-uri <uri>", description: "a model folder trained elsewhere: a path, file:// or gs:// (vertex)" },
    { flags: "--alias <alias>", description: "also point this alias (e.g. staging, prod) at the version, taking it from the version that had it" },
    { flags: "--checkpoint <which>", description: "auto (the checkpoint whose samples look most like the person), last, or a step number", default: "auto" },
  ],
  examples: [
    "avatar register --name alice --run 20261122-101500",
    "avatar register --name alice --alias staging --json",
    "avatar register --name alice --checkpoint last",
    "avatar register --name alice --artifact-uri ./my-gpu-run/model --backend vertex",
  ],
  async run(ctx, { options }) {
    const { formatPlannedRequests } = await import("../core/vertex-specs.ts"); // --dry-run output only
    if (typeof options.name !== "string") throw new AvatarError("USAGE", "Which avatar?", { hint: "Pass --name <name>." });
    const name = validateAvatarName(options.name);
    if (options.run !== undefined && !isRunId(String(options.run))) {
      throw new AvatarError("BAD_INPUT", `"${String(options.run)}" is not a run id.`, { hint: "Run ids look like 20261122-101500; `avatar status <name>` lists them." });
    }
    const artifactUri = options.artifactUri as string | undefined;
    const alias = options.alias === undefined ? undefined : validateAlias(String(options.alias)); // a bad one fails before anything is registered
    if (artifactUri !== undefined && options.run !== undefined) {
      throw new AvatarError("USAGE", "--run and --artifact-uri name two different models.", { hint: "Pass one of them." });
    }
    const checkpointValue = String(options.checkpoint ?? "auto");
    const checkpoint = parseCheckpointChoice(checkpointValue);
    if (artifactUri !== undefined && checkpoint?.kind !== "auto") {
      throw new AvatarError("USAGE", "--checkpoint picks among a run's checkpoints; a model imported with --artifact-uri has none.", { hint: "Leave --checkpoint out, or register the folder of the checkpoint you want." });
    }
    const { withBackend } = await import("../workflows/session.ts");
    const { registerRun } = await import("../workflows/register.ts");
    return withBackend(ctx, async (backend) => {
      let runId = options.run as string | undefined;
      let imported: { from: string; runId: string; copied: boolean } | undefined;
      let result;
      if (artifactUri !== undefined) {
        const { importArtifact } = await import("../workflows/import-artifact.ts");
        result = await importArtifact(ctx, backend, { name, uri: artifactUri });
        ({ imported } = result);
        runId = imported.runId;
      } else if (!runId) {
        const done = (await backend.training.list({ name })).filter((j) => j.state === "succeeded");
        runId = done.at(-1)?.runId;
        if (!runId && (await import("../backends/backend.ts")).isOffline(backend)) throw new AvatarError("USAGE", `Without Google credentials a dry run cannot list the runs of ${name}.`, { hint: "Pass --run <run-id>, or log in with `gcloud auth application-default login`." });
        // (a bad --checkpoint is reported below, as a usage error, even when there is no run)
        if (!runId && checkpoint) throw new AvatarError("NOT_FOUND", `${name} has no finished training run.`, { hint: `Train one with \`avatar train ./selfies --name ${name}\`.` });
      }
      if (!checkpoint) {
        // A bad value: say which steps the run has (exit 2) before anything is registered.
        const { runSteps } = await import("../workflows/pick-checkpoint.ts");
        const steps = runId ? await runSteps(backend, name, runId).catch(() => undefined) : undefined;
        throw new AvatarError("BAD_INPUT", `--checkpoint "${checkpointValue}" is not auto, last or a step number.`, {
          hint: steps?.length ? `Run ${runId} of ${name} has weights at steps ${steps.join(", ")}.` : "Pass auto, last or a step number.",
        });
      }
      result ??= await registerRun(ctx, backend, { name, runId: runId!, checkpoint });
      const aliased = alias ? await (await import("../workflows/alias.ts")).aliasRegistered(ctx, backend, { name, alias, runId: runId!, version: result.version }) : undefined;
      if (aliased?.requests) result = { ...result, requests: [...(result.requests ?? []), ...aliased.requests] };
      const { checkpointTable } = await import("../ui/checkpoint-table.ts");
      const table = result.checkpoint ? checkpointTable(result.checkpoint) : [];
      const human = result.dryRun
        ? [...table, `Would register ${result.artifactUri}${result.manifest ? ` (${result.manifest.pipeline}, base ${result.manifest.base_model})` : ""} as a new version of ${name}.`, ...formatPlannedRequests(result.requests)]
        : [
            ...table,
            `${result.created ? "Registered" : "Already registered:"} ${name} version ${result.version!.versionId} (run ${runId})`,
            `artifacts  ${result.artifactUri}${imported ? ` (${imported.copied ? "copied" : "already copied"} from ${imported.from})` : ""}`,
            `trigger    ${result.manifest?.token} ${result.manifest?.class_word}`,
            ...(aliased ? [`alias      ${alias} → version ${aliased.versionId}${aliased.from ? ` (was version ${aliased.from})` : ""}`] : []),
          ];
      return { data: aliased ? { ...result, alias: { name: aliased.alias, versionId: aliased.versionId, ...(aliased.from ? { from: aliased.from } : {}) } } : result, human, next: result.dryRun ? undefined : `avatar deploy ${name}` };
    });
  },
});
