import { defineCommand, type OptionSpec } from "./spec.ts";
import { faceChecksOn } from "../core/config.ts";
import { DATASET_RULES } from "../core/dataset.ts";
import type { Context } from "../context.ts";
import { formatBytes, table } from "../ui/format.ts";
import type { PrepareSummary } from "../workflows/prepare.ts";

/** Face checks: on by default (config key faceCheck / AVATAR_FACE_CHECK). */
export const faceCheckOption: OptionSpec = {
  flags: "--no-face-check",
  description: "skip the face checks and crops (drawings, pets, objects): photos are only normalised",
};

/**
 * What prepareDataset needs to check faces: whether to, and the base model's resolution. A --base
 * given explicitly is checked even without face checks: a typo is an error, not silently ignored.
 */
export async function faceInput(ctx: Pick<Context, "config" | "cwd">, base: string | undefined, resolution?: number): Promise<{ faceCheck: boolean; baseResolution?: number }> {
  const checks = faceChecksOn(ctx.config);
  if (!checks && base === undefined) return { faceCheck: false };
  const { baseResolution } = await import("../workflows/base-model.ts");
  const side = baseResolution(base ?? ctx.config.values.baseModel, ctx.cwd, resolution);
  return checks ? { faceCheck: true, baseResolution: side } : { faceCheck: false };
}

/** Options shared by every command that prepares a folder (prepare, upload, later train). */
export const prepareOptions: readonly OptionSpec[] = [
  { flags: "--recursive", description: "also read photos in sub-folders" },
  {
    flags: "--max-size <px>",
    description: `long side of the normalised photos with --no-face-check (never enlarged; ${DATASET_RULES.maxSizeRange[0]}-${DATASET_RULES.maxSizeRange[1]}); face crops are the base resolution`,
    default: String(DATASET_RULES.defaultMaxSize),
    number: "int",
  },
  {
    flags: "--min-size <px>",
    description: "skip photos whose short side is smaller than this",
    default: String(DATASET_RULES.defaultMinSize),
    number: "int",
  },
  { flags: "--base <model>", description: "base model the photos are for: face crops are its resolution (sdxl 1024, sd15 512; default: from config)" },
  faceCheckOption,
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
    const face = f.face?.box ? ` [face ${f.face.box.join(",")}${f.face.sharpness !== undefined ? `, sharpness ${Math.round(f.face.sharpness)}` : ""}${f.face.similarity !== undefined ? `, likeness ${f.face.similarity.toFixed(2)}` : ""}]` : "";
    rows.push([printable(f.path), f.status === "kept" ? `kept ${f.entry}` : "skipped", size, printable(note) + face]);
  }
  const { kept, skipped, scanned } = summary.counts;
  const lines = table(rows);
  lines.push("");
  lines.push(
    `${kept} kept, ${skipped} skipped of ${scanned} file${scanned === 1 ? "" : "s"}: ${formatBytes(summary.bytes)} of JPEG (${summary.faces ? `${summary.faces.resolution} px face crops` : `long side ≤ ${summary.maxSize} px`}) from ${formatBytes(summary.sourceBytes)} of originals.`,
  );
  if (summary.faces) {
    const f = summary.faces;
    lines.push(
      `faces: ${f.usable} usable (${f.framings["close-up"]} close-up, ${f.framings["head-and-shoulders"]} head-and-shoulders); variety ${f.variety} (head turn ±${f.pose.yaw.toFixed(2)}, mouth ±${f.pose.mouthOpen.toFixed(2)}, identity spread ${f.identitySpread.toFixed(3)})`,
    );
    if (f.advice) lines.push(`advice: ${f.advice}`);
  }
  lines.push(`dataset sha256 ${summary.sha256}`);
  if (summary.out) lines.push(`Normalised photos written to ${summary.out}`);
  return lines;
}

export const prepareCommand = defineCommand({
  name: "prepare",
  summary: "Validate and normalise a folder of selfies",
  description:
    "Reads the photos in a folder (JPEG, PNG, WebP, GIF, TIFF, AVIF), turns them upright, strips all metadata (GPS, camera serials), checks each for one clear, sharp face of the same person and crops around it at the base model's resolution, drops duplicates and reports every file with a dataset summary. Needs at least 5 usable photos; 10-20 are recommended. Changes nothing; --out writes the normalised photos for inspection. --no-face-check (or AVATAR_FACE_CHECK=0) only normalises, for drawings, pets or objects.",
  args: [{ name: "dir", description: "folder of photos", required: true }],
  options: [...prepareOptions, { flags: "--out <dir>", description: "write the normalised photos (0001.jpg, …) to this folder" }],
  examples: ["avatar prepare ./selfies", "avatar prepare ./selfies --out ./normalised", "avatar prepare ./selfies --recursive --json"],
  async run(ctx, { args, options }) {
    const { prepareDataset } = await import("../workflows/prepare.ts");
    const input = prepareInput(args, options);
    const faces = await faceInput(ctx, typeof options.base === "string" ? options.base : undefined);
    const prepared = await prepareDataset(ctx, { ...input, ...faces, out: typeof options.out === "string" ? options.out : undefined });
    await prepared.dispose();
    return {
      data: prepared.summary,
      human: prepareReport(prepared.summary),
      next: `avatar train ${shellArg(input.dir)} --name <name>`,
    };
  },
});
