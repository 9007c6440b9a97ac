// Shared by the studio e2e files: a model folder for `register --artifact-uri` made from another
// avatar's trained files (a third avatar without a third training run), and process lookup.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Writes <dir> with `weights` and an avatar.json of `avatar` renamed to `name` (run `runId`, other fields changed by `patch`). */
export function artifactFolder(dir: string, name: string, runId: string, weights: Buffer, avatarJson: Buffer, patch: Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true });
  const meta = { ...JSON.parse(avatarJson.toString("utf8")), name, run_id: runId, ...patch };
  writeFileSync(join(dir, "avatar.json"), JSON.stringify(meta, null, 2));
  writeFileSync(join(dir, "pytorch_lora_weights.safetensors"), weights);
  return dir;
}

/** Command lines of running processes that mention `needle` (the servers a test left running). */
export function processesMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmdline.includes(needle) && !cmdline.includes("vitest")) found.push(`${pid}: ${cmdline}`);
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}
