// ModelService: uploadModel snapshots the artifacts (Vertex copies them), versions + aliases.
import { join } from "node:path";
import { checkLabels, invalid, labelFilter, notFound, pack, parseName, RpcError, S, timestamp, V1 } from "./common.ts";
import type { Ctx, Handler, ModelRecord } from "./types.ts";

export const modelName = (locName: string, id: string) => `${locName}/models/${id}`;

export function modelService(ctx: Ctx, unary: (method: string, handler: Handler) => unknown) {
  return {
    UploadModel: unary("UploadModel", (req) => {
      const locName = ctx.location(req.parent);
      const m = req.model;
      if (!m?.displayName) throw invalid("model.display_name is required.");
      if (!m.containerSpec?.imageUri) throw invalid("model.container_spec.image_uri is required.");
      checkLabels(m.labels);
      for (const e of m.containerSpec.env ?? []) {
        if (e.name.startsWith("AIP_")) throw invalid(`Environment variable ${e.name} is reserved: AIP_* variables are set by Vertex AI.`);
      }
      const { bucket, prefix } = ctx.parseGs(m.artifactUri || "");
      for (const alias of m.versionAliases ?? []) {
        if (!/^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$/.test(alias)) throw invalid(`Version alias "${alias}" is invalid.`);
      }
      let record: ModelRecord;
      if (req.parentModel) {
        if (req.modelId) throw invalid("model_id cannot be set together with parent_model.");
        const p = parseName(req.parentModel, "models");
        ctx.loc(p);
        const parent = ctx.models.get(p.id!);
        if (!parent) throw notFound(`Parent model ${req.parentModel} not found.`);
        for (const alias of m.versionAliases ?? []) {
          if (alias !== "default" && parent.versions.some((v) => v.resource.versionAliases.includes(alias))) {
            throw new RpcError(S.ALREADY_EXISTS, `Alias "${alias}" is already used by another version of ${req.parentModel}.`);
          }
        }
        record = parent;
      } else {
        const id = req.modelId || String(ctx.nextId());
        if (!/^[a-z][a-z0-9_-]{0,62}$/.test(id) && !/^\d+$/.test(id)) throw invalid(`model_id "${id}" is invalid.`);
        if (ctx.models.has(id)) throw new RpcError(S.ALREADY_EXISTS, `Model ${modelName(locName, id)} already exists.`);
        record = { id, createTime: timestamp(), versions: [] };
        ctx.models.set(id, record); // reserved now, visible with its first version
      }
      const versionId = String(record.versions.length + 1);
      const op = ctx.operation(modelName(locName, record.id), `${V1}.UploadModelOperationMetadata`, {});
      return ctx.run("UploadModel", op, async () => {
        // Vertex copies the artifacts: later changes in the bucket do not reach this version.
        const names = await ctx.listObjects(bucket, prefix);
        if (names.length === 0) {
          if (record.versions.length === 0) ctx.models.delete(record.id);
          throw invalid(`No files found in artifact_uri ${m.artifactUri}.`);
        }
        const snapshot = join(ctx.work, "models", record.id, versionId);
        await ctx.download(bucket, names, snapshot, prefix);
        const aliases = [...new Set<string>(m.versionAliases ?? [])];
        if (record.versions.length === 0 && !aliases.includes("default")) aliases.unshift("default");
        if (aliases.includes("default")) for (const v of record.versions) v.resource.versionAliases = v.resource.versionAliases.filter((a: string) => a !== "default");
        const now = timestamp();
        const resource = {
          ...m,
          name: modelName(locName, record.id),
          versionId,
          versionAliases: aliases,
          versionCreateTime: now,
          versionUpdateTime: now,
          createTime: record.createTime,
          updateTime: now,
          deployedModels: [],
        };
        record.versions.push({ resource, snapshot });
        return pack(`${V1}.UploadModelResponse`, { model: resource.name, modelVersionId: versionId });
      });
    }),
    GetModel: unary("GetModel", (req) => ctx.findModel(req.name).version.resource),
    ListModels: unary("ListModels", (req) => {
      const locName = ctx.location(req.parent);
      const match = labelFilter(req.filter ?? "");
      const found = [...ctx.models.values()]
        .map((m) => m.versions.find((v) => v.resource.versionAliases.includes("default"))?.resource)
        .filter((r) => r && r.name.startsWith(locName) && match(r.labels ?? {}));
      return { models: found, nextPageToken: "" };
    }),
    // An alias names one version of a model at a time and merging it onto another version moves it
    // ("aliases can be moved from one model version to another … an alias can only be assigned to a
    // single version, by model, at a time": cloud.google.com/vertex-ai/docs/model-registry/model-alias;
    // Airflow's ModelServiceHook.set_version_as_default merges ["default"] onto the new default).
    // "-alias" removes one (MergeVersionAliasesRequest.version_aliases). Unconfirmed on real Vertex:
    // removing the last "default" (refused here: a model keeps exactly one default version).
    MergeVersionAliases: unary("MergeVersionAliases", (req) => {
      const p = parseName(req.name, "models");
      if (!p.version || !/^\d+$/.test(p.version)) throw invalid(`The name must include a version id (…/models/${p.id ?? "MODEL"}@1234), got "${req.name}".`);
      const { model, version } = ctx.findModel(req.name);
      const given: string[] = req.versionAliases ?? [];
      if (given.length === 0) throw invalid("version_aliases is required.");
      // "Adding and deleting the same alias in the request … will be cancelled out."
      const aliases = given.filter((a) => !given.includes(a.startsWith("-") ? a.slice(1) : `-${a}`));
      for (const a of aliases) {
        if (!/^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$/.test(a.replace(/^-/, ""))) throw invalid(`Version alias "${a}" is invalid.`);
        if (a === "-default") throw invalid("The default alias cannot be removed: a model has exactly one default version; move it to another version instead.");
      }
      for (const a of aliases.filter((x) => !x.startsWith("-"))) {
        for (const v of model.versions) v.resource.versionAliases = v.resource.versionAliases.filter((x: string) => x !== a);
        version.resource.versionAliases.push(a);
      }
      for (const a of aliases.filter((x) => x.startsWith("-"))) version.resource.versionAliases = version.resource.versionAliases.filter((x: string) => x !== a.slice(1));
      version.resource.versionUpdateTime = timestamp();
      return version.resource;
    }),
    ListModelVersions: unary("ListModelVersions", (req) => {
      const { model } = ctx.findModel(req.name.replace(/@.*$/, ""));
      const match = labelFilter(req.filter ?? "");
      return { models: model.versions.map((v) => v.resource).filter((r) => match(r.labels ?? {})), nextPageToken: "" };
    }),
  };
}
