// What exists for each avatar: training runs, model versions, endpoints (found by name/labels).
import type { Backend, EndpointInfo, ModelVersion, TrainingJob } from "../backends/backend.ts";

export interface AvatarInventory {
  name: string;
  runs: TrainingJob[];
  models: ModelVersion[];
  endpoint: EndpointInfo | undefined;
}

export async function inventory(backend: Backend, name?: string): Promise<AvatarInventory[]> {
  const filter = name ? { name } : {};
  const [runs, models, endpoints] = await Promise.all([backend.training.list(filter), backend.registry.list(filter), backend.serving.list(filter)]);
  const names = new Set([...runs.map((r) => r.name), ...models.map((m) => m.name), ...endpoints.map((e) => e.name)]);
  if (name) names.add(name);
  return [...names].sort().map((n) => ({
    name: n,
    runs: runs.filter((r) => r.name === n),
    models: models.filter((m) => m.name === n),
    endpoint: endpoints.find((e) => e.name === n),
  }));
}
