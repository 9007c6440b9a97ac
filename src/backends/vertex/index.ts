// The vertex backend: GCS store, Vertex CustomJob training, Model Registry, Endpoints.
// Needs a project and a bucket; AVATAR_VERTEX_ENDPOINT / AVATAR_GCS_ENDPOINT point it at local fakes.
import type { Context } from "../../context.ts";
import { requireValue } from "../../core/config.ts";
import { vertexBaseProblem } from "../../core/vertex-specs.ts";
import type { Backend } from "../backend.ts";
import { VertexBatch } from "./batch.ts";
import { VertexClients } from "./clients.ts";
import { openVertexStore } from "./open-store.ts";
import type { VertexContext } from "./context.ts";
import { pollIntervals } from "./lro.ts";
import { retryPolicy } from "./retry.ts";
import { VertexRegistry } from "./registry.ts";
import { VertexServing } from "./serving.ts";
import { VertexTraining } from "./training.ts";

export async function openVertexBackend(ctx: Pick<Context, "config" | "env"> & Partial<Pick<Context, "out" | "signal" | "flags">>): Promise<Backend> {
  const project = requireValue(ctx.config, "project");
  const bucket = requireValue(ctx.config, "bucket");
  const region = ctx.config.values.region;
  // No credentials: a dry run plans offline; anything else says so now instead of after a 30 s probe.
  const { store, unchecked } = await openVertexStore({ bucket, project, env: ctx.env, dryRun: ctx.flags?.dryRun === true, services: ["gcs", "vertex"] });
  const clients = new VertexClients({ region, env: ctx.env, offline: unchecked });
  const poll = pollIntervals(ctx.env);
  const vctx: VertexContext = {
    loc: { project, region },
    bucket,
    store,
    clients,
    env: ctx.env,
    poll,
    emulated: Boolean(ctx.env.AVATAR_VERTEX_ENDPOINT),
    offline: unchecked !== undefined,
    retry: { ...retryPolicy(poll.operationMs, (line) => ctx.out?.detail(line)), signal: ctx.signal },
  };
  const batch = new VertexBatch(vctx);
  return {
    kind: "vertex",
    store,
    training: new VertexTraining(vctx),
    registry: new VertexRegistry(vctx),
    serving: new VertexServing(vctx),
    batch,
    baseProblem: (base) => vertexBaseProblem(base, vctx.emulated),
    async close() {
      await batch.close();
      await clients.close();
      await store.close();
    },
  };
}
