// Loads style packs shipped in templates/packs.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { AvatarError } from "../core/errors.ts";
import { parsePack, type Pack } from "../core/packs.ts";
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
