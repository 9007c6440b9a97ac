import { defineCommand } from "./spec.ts";
import { formatHours, formatUsd, studioRateText } from "../core/costs.ts";
import { table } from "../ui/format.ts";

export const listCommand = defineCommand({
  name: "list",
  summary: "All avatars with their runs, model versions and endpoints (vertex: what each endpoint has cost so far)",
  examples: ["avatar list", "avatar list --json"],
  async run(ctx) {
    const { withBackend } = await import("../workflows/session.ts");
    const { inventory } = await import("../workflows/inventory.ts");
    const { billingNow } = await import("../workflows/costs.ts");
    const { listStudios } = await import("../workflows/studio.ts");
    return withBackend(ctx, async (backend) => {
      const [avatars, studios] = await Promise.all([inventory(backend), listStudios(backend)]);
      const vertex = backend.kind === "vertex";
      const rows = avatars.map((a) => [
        a.name,
        `${a.runs.length} run${a.runs.length === 1 ? "" : "s"}${a.runs.at(-1) ? ` (last ${a.runs.at(-1)!.state})` : ""}`,
        `${a.models.length} version${a.models.length === 1 ? "" : "s"}`,
        a.endpoint ? `endpoint ${a.endpoint.state}` : "not deployed",
        // How long it has been deployed and what that cost at list price (local costs nothing).
        ...(vertex ? [a.billing ? `${formatHours(a.billing.hours)}, ≈ ${formatUsd(a.billing.usdSoFar)} (≈ ${formatUsd(a.billing.usdPerHour)}/h)` : "-"] : []),
      ]);
      const now = vertex ? billingNow([...avatars, ...studios.map((st) => ({ endpoint: st.endpoint, runs: [] }))]) : undefined;
      // Studios: one endpoint for many avatars, with what it bills per hour (and per avatar).
      const studioLines = studios.length
        ? [
            "",
            ...table([
              ["STUDIO", "AVATARS", "ENDPOINT", ...(vertex ? ["COST PER HOUR"] : [])],
              ...studios.map((st) => [
                st.studio,
                st.avatars.join(", ") || "(none)",
                st.endpoint ? `endpoint ${st.endpoint.state}` : "not deployed",
                ...(vertex ? [studioRateText(st) ?? "-"] : []),
              ]),
            ]),
          ]
        : [];
      const total = now
        ? [
            "",
            now.usdPerHour > 0
              ? `Billing now: ≈ ${formatUsd(now.usdPerHour)}/h at list price (${now.endpoints} endpoint${now.endpoints === 1 ? "" : "s"}, ${now.trainingJobs} training job${now.trainingJobs === 1 ? "" : "s"}); \`avatar down --all\` stops every endpoint.`
              : "Billing now: nothing (no endpoint serving, no training job running).",
          ]
        : [];
      return {
        data: { backend: backend.kind, avatars, studios, ...(now ? { billing: now } : {}) },
        human: avatars.length ? [...table([["NAME", "RUNS", "MODELS", "ENDPOINT", ...(vertex ? ["DEPLOYED, COST SO FAR"] : [])], ...rows]), ...studioLines, ...total] : ["No avatars yet.", ...studioLines, ...total],
        next: avatars.length ? `avatar status ${avatars[0]!.name}` : "avatar demo",
      };
    });
  },
});
