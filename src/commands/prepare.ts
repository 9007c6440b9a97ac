import { defineCommand, type OptionSpec } from "./spec.ts";
import { DATASET_RULES } from "../core/dataset.ts";
import { formatBytes, table } from "../ui/format.ts";
import type { PrepareSummary } from "../workflows/prepare.ts";

/** Options shared by every command that prepares a folder (prepare, upload, later train). */
export const prepareOptions: readonly OptionSpec[] = [
  { flags: "--recursive", description: "also read photos in sub-folders" },
  {
    flags: "--max-size <px>",
    description: `long side of the normalised photos (never enlarged; ${DATASET_RULES.maxSizeRange[0]}-${DATASET_RULES.maxSizeRange[1]})`,
    default: String(DATASET_RULES.defaultMaxSize),
    number: "int",
  },
  {
    flags: "--min-size <px>",
    description: "skip photos whose short side is smaller than this",
    default: String(DATASET_RULES.defaultMinSize),
    number: "int",
  },
];

export function prepareInput(args: readonly string[], options: Readonly<Record<string, unknown>>) {
  const num = (value: unknown, fallback: number) => (typeof value === "number" ? value : typeof value === "string" ? Number(value) : fallback);
  return {
    dir: args[0] ?? ".",
    recursive: options.recursive === true,
    maxSize: num(options.maxSize, DATASET_RULES.defaultMaxSize),
    minSize: num(options.minSize, DATASET_RULES.defaultMinSize),
  };
}

/** A folder argument as the user can paste it back into a shell. */
export function shellArg(value: string): string {
  return /^[\w./@%+=:,-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** File names may hold terminal escapes or line breaks: show them inert (--json keeps them exact). */
function printable(name: string): string {
  return name.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** The per-file table and the summary, for people. */
export function prepareReport(summary: PrepareSummary): string[] {
  const rows: string[][] = [["file", "result", "size", "note"]];
  for (const f of summary.files) {
    const size = f.width !== undefined ? `${f.width}x${f.height}` : f.source ? `${f.source.width}x${f.source.height}` : "";
    const note = f.status === "kept" ? (f.notes ?? []).join("; ") : (f.reason ?? "");
    rows.push([printable(f.path), f.status === "kept" ? `kept ${f.entry}` : "skipped", size, printable(note)]);
  }
  const { kept, skipped, scanned } = summary.counts;
  const lines = table(rows);
  lines.push("");
  lines.push(
    `${kept} kept, ${skipped} skipped of ${scanned} file${scanned === 1 ? "" : "s"}: ${formatBytes(summary.bytes)} of JPEG (long side ≤ ${summary.maxSize} px) from ${formatBytes(summary.sourceBytes)} of originals.`,
  );
  lines.push(`dataset sha256 ${summary.sha256}`);
  if (summary.out) lines.push(`Normalised photos written to ${summary.out}`);
  return lines;
}

export const prepareCommand = defineCommand({
  name: "prepare",
  summary: "Validate and normalise a folder of selfies",
  description:
    "Reads the photos in a folder (JPEG, PNG, WebP, GIF, TIFF, AVIF), turns them upright, strips all metadata (GPS, camera serials), resizes them, drops duplicates and reports every file. Needs at least 5 usable photos; 10-20 are recommended. Changes nothing; --out writes the normalised photos for inspection.",
  args: [{ name: "dir", description: "folder of photos", required: true }],
  options: [...prepareOptions, { flags: "--out <dir>", description: "write the normalised photos (0001.jpg, …) to this folder" }],
  examples: ["avatar prepare ./selfies", "avatar prepare ./selfies --out ./normalised", "avatar prepare ./selfies --recursive --json"],
  async run(ctx, { args, options }) {
    const { prepareDataset } = await import("../workflows/prepare.ts");
    const input = prepareInput(args, options);
    const prepared = await prepareDataset(ctx, { ...input, out: typeof options.out === "string" ? options.out : undefined });
    await prepared.dispose();
    return {
      data: prepared.summary,
      human: prepareReport(prepared.summary),
      next: `avatar train ${shellArg(input.dir)} --name <name>`,
    };
  },
});
