import { defineCommand } from "./spec.ts";
import { studioRateText } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { validateAvatarName } from "../core/names.ts";
import { table } from "../ui/format.ts";

// Studios are created and stopped by the commands that bill (`deploy --studio`, `down --studio`);
// this command shows them and edits what they serve, which never bills nor redeploys.
export const studioCommand = defineCommand({
  name: "studio",
  summary: "Studios (one endpoint serving many avatars): list them, or remove avatars from one",
  description:
    "`avatar deploy <avatar> --studio <studio>` creates a studio or adds an avatar to it (no redeploy); `avatar down --studio <studio>` stops it. " +
    "`studio list` shows each studio, its avatars, its endpoint and what it bills per hour; `studio remove <studio> <avatar>…` stops serving avatars from it (the endpoint stays).",
  args: [
    { name: "action", description: "list or remove", required: true },
    { name: "studio", description: "studio name (list: optional)" },
    { name: "avatars", description: "remove: the avatars to stop serving", variadic: true },
  ],
  examples: ["avatar studio list", "avatar studio list family --json", "avatar studio remove family bob"],
  async run(ctx, { args }) {
    const [action, studioArg, ...avatars] = args;
    const { validateStudioName } = await import("../core/studio.ts");
    const { withBackend } = await import("../workflows/session.ts");
    const studios = await import("../workflows/studio.ts");
    if (action === "list") {
      if (avatars.length) throw new AvatarError("USAGE", "`studio list` takes at most a studio name.", { hint: "avatar studio list [studio]" });
      const only = studioArg === undefined ? undefined : validateStudioName(studioArg);
      return withBackend(ctx, async (backend) => {
        const all = (await studios.listStudios(backend)).filter((s) => !only || s.studio === only);
        if (only && all.length === 0) throw new AvatarError("NOT_FOUND", `There is no studio ${only}.`, { hint: `Create it with \`avatar deploy <avatar> --studio ${only}\`.` });
        const vertex = backend.kind === "vertex";
        const rows = all.map((s) => [
          s.studio,
          `${s.pipeline}`,
          s.avatars.join(", ") || "(none)",
          s.endpoint ? `endpoint ${s.endpoint.state}` : "not deployed",
          ...(vertex ? [studioRateText(s) ?? "-"] : []),
        ]);
        const human = all.length ? table([["STUDIO", "BASE", "AVATARS", "ENDPOINT", ...(vertex ? ["COST"] : [])], ...rows]) : ["No studios yet. `avatar deploy <avatar> --studio <name>` creates one."];
        return { data: { backend: backend.kind, studios: all }, human };
      });
    }
    if (action === "remove") {
      if (!studioArg || avatars.length === 0) throw new AvatarError("USAGE", "Which studio, and which avatars?", { hint: "avatar studio remove family bob" });
      const studio = validateStudioName(studioArg);
      const names = avatars.map(validateAvatarName);
      return withBackend(ctx, async (backend) => {
        const result = await studios.removeFromStudio(ctx, backend, studio, names);
        const rest = result.avatars.length ? `it serves ${result.avatars.join(", ")}` : "it serves no avatar now but still bills";
        const human = [`${result.dryRun ? "Would remove" : "Removed"} ${names.join(", ")} from studio ${studio}; ${rest} (no redeploy).`];
        return { data: result, human, next: result.avatars.length ? undefined : `avatar down --studio ${studio}` };
      });
    }
    throw new AvatarError("USAGE", `Unknown studio action "${action}".`, { hint: "avatar studio list | avatar studio remove <studio> <avatar>…" });
  },
});
