// The local model registry: one JSON file per avatar in the store, versions numbered like Vertex's.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { ModelRegistry, ModelVersion, RegisterSpec } from "../backend.ts";
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
    const existing = file.versions.find((v) => v.runId === spec.runId);
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

  async get(name: string, version?: string): Promise<ModelVersion | undefined> {
    const versions = await this.list({ name });
    if (!version || version === "default") return versions.find((v) => v.aliases.includes("default"));
    return versions.find((v) => v.versionId === version || v.runId === version || v.aliases.includes(version));
  }
}
