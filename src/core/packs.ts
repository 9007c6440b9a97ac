// Style packs: named prompt sets (templates/packs/*.json) with the {avatar} placeholder.
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
