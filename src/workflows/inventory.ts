// What exists for each avatar: training runs, model versions, endpoints (found by name/labels).
import type { Backend, EndpointInfo, ModelVersion, TrainingJob } from "../backends/backend.ts";
import { endpointBilling, type Billing } from "../core/costs.ts";
import { studioOf } from "../core/studio.ts";

export interface AvatarInventory {
  name: string;
  runs: TrainingJob[];
  models: ModelVersion[];
  endpoint: EndpointInfo | undefined;
  /** vertex: how long the endpoint's model has been deployed and what it has cost so far at list price. */
  billing?: Billing;
}

export async function inventory(backend: Backend, name?: string, now = new Date()): Promise<AvatarInventory[]> {
  const filter = name ? { name } : {};
  const [runs, allModels, allEndpoints] = await Promise.all([backend.training.list(filter), backend.registry.list(filter), backend.serving.list(filter)]);
  // Studios' models and endpoints are listed by `avatar studio list` (and as studios by `list`).
  const models = allModels.filter((m) => !studioOf(m));
  const endpoints = allEndpoints.filter((e) => !studioOf(e));
  const names = new Set([...runs.map((r) => r.name), ...models.map((m) => m.name), ...endpoints.map((e) => e.name)]);
  if (name) names.add(name);
  return [...names].sort().map((n) => {
    const endpoint = endpoints.find((e) => e.name === n);
    const billing = backend.kind === "vertex" && endpoint ? endpointBilling(endpoint, now) : undefined;
    return { name: n, runs: runs.filter((r) => r.name === n), models: models.filter((m) => m.name === n), endpoint, ...(billing ? { billing } : {}) };
  });
}
