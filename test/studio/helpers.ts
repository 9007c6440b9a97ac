// Shared by the studio e2e files: a model folder for `register --artifact-uri` made from another
// avatar's trained files (a third avatar without a third training run); process lookup is re-exported.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export { processesMentioning } from "../support/processes.ts";

/** Writes <dir> with `weights` and an avatar.json of `avatar` renamed to `name` (run `runId`, other fields changed by `patch`). */
export function artifactFolder(dir: string, name: string, runId: string, weights: Buffer, avatarJson: Buffer, patch: Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true });
  const meta = { ...JSON.parse(avatarJson.toString("utf8")), name, run_id: runId, ...patch };
  writeFileSync(join(dir, "avatar.json"), JSON.stringify(meta, null, 2));
  writeFileSync(join(dir, "pytorch_lora_weights.safetensors"), weights);
  return dir;
}

