// The local model registry: one JSON file per avatar in the store, versions numbered like Vertex's.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { AvatarError } from "../../core/errors.ts";
import { holdsArtifact, type ModelRegistry, type ModelVersion, type RegisterSpec } from "../backend.ts";
import { readRecord, writeRecord } from "./records.ts";

interface RegistryFile {
  modelId: string;
  name: string;
  versions: ModelVersion[];
}

export class LocalRegistry implements ModelRegistry {
  readonly #root: string;
  readonly #uri: (key: string) => string;

  /** root: the store's avatar/ directory. */
  constructor(root: string, uri: (key: string) => string) {
    this.#root = root;
    this.#uri = uri;
  }

  #path(name: string): string {
    return join(this.#root, name, "registry.json");
  }

  async register(spec: RegisterSpec): Promise<{ version: ModelVersion; created: boolean }> {
    const file = (await readRecord<RegistryFile>(this.#path(spec.name))) ?? { modelId: `avatar-${spec.name}`, name: spec.name, versions: [] };
    const existing = file.versions.find((v) => holdsArtifact(v, spec.runId, this.#uri(spec.modelKey)));
    if (existing) return { version: existing, created: false };
    const versionId = String(file.versions.reduce((max, v) => Math.max(max, Number(v.versionId)), 0) + 1);
    // The newest version takes the "default" alias, as `avatar deploy` serves the default.
    for (const v of file.versions) v.aliases = v.aliases.filter((a) => a !== "default");
    const version: ModelVersion = {
      modelId: file.modelId,
      name: spec.name,
      versionId,
      runId: spec.runId,
      artifactUri: this.#uri(spec.modelKey),
      aliases: ["default", `run-${spec.runId}`],
      labels: spec.labels,
      ...(spec.description ? { description: spec.description } : {}),
      createdAt: new Date().toISOString(),
    };
    file.versions.push(version);
    await writeRecord(this.#path(spec.name), file);
    return { version, created: true };
  }

  async list(filter: { name?: string } = {}): Promise<ModelVersion[]> {
    let names: string[];
    try {
      names = filter.name ? [filter.name] : (await readdir(this.#root)).filter((n) => !n.startsWith("_") && !n.startsWith("."));
    } catch {
      return [];
    }
    const files = await Promise.all(names.map((n) => readRecord<RegistryFile>(this.#path(n))));
    return files.flatMap((f) => f?.versions ?? []);
  }

  /** As on Vertex: an alias names one version at a time, so it moves from the version that had it. */
  async moveAlias(name: string, alias: string, versionId: string): Promise<{ version: ModelVersion; from?: string }> {
    const file = await readRecord<RegistryFile>(this.#path(name));
    const target = file?.versions.find((v) => v.versionId === versionId);
    if (!file || !target) throw new AvatarError("NOT_FOUND", `${name} has no model version ${versionId}.`, { hint: `\`avatar status ${name}\` lists its versions.` });
    const from = file.versions.find((v) => v.aliases.includes(alias))?.versionId;
    for (const v of file.versions) v.aliases = v.aliases.filter((a) => a !== alias);
    target.aliases.push(alias);
    await writeRecord(this.#path(name), file);
    return { version: target, ...(from && from !== versionId ? { from } : {}) };
  }

  async removeAlias(name: string, alias: string): Promise<string | undefined> {
    const file = await readRecord<RegistryFile>(this.#path(name));
    const holder = file?.versions.find((v) => v.aliases.includes(alias));
    if (!file || !holder) return undefined;
    holder.aliases = holder.aliases.filter((a) => a !== alias);
    await writeRecord(this.#path(name), file);
    return holder.versionId;
  }

  async get(name: string, version?: string): Promise<ModelVersion | undefined> {
    const versions = await this.list({ name });
    if (!version || version === "default") return versions.find((v) => v.aliases.includes("default"));
    return versions.find((v) => v.versionId === version || v.runId === version || v.aliases.includes(version));
  }
}
