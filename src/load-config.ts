// Reads the files config resolution needs (.env, avatar.config.json) and hands them to the pure resolver.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { CONFIG_FILE_NAME, resolveConfig, type ConfigKey, type ResolvedConfig } from "./core/config.ts";
import { AvatarError } from "./core/errors.ts";

export function findConfigFile(cwd: string): string | undefined {
  let dir = resolve(cwd);
  for (;;) {
    const candidate = join(dir, CONFIG_FILE_NAME);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new AvatarError("CONFIG", `Cannot read ${path}.`, { cause, hint: "Check the --config path." });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new AvatarError("CONFIG", `${path} is not valid JSON: ${(cause as Error).message}`, {
      hint: "Fix the file or recreate it with `avatar init`.",
    });
  }
}

/** Parses .env from cwd; non-AVATAR variables are exported to the process (e.g. GOOGLE_APPLICATION_CREDENTIALS) unless already set. */
export function loadDotenv(cwd: string, env: NodeJS.ProcessEnv): Record<string, string> {
  const path = join(cwd, ".env");
  if (!existsSync(path)) return {};
  // dotenv loads only when there is a .env to read: it is not worth its import time otherwise.
  const { parse } = createRequire(import.meta.url)("dotenv") as typeof import("dotenv");
  const parsed = parse(readFileSync(path));
  for (const [key, value] of Object.entries(parsed)) {
    if (!key.startsWith("AVATAR_") && env[key] === undefined) env[key] = value;
  }
  return parsed;
}

export interface LoadConfigOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  dotenv: Record<string, string>;
  flags: Partial<Record<ConfigKey, string>>;
  configPath?: string;
}

export function loadConfig(options: LoadConfigOptions): ResolvedConfig {
  const path = options.configPath ? resolve(options.cwd, options.configPath) : findConfigFile(options.cwd);
  if (options.configPath && !existsSync(path!)) {
    throw new AvatarError("CONFIG", `Config file ${path} does not exist.`, { hint: "Create one with `avatar init`." });
  }
  return resolveConfig({
    flags: options.flags,
    env: options.env,
    dotenv: options.dotenv,
    file: path ? { path, data: readJson(path) } : undefined,
    homeDir: options.env.HOME || undefined,
  });
}
