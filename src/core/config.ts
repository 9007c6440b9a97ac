// Config resolution: flags > AVATAR_* environment > .env > avatar.config.json > defaults.
// Pure: the caller reads files and the environment; this only merges, validates and freezes.
import { homedir } from "node:os";
import { join } from "node:path";
import { AvatarError } from "./errors.ts";
import { bucketProblem, projectProblem, regionProblem } from "./validate.ts";

export const CONFIG_FILE_NAME = "avatar.config.json";

export type Backend = "local" | "vertex";
export type Gpu = "t4" | "l4";
export type BaseModel = "sdxl" | "sd15";
export type ConfigSource = "flag" | "env" | "dotenv" | "file" | "default";

export interface ConfigValues {
  backend: Backend;
  project: string | undefined;
  region: string;
  bucket: string | undefined;
  gpu: Gpu;
  baseModel: BaseModel;
  /** Root of the local backend's object store. */
  store: string;
  /** Where the local backend keeps its registry, endpoints and caches. */
  home: string;
  /** The Python environment the local backend runs the trainer and handler in. */
  venv: string;
  /** prepare/train check every photo for one clear face of the person ("off" for drawings, pets, objects). */
  faceCheck: string;
}
export type ConfigKey = keyof ConfigValues;

export interface ResolvedConfig {
  readonly values: Readonly<ConfigValues>;
  readonly sources: Readonly<Record<ConfigKey, ConfigSource>>;
  /** The avatar.config.json that was read, if any. */
  readonly file: string | undefined;
}

interface KeyRule {
  flag: string;
  env: string;
  choices?: readonly string[];
  problem?: (value: string) => string | undefined;
}

export const configRules: Readonly<Record<ConfigKey, KeyRule>> = {
  backend: { flag: "--backend", env: "AVATAR_BACKEND", choices: ["local", "vertex"] },
  project: { flag: "--project", env: "AVATAR_PROJECT", problem: projectProblem },
  region: { flag: "--region", env: "AVATAR_REGION", problem: regionProblem },
  bucket: { flag: "--bucket", env: "AVATAR_BUCKET", problem: bucketProblem },
  gpu: { flag: "--gpu", env: "AVATAR_GPU", choices: ["t4", "l4"] },
  baseModel: { flag: "--base", env: "AVATAR_BASE_MODEL", choices: ["sdxl", "sd15"] },
  store: { flag: "--store", env: "AVATAR_STORE" },
  home: { flag: "--home", env: "AVATAR_HOME" },
  venv: { flag: "--venv", env: "AVATAR_VENV" },
  faceCheck: { flag: "--no-face-check", env: "AVATAR_FACE_CHECK", choices: ["on", "off", "1", "0", "true", "false"] },
};

/** Whether prepare/train run the face checks (config key faceCheck: on/off, 1/0, true/false). */
export function faceChecksOn(config: Pick<ResolvedConfig, "values">): boolean {
  return !["off", "0", "false"].includes(config.values.faceCheck);
}

export const configKeys = Object.keys(configRules) as ConfigKey[];

export interface ConfigInputs {
  flags: Partial<Record<ConfigKey, string>>;
  env: Readonly<Record<string, string | undefined>>;
  dotenv: Readonly<Record<string, string>>;
  file?: { path: string; data: unknown };
  homeDir?: string;
}

function defaults(inputs: ConfigInputs, gpu: string): Record<ConfigKey, string | undefined> {
  const home = inputs.homeDir ?? homedir();
  const avatarHome = join(home, ".avatar");
  const cacheRoot = inputs.env.XDG_CACHE_HOME || join(home, ".cache");
  return {
    backend: "local",
    project: inputs.env.GOOGLE_CLOUD_PROJECT || undefined,
    region: "us-central1",
    bucket: undefined,
    gpu: "l4",
    // T4 has no bf16 and 16 GB: SD 1.5 trains in minutes there, SDXL takes hours.
    baseModel: gpu === "t4" ? "sd15" : "sdxl",
    store: join(avatarHome, "store"),
    home: avatarHome,
    venv: join(cacheRoot, "avatar", "venv"),
    faceCheck: "on",
  };
}

function readFileValues(file: ConfigInputs["file"]): Partial<Record<ConfigKey, string>> {
  if (!file) return {};
  const data = file.data;
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new AvatarError("CONFIG", `${file.path} must hold a JSON object.`, { hint: "Recreate it with `avatar init`." });
  }
  const values: Partial<Record<ConfigKey, string>> = {};
  for (const [key, value] of Object.entries(data)) {
    if (key === "$schema" || key === "version") continue;
    if (!(key in configRules)) {
      throw new AvatarError("CONFIG", `${file.path} has an unknown key "${key}".`, {
        hint: `Known keys: ${configKeys.join(", ")}.`,
      });
    }
    if (typeof value !== "string") {
      throw new AvatarError("CONFIG", `${file.path}: "${key}" must be a string.`);
    }
    values[key as ConfigKey] = value;
  }
  return values;
}

function describeSource(key: ConfigKey, source: ConfigSource, filePath: string | undefined): string {
  const rule = configRules[key];
  switch (source) {
    case "flag":
      return `flag ${rule.flag}`;
    case "env":
      return `environment variable ${rule.env}`;
    case "dotenv":
      return `${rule.env} in .env`;
    case "file":
      return `"${key}" in ${filePath ?? CONFIG_FILE_NAME}`;
    default:
      return "the default";
  }
}

export function resolveConfig(inputs: ConfigInputs): ResolvedConfig {
  const fromFile = readFileValues(inputs.file);
  const layers: [ConfigSource, (key: ConfigKey) => string | undefined][] = [
    ["flag", (key) => inputs.flags[key]],
    ["env", (key) => inputs.env[configRules[key].env]],
    ["dotenv", (key) => inputs.dotenv[configRules[key].env]],
    ["file", (key) => fromFile[key]],
  ];
  const values = {} as Record<ConfigKey, string | undefined>;
  const sources = {} as Record<ConfigKey, ConfigSource>;
  // gpu first: the default base model depends on it.
  const order: ConfigKey[] = ["gpu", ...configKeys.filter((k) => k !== "gpu")];
  for (const key of order) {
    const hit = layers.find(([, read]) => {
      const value = read(key);
      return value !== undefined && value !== "";
    });
    if (hit) {
      values[key] = hit[1](key);
      sources[key] = hit[0];
    } else {
      values[key] = defaults(inputs, values.gpu ?? "l4")[key];
      sources[key] = "default";
    }
  }
  for (const key of configKeys) {
    const value = values[key];
    if (value === undefined) continue;
    const rule = configRules[key];
    const problem =
      rule.choices && !rule.choices.includes(value) ? `must be one of ${rule.choices.join(", ")}` : rule.problem?.(value);
    if (problem) {
      throw new AvatarError("CONFIG", `${key} "${value}" (from ${describeSource(key, sources[key], inputs.file?.path)}) ${problem}.`, {
        hint: `Fix it, or override it with ${rule.flag}.`,
      });
    }
  }
  return Object.freeze({
    values: Object.freeze(values as unknown as ConfigValues),
    sources: Object.freeze(sources),
    file: inputs.file?.path,
  });
}

/** Fails with exit 2 naming every way to supply a value the command cannot do without. */
export function requireValue<K extends ConfigKey>(config: ResolvedConfig, key: K): NonNullable<ConfigValues[K]> {
  const value = config.values[key];
  if (value === undefined || value === "") {
    const rule = configRules[key];
    throw new AvatarError("USAGE", `No ${key} is set.`, {
      hint: `Pass ${rule.flag} <${key}>, set ${rule.env}, or run \`avatar init\`.`,
    });
  }
  return value as NonNullable<ConfigValues[K]>;
}

export function explainSource(config: ResolvedConfig, key: ConfigKey): string {
  return describeSource(key, config.sources[key], config.file);
}
