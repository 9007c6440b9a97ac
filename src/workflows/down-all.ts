// `avatar down --all`: undeploy and delete every avatar endpoint of the project (in the configured
// region), after one confirmation, and say what stopped billing.
import type { Backend, PlannedRequest } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { formatUsd } from "../core/costs.ts";
import { AvatarError } from "../core/errors.ts";
import { endpointRate } from "./costs.ts";

export interface StoppedEndpoint {
  name: string;
  gpu?: string;
  /** What it billed per hour at list price (vertex, while a model was deployed). */
  usdPerHour?: number;
}

export interface DownAllResult {
  all: true;
  stopped: StoppedEndpoint[];
  /** The sum of what stopped billing, per hour at list price. */
  usdPerHour: number;
  dryRun: boolean;
  requests?: PlannedRequest[];
}

const round = (x: number) => Math.round(x * 10_000) / 10_000;

export async function downAll(ctx: Context, backend: Backend): Promise<DownAllResult> {
  // Every endpoint with the avatar label; a deployment in flight shows as one too.
  const found: StoppedEndpoint[] = (await backend.serving.list()).map((e) => {
    const rate = endpointRate(e);
    return { name: e.name, ...(e.gpu ? { gpu: e.gpu } : {}), ...(rate !== undefined ? { usdPerHour: round(rate) } : {}) };
  });
  const usdPerHour = round(found.reduce((sum, e) => sum + (e.usdPerHour ?? 0), 0));
  if (found.length === 0) return { all: true, stopped: [], usdPerHour: 0, dryRun: ctx.flags.dryRun };
  if (ctx.flags.dryRun) {
    const requests = backend.serving.planDown ? (await Promise.all(found.map((e) => backend.serving.planDown!(e.name)))).flat() : undefined;
    return { all: true, stopped: found, usdPerHour, dryRun: true, ...(requests ? { requests } : {}) };
  }
  const names = found.map((e) => e.name).join(", ");
  const billing = backend.kind === "vertex" ? ` (billing ≈ ${formatUsd(usdPerHour)}/h now)` : "";
  // Destructive: a script must say --yes (the prompt module refuses without it, exit 2).
  const yes = await ctx.prompts.confirm({ message: `Undeploy and delete ${found.length} endpoint${found.length === 1 ? "" : "s"}: ${names}${billing}?`, default: false });
  if (!yes) throw new AvatarError("USAGE", "Not confirmed: no endpoint was stopped.", { hint: "Pass --yes to stop them without the question." });
  const stopped: StoppedEndpoint[] = [];
  for (const e of found) {
    if (await backend.serving.down(e.name, { signal: ctx.signal, onStage: (stage) => ctx.out.info(`${e.name}: ${stage}`) })) stopped.push(e);
  }
  return { all: true, stopped, usdPerHour: round(stopped.reduce((sum, e) => sum + (e.usdPerHour ?? 0), 0)), dryRun: false };
}
