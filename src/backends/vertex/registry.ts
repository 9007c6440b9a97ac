// The Vertex Model Registry: one model per avatar (id avatar-<name>), one version per training run
// and registered checkpoint (its model folder).
// The first upload creates the model with modelId, later ones add versions with parentModel; a run
// that already has a version of that folder (label avatar-run=<run>, its artifactUri) is returned as it is.
import { setTimeout as sleep } from "node:timers/promises";
import { mergeAliasesRequest, planMergeAliases } from "../../core/alias.ts";
import { avatarFilter, avatarOfResourceId, isoTime, locationName, modelName, resourceId, versionSuffix } from "../../core/vertex-names.ts";
import { serveImage, uploadModelRequest, type PlannedRequest } from "../../core/vertex-specs.ts";
import { holdsArtifact, type ModelRegistry, type ModelVersion, type RegisterSpec } from "../backend.ts";
import { errorContext, isNotFound, readRetrying, type VertexContext } from "./context.ts";
import { mapVertexError } from "./errors.ts";
import { waitOperation } from "./lro.ts";

interface ModelLike {
  name?: string | null;
  versionId?: string | null;
  versionAliases?: string[] | null;
  versionCreateTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  createTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  labels?: Record<string, string> | null;
  artifactUri?: string | null;
  description?: string | null;
}

const ALIAS = /^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$/;

export class VertexRegistry implements ModelRegistry {
  readonly #v: VertexContext;

  constructor(vctx: VertexContext) {
    this.#v = vctx;
  }

  #toVersion(model: ModelLike): ModelVersion {
    const labels = { ...(model.labels ?? {}) };
    const modelId = resourceId(model.name ?? "");
    return {
      modelId,
      name: labels.avatar ?? avatarOfResourceId(modelId) ?? modelId,
      versionId: String(model.versionId ?? ""),
      runId: labels["avatar-run"] ?? "",
      artifactUri: model.artifactUri ?? "",
      aliases: [...(model.versionAliases ?? [])],
      labels,
      ...(model.description ? { description: model.description } : {}),
      createdAt: isoTime(model.versionCreateTime) ?? isoTime(model.createTime) ?? "",
    };
  }

  async #getRaw(name: string, suffix = ""): Promise<ModelLike | undefined> {
    const models = await this.#v.clients.models();
    try {
      const [model] = await readRetrying(this.#v, `reading the model of ${name}`, () => models.getModel({ name: `${modelName(this.#v.loc, name)}${suffix}` }));
      return model as ModelLike;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw mapVertexError(error, errorContext(this.#v, `reading the model of ${name}`));
    }
  }

  async #versions(fullName: string, avatar: string): Promise<ModelVersion[]> {
    const models = await this.#v.clients.models();
    try {
      const [versions] = (await readRetrying(this.#v, `listing the versions of ${avatar}`, () => models.listModelVersions({ name: fullName }))) as unknown as [ModelLike[]];
      return versions.map((m) => this.#toVersion(m)).sort((a, b) => Number(a.versionId) - Number(b.versionId));
    } catch (error) {
      if (isNotFound(error)) return [];
      throw mapVertexError(error, errorContext(this.#v, `listing the model versions of ${avatar}`));
    }
  }

  #request(spec: RegisterSpec, modelExists: boolean) {
    return uploadModelRequest(this.#v.loc, {
      name: spec.name,
      runId: spec.runId,
      artifactUri: this.#v.store.uri(spec.modelKey),
      labels: spec.labels,
      description: spec.description,
      imageUri: serveImage(this.#v.env),
      modelExists,
    });
  }

  async plan(spec: RegisterSpec): Promise<PlannedRequest[]> {
    const existing = await this.#getRaw(spec.name);
    if (existing) {
      const found = (await this.#versions(modelName(this.#v.loc, spec.name), spec.name)).find((v) => holdsArtifact(v, spec.runId, this.#v.store.uri(spec.modelKey)));
      if (found) return [{ service: "ModelService", method: "UploadModel", request: null, note: `not needed: run ${spec.runId} is already version ${found.versionId}` }];
    }
    const note = this.#v.offline ? `a new version (parentModel) instead if avatar-${spec.name} exists: not checked without credentials` : undefined;
    return [{ service: "ModelService", method: "UploadModel", request: this.#request(spec, Boolean(existing)), ...(note ? { note } : {}) }];
  }

  async register(spec: RegisterSpec, attempt = 1): Promise<{ version: ModelVersion; created: boolean }> {
    const existing = await this.#getRaw(spec.name);
    if (existing) {
      const found = (await this.#versions(modelName(this.#v.loc, spec.name), spec.name)).find((v) => holdsArtifact(v, spec.runId, this.#v.store.uri(spec.modelKey)));
      if (found) return { version: found, created: false };
    }
    const models = await this.#v.clients.models();
    const context = errorContext(this.#v, `registering run ${spec.runId} of ${spec.name}`);
    let operation;
    try {
      [operation] = await models.uploadModel(this.#request(spec, Boolean(existing)));
    } catch (error) {
      // Another process created the model between our look and our upload: add a version instead.
      if ((error as { code?: unknown }).code === 6 && !existing && attempt < 3) {
        await sleep(this.#v.poll.operationMs);
        return this.register(spec, attempt + 1);
      }
      throw mapVertexError(error, context);
    }
    const result = await waitOperation(operation, (name) => models.checkUploadModelProgress(name), {
      intervalMs: this.#v.poll.operationMs,
      retry: this.#v.retry,
      context,
      interrupted: "Interrupted while the model was being registered; run `avatar register` again to pick it up.",
    });
    const versionId = String((result as { modelVersionId?: string | null }).modelVersionId ?? "");
    const created = versionId ? await this.#getRaw(spec.name, `@${versionId}`) : undefined;
    const version = created ? this.#toVersion(created) : await this.get(spec.name, spec.runId);
    if (!version) throw mapVertexError({ code: 5, details: `model version of run ${spec.runId} not found after upload` }, context);
    return { version, created: true };
  }

  async list(filter: { name?: string } = {}): Promise<ModelVersion[]> {
    const models = await this.#v.clients.models();
    let raw: ModelLike[];
    try {
      [raw] = (await readRetrying(this.#v, "listing models", () => models.listModels({ parent: locationName(this.#v.loc), filter: avatarFilter(filter.name) }))) as unknown as [ModelLike[]];
    } catch (error) {
      throw mapVertexError(error, errorContext(this.#v, "listing models"));
    }
    const byName = new Map<string, ModelLike>();
    for (const m of raw) if (m.name && m.labels?.avatar) byName.set(resourceId(m.name), m);
    const all = await Promise.all([...byName.values()].map((m) => this.#versions(m.name!, m.labels!.avatar!)));
    return all.flat().filter((v) => v.labels.avatar && (!filter.name || v.name === filter.name));
  }

  /**
   * MergeVersionAliases moves an alias: Vertex keeps each alias on one version of a model ("an
   * alias can only be assigned to a single version, by model, at a time", model-registry/model-alias
   * docs; Airflow's set_version_as_default merges ["default"] onto another version). Should a project
   * refuse instead (ALREADY_EXISTS / FAILED_PRECONDITION), the alias is taken off its version first.
   */
  async moveAlias(name: string, alias: string, versionId: string): Promise<{ version: ModelVersion; from?: string }> {
    const from = (await this.get(name, alias))?.versionId;
    if (from === versionId) return { version: (await this.get(name, versionId))! };
    const models = await this.#v.clients.models();
    const context = errorContext(this.#v, `moving alias ${alias} of ${name} to version ${versionId}`);
    const merge = (id: string, aliases: string[]) => models.mergeVersionAliases(mergeAliasesRequest(this.#v.loc, name, id, aliases));
    let model;
    try {
      [model] = await merge(versionId, [alias]);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (!from || (code !== 6 && code !== 9)) throw mapVertexError(error, context);
      try {
        await merge(from, [`-${alias}`]);
        [model] = await merge(versionId, [alias]);
      } catch (again) {
        throw mapVertexError(again, context);
      }
    }
    return { version: this.#toVersion(model as ModelLike), ...(from ? { from } : {}) };
  }

  async planAlias(name: string, alias: string, versionId: string | undefined): Promise<PlannedRequest[]> {
    const holder = await this.get(name, alias);
    if (versionId === undefined) {
      return holder ? [planMergeAliases(this.#v.loc, name, holder.versionId, [`-${alias}`])] : [{ service: "ModelService", method: "MergeVersionAliases", request: null, note: `not needed: no version of ${name} has alias ${alias}` }];
    }
    if (holder?.versionId === versionId) return [{ service: "ModelService", method: "MergeVersionAliases", request: null, note: `not needed: ${alias} is already version ${versionId}` }];
    const note = holder ? `moves ${alias} from version ${holder.versionId}` : this.#v.offline ? "where the alias is now: not checked without credentials" : undefined;
    return [planMergeAliases(this.#v.loc, name, versionId, [alias], note)];
  }

  async removeAlias(name: string, alias: string): Promise<string | undefined> {
    const holder = await this.get(name, alias);
    if (!holder) return undefined;
    const models = await this.#v.clients.models();
    try {
      await models.mergeVersionAliases(mergeAliasesRequest(this.#v.loc, name, holder.versionId, [`-${alias}`]));
    } catch (error) {
      throw mapVertexError(error, errorContext(this.#v, `removing alias ${alias} of ${name}`));
    }
    return holder.versionId;
  }

  async get(name: string, version?: string): Promise<ModelVersion | undefined> {
    const suffix = versionSuffix(version);
    const id = suffix.slice(1);
    if (!/^\d+$/.test(id) && !ALIAS.test(id)) return undefined;
    const model = await this.#getRaw(name, suffix);
    return model ? this.#toVersion(model) : undefined;
  }
}
