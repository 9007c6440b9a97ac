// prepare's file handling: the per-file report type, finding the files (never following a link out
// of the folder), reading them safely into reused buffers, and writing --out.
import { constants } from "node:fs";
import { copyFile, lstat, mkdir, open, readdir, realpath, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { comparePaths, DATASET_RULES, skipReason, type SkipCode, type SkipDetails } from "../core/dataset.ts";
import { badInput } from "../core/errors.ts";
import type { FaceReport } from "./prepare-faces.ts";

export interface FileReport {
  /** Relative to the folder, '/'-separated. */
  path: string;
  status: "kept" | "skipped";
  /** Set when skipped. */
  code?: SkipCode;
  reason?: string;
  /** Archive entry name when kept. */
  entry?: string;
  format?: string;
  source?: { width: number; height: number; bytes: number };
  /** The normalised JPEG (kept and duplicate photos). */
  width?: number;
  height?: number;
  bytes?: number;
  sha256?: string;
  notes?: string[];
  /** Face checks only: what was found and measured. */
  face?: FaceReport;
}

export interface Found {
  rel: string;
  /** The path to read: the file itself, or the in-folder target of a symlink. */
  abs: string;
  symlink?: boolean;
}

export function skipped(path: string, code: SkipCode, details: SkipDetails = {}, extra: Partial<FileReport> = {}): FileReport {
  return { path, status: "skipped", code, reason: skipReason(code, details), ...extra };
}

export function isInside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

// ---- finding the files -----------------------------------------------------------------------

export async function resolveFolder(cwd: string, dir: string): Promise<string> {
  const given = resolve(cwd, dir);
  let info;
  try {
    info = await stat(given);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw badInput(`No such folder: ${dir}`, "Pass the folder that holds your photos, e.g. `avatar prepare ./selfies`.");
    throw badInput(`Cannot open ${dir}: ${(error as Error).message}`);
  }
  if (!info.isDirectory()) throw badInput(`${dir} is not a folder.`, "Pass the folder that holds your photos, not a single file.");
  return realpath(given);
}

export async function scan(root: string, recursive: boolean, skips: FileReport[]): Promise<Found[]> {
  const found: Found[] = [];
  const walk = async (dir: string, prefix: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (!prefix) throw badInput(`Cannot read the folder ${root}: ${(error as Error).message}`);
      skips.push(skipped(prefix, "unreadable", { message: (error as NodeJS.ErrnoException).code }));
      return;
    }
    entries.sort((a, b) => comparePaths(a.name, b.name));
    for (const entry of entries) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      const abs = join(dir, entry.name);
      if (entry.name.startsWith(".")) {
        skips.push(skipped(rel, "hidden"));
      } else if (entry.isDirectory()) {
        if (!recursive) skips.push(skipped(rel, "folder"));
        else if (depth >= DATASET_RULES.maxDepth) skips.push({ ...skipped(rel, "folder"), reason: `sub-folder more than ${DATASET_RULES.maxDepth} levels deep` });
        else await walk(abs, rel, depth + 1);
      } else if (entry.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(abs);
        } catch {
          skips.push(skipped(rel, "symlink-broken"));
          continue;
        }
        if (!isInside(target, root)) {
          skips.push(skipped(rel, "symlink-outside"));
          continue;
        }
        const info = await lstat(target).catch(() => undefined);
        if (info?.isFile()) found.push({ rel, abs: target, symlink: true });
        else if (info?.isDirectory()) skips.push(skipped(rel, "symlink-folder"));
        else skips.push(skipped(rel, "not-regular"));
      } else if (entry.isFile()) {
        found.push({ rel, abs });
      } else {
        skips.push(skipped(rel, "not-regular"));
      }
      if (found.length > DATASET_RULES.maxFiles) {
        throw badInput(`More than ${DATASET_RULES.maxFiles} files in ${root}.`, "Point avatar at a folder of 10-20 selfies, not a whole photo library.");
      }
    }
  };
  await walk(root, "", 0);
  return found;
}

// ---- reading -----------------------------------------------------------------------------------

/**
 * A per-worker read buffer, reused for every file: photos (often 3-8 MB each) and their normalised
 * copies then never pile up as garbage waiting for the collector, which keeps peak memory flat.
 */
export class Scratch {
  #buffer = Buffer.allocUnsafe(0);
  get(size: number): Buffer {
    if (this.#buffer.length < size) this.#buffer = Buffer.allocUnsafe(Math.max(size, Math.ceil(this.#buffer.length * 1.5), 1024 * 1024));
    return this.#buffer.subarray(0, size);
  }
}

export interface Scratches {
  input: Scratch;
  output: Scratch;
}

/**
 * Reads a regular file without following a symlink at the last step and without blocking on FIFOs.
 * The returned bytes live in `scratch` and are valid until the next read with it.
 */
export async function readRegular(path: string, scratch: Scratch): Promise<{ data: Buffer } | { code: SkipCode; details?: SkipDetails }> {
  const flags = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
  let handle;
  try {
    handle = await open(path, flags);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP") return { code: "symlink-broken" };
    return { code: "unreadable", details: { message: code ?? (error as Error).message } };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return { code: "not-regular" };
    if (info.size === 0) return { code: "empty" };
    if (info.size > DATASET_RULES.maxFileBytes) return { code: "file-too-large", details: { bytes: info.size } };
    const data = scratch.get(info.size);
    let offset = 0;
    while (offset < data.length) {
      const { bytesRead } = await handle.read(data, offset, data.length - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    if (offset === 0) return { code: "empty" };
    return { data: offset === data.length ? data : data.subarray(0, offset) };
  } catch (error) {
    return { code: "unreadable", details: { message: (error as NodeJS.ErrnoException).code ?? (error as Error).message } };
  } finally {
    await handle.close();
  }
}

// ---- --out -----------------------------------------------------------------------------------

export interface OutImage {
  entry: string;
  file: string;
}

export async function writeOut(outDir: string, root: string, images: readonly OutImage[], manifest?: { entry: string; data: Buffer }): Promise<void> {
  if (outDir === root) throw badInput("--out may not be the photo folder itself.", "Pick an empty folder, e.g. --out ./normalised.");
  let existing: string[] = [];
  try {
    existing = await readdir(outDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw badInput(`Cannot use --out ${outDir}: ${(error as Error).message}`);
  }
  const ours = /^(\d{4,}\.jpg|faces\.json)$/;
  const foreign = existing.filter((name) => !ours.test(name));
  if (foreign.length > 0) {
    throw badInput(`--out folder ${outDir} is not empty (${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", …" : ""}).`, "Pick an empty or new folder; only earlier avatar output (0001.jpg, …) is replaced.");
  }
  await mkdir(outDir, { recursive: true });
  for (const name of existing) await rm(join(outDir, name), { force: true });
  for (const image of images) await copyFile(image.file, join(outDir, image.entry));
  if (manifest) await writeFile(join(outDir, manifest.entry), manifest.data);
}

