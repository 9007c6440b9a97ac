// Style packs: named prompt sets (templates/packs/*.json) with the {avatar} placeholder, and
// prompt files for `generate --batch`.
import { AvatarError } from "./errors.ts";

export interface Pack {
  name: string;
  description: string;
  prompts: string[];
  negative_prompt?: string;
}

export function parsePack(name: string, value: unknown): Pack {
  const bad = (why: string) => new AvatarError("BAD_INPUT", `Pack "${name}" ${why}.`);
  if (typeof value !== "object" || value === null) throw bad("is not a JSON object");
  const p = value as Record<string, unknown>;
  if (!Array.isArray(p.prompts) || p.prompts.length === 0 || !p.prompts.every((x) => typeof x === "string" && x.trim() !== "")) {
    throw bad('needs a non-empty "prompts" list of strings');
  }
  if (p.negative_prompt !== undefined && typeof p.negative_prompt !== "string") throw bad('has a non-string "negative_prompt"');
  return {
    name,
    description: typeof p.description === "string" ? p.description : "",
    prompts: p.prompts as string[],
    negative_prompt: p.negative_prompt as string | undefined,
  };
}

/** Prompts without the placeholder still name the avatar: a prompt that ignores it trains nothing visible. */
export function withAvatar(prompt: string): string {
  return prompt.includes("{avatar}") ? prompt : `a photo of {avatar}, ${prompt}`;
}

/** A --batch file holds at most this many prompts: a bigger one is more likely the wrong file. */
export const MAX_BATCH_PROMPTS = 500;

/** Prompts of a --batch file: one per line; blank lines and lines starting with # are skipped. */
export function parsePromptFile(source: string, text: string): string[] {
  const bad = (why: string, hint?: string) => new AvatarError("BAD_INPUT", `${source} ${why}.`, { hint });
  if (text.includes("\0")) throw bad("is not a text file", "A --batch file holds one prompt per line.");
  const prompts = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  if (prompts.length === 0) throw bad("has no prompts", "Write one prompt per line; lines starting with # are comments.");
  if (prompts.length > MAX_BATCH_PROMPTS) throw bad(`has ${prompts.length} prompts; at most ${MAX_BATCH_PROMPTS} per batch`, "Split it into several files.");
  return prompts;
}
