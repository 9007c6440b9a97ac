// The checkpoint table register and train print: one row per sampled checkpoint, the chosen one marked.
import type { CheckpointRow } from "../core/checkpoint-pick.ts";
import { table } from "./format.ts";

const num = (n: number | null) => (n === null ? "–" : n.toFixed(2));

export function checkpointTable(checkpoint: { step: number; lastStep: number; reason: string; rows: readonly CheckpointRow[] }): string[] {
  const rows = checkpoint.rows.map((r) => [
    String(r.step),
    num(r.likeness),
    num(r.worst),
    `${r.faces}/${r.samples}`,
    String(r.nearCopies),
    r.score.toFixed(2),
    r.step === checkpoint.step ? "← registered" : "",
  ]);
  return [
    ...(rows.length ? table([["step", "likeness", "worst", "faces", "near-copies", "score", ""], ...rows]) : []),
    `checkpoint ${checkpoint.step} of ${checkpoint.lastStep}: ${checkpoint.reason}`,
  ];
}
