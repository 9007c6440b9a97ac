// Loads style packs shipped in templates/packs, and the prompt files of `generate --batch`.
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { text as readText } from "node:stream/consumers";
import { AvatarError } from "../core/errors.ts";
import { parsePack, parsePromptFile, type Pack } from "../core/packs.ts";
import { packageRoot } from "../paths.ts";

const packsDir = join(packageRoot, "templates", "packs");

export async function packNames(): Promise<string[]> {
  return (await readdir(packsDir)).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
}

export async function loadPack(name: string): Promise<Pack> {
  const names = await packNames();
  if (!names.includes(name)) {
    throw new AvatarError("BAD_INPUT", `There is no pack "${name}".`, { hint: `Packs: ${names.join(", ")}.` });
  }
  return parsePack(name, JSON.parse(await readFile(join(packsDir, `${name}.json`), "utf8")));
}

/** The prompts of a --batch file (relative to `cwd`), or of `stdin` for "-". */
export async function loadPromptFile(file: string, cwd: string, stdin: Readable): Promise<string[]> {
  if (file === "-") {
    return parsePromptFile("stdin", await readText(stdin));
  }
  let text: string;
  try {
    text = await readFile(resolve(cwd, file), "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new AvatarError("BAD_INPUT", `Cannot read the --batch file ${file}${code ? ` (${code})` : ""}.`, { hint: "Pass a text file with one prompt per line, or - to read stdin." });
  }
  return parsePromptFile(file, text);
}
