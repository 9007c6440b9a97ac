import { defineCommand } from "./spec.ts";
import { billingText, studioRateText } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";
import type { TrainerProgress } from "../core/trainer-args.ts";
import { formatDuration, table } from "../ui/format.ts";

/** "120/1000 loss 0.0831 ~10m left" from what the trainer last logged (running runs only). */
function progressText(p: TrainerProgress, running: boolean): string {
  const parts = [`${p.step}/${p.total}`];
  if (running && p.loss !== undefined) parts.push(`loss ${p.loss.toFixed(4)}`);
  if (running && p.etaSeconds !== undefined && p.step < p.total) parts.push(`~${formatDuration(p.etaSeconds * 1000)} left`);
  return parts.join(" ");
}

export const statusCommand = defineCommand({
  name: "status",
  summary: "Training runs, model versions and endpoint of an avatar; --wait re-attaches to a running job",
  args: [{ name: "name", description: "avatar name", required: true }],
  options: [{ flags: "--wait", description: "wait for a running training job to finish, with progress" }],
  examples: ["avatar status alice", "avatar status alice --wait", "avatar status alice --json"],
  async run(ctx, { args, options }) {
    const name = validateAvatarName(args[0]!);
    const { withBackend } = await import("../workflows/session.ts");
    const { inventory } = await import("../workflows/inventory.ts");
    const { waitForTraining } = await import("../workflows/train.ts");
    return withBackend(ctx, async (backend) => {
      let [avatar] = await inventory(backend, name);
      const { listStudios } = await import("../workflows/studio.ts");
      const studios = (await listStudios(backend)).filter((st) => st.avatars.includes(name));
      if (!avatar || (!avatar.runs.length && !avatar.models.length && !avatar.endpoint && !studios.length)) {
        throw new AvatarError("NOT_FOUND", `Nothing found for ${name} on the ${backend.kind} backend.`, { hint: "`avatar list` shows all avatars." });
      }
      const running = avatar.runs.find((r) => r.state === "running" || r.state === "queued");
      if (options.wait && running) {
        await waitForTraining(ctx, backend, running.id);
        [avatar] = await inventory(backend, name);
      }
      // Batch generations (`generate --no-endpoint`): a running one is picked up with --collect.
      const batches = backend.batch ? await backend.batch.list({ name }) : [];
      const collecting = batches.find((b) => b.state === "running" || b.state === "queued");
      const human = [
        ...table([["RUN", "STATE", "PROGRESS"], ...avatar!.runs.map((r) => [r.runId, r.state, r.progress ? progressText(r.progress, r.state === "running") : r.error ?? ""])]),
        "",
        ...table([["VERSION", "RUN", "ALIASES"], ...avatar!.models.map((m) => [m.versionId, m.runId, m.aliases.join(",")])]),
        "",
        avatar!.endpoint
          ? `endpoint: ${avatar!.endpoint.state} (version ${avatar!.endpoint.modelVersion ?? "?"}${avatar!.endpoint.endpointType ? `, ${avatar!.endpoint.endpointType}` : ""})${avatar!.endpoint.url ? ` ${avatar!.endpoint.url}` : ""}`
          : "endpoint: not deployed",
        ...(avatar!.endpoint?.deploying
          ? [`deploying: version ${avatar!.endpoint.deploying.versionId} since ${avatar!.endpoint.deploying.startedAt}${avatar!.endpoint.deploying.stage ? ` (${avatar!.endpoint.deploying.stage})` : ""}; \`avatar deploy ${name}\` follows it, \`avatar down ${name}\` cancels it`]
          : []),
        ...(avatar!.billing ? [`billing: ${billingText(avatar!.billing)}; \`avatar down ${name}\` stops it`] : []),
        // The studios that serve this avatar, with what each bills per hour for all its avatars.
        ...studios.map((st) => `studio: ${st.studio} (${st.endpoint ? `endpoint ${st.endpoint.state}` : "not deployed"}, with ${st.avatars.filter((a) => a !== name).join(", ") || "no other avatar"})${studioRateText(st) ? `, ${studioRateText(st)}; \`avatar down --studio ${st.studio}\` stops it` : ""}`),
        ...(batches.length
          ? ["", ...table([["BATCH", "STATE", "IMAGES"], ...batches.map((b) => [b.stamp, b.phase, `${b.counts.succeeded} done, ${b.counts.failed} failed${b.error ? `: ${b.error}` : ""}`])])]
          : []),
      ];
      const next = running && !options.wait ? `avatar status ${name} --wait` : avatar!.endpoint?.state === "ready" || studios.some((st) => st.endpoint?.state === "ready") ? `avatar generate ${name} "{avatar} as an astronaut"` : avatar!.models.length ? `avatar deploy ${name}` : undefined;
      return { data: { ...avatar, batches, studios }, human, next: collecting && !(running && !options.wait) ? `avatar generate ${name} --collect ${collecting.stamp}` : next };
    });
  },
});
