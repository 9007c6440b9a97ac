// EndpointService: deployModel copies the model's snapshot to a model dir and starts the serving
// container stand-in (handlers/local_server.py) with the container's AIP_* env, as the inference
// image would; serving GPUs count against a quota; a deployment in flight can be cancelled. A
// dedicated endpoint (dedicatedEndpointEnabled) gets its DNS name, served by the fake's second port.
import { spawn } from "node:child_process";
import { cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { checkLabels, checkMachine, exited, gpuOf, invalid, labelFilter, notFound, pack, parseName, repoRoot, RpcError, S, sleep, stopChild, timestamp, V1, type MachineSpec } from "./common.ts";
import type { Ctx, EndpointRecord, GpuReservation, Handler, ServerRecord, VersionRecord } from "./types.ts";

/**
 * Serving GPU quotas by accelerator: the quota id Vertex names in its error and the metric
 * (gcloud's model-garden utils: _ACCELERATOR_TYPE_TO_QUOTA_ID_MAP / _ACCELERATOR_TYPE_TP_QUOTA_METRIC_MAP).
 */
const SERVING_QUOTA: Record<string, { id: string; metric: string }> = {
  NVIDIA_L4: { id: "CustomModelServingL4GPUsPerProjectPerRegion", metric: "custom_model_serving_nvidia_l4_gpus" },
  NVIDIA_TESLA_T4: { id: "CustomModelServingT4GPUsPerProjectPerRegion", metric: "custom_model_serving_nvidia_t4_gpus" },
};

/** GPUs a deployment holds: Vertex charges serving quota at max replicas × accelerators per replica. */
function gpusOf(resources: { machineSpec?: MachineSpec; minReplicaCount?: number | string; maxReplicaCount?: number | string } | undefined): number {
  if (!gpuOf(resources?.machineSpec)) return 0;
  const replicas = Math.max(Number(resources!.minReplicaCount ?? 1), Number(resources!.maxReplicaCount ?? 0));
  return replicas * Number(resources!.machineSpec!.acceleratorCount ?? 1);
}

export function endpointService(ctx: Ctx, unary: (method: string, handler: Handler) => unknown) {
  /** Serving GPUs of one type held in a region: deployed models plus deployments in flight. */
  function heldGpus(region: string, gpu: string): number {
    let held = 0;
    for (const ep of ctx.endpoints.values()) {
      if (parseName(ep.resource.name).region !== region) continue;
      for (const d of ep.resource.deployedModels) if (gpuOf(d.dedicatedResources?.machineSpec) === gpu) held += gpusOf(d.dedicatedResources);
    }
    for (const r of ctx.reservations) if (r.region === region && r.gpu === gpu) held += r.count;
    return held;
  }

  function checkQuota(region: string, gpu: string, count: number): void {
    const quota = ctx.settings.servingGpuQuota;
    if (quota === undefined || count === 0) return;
    const total = heldGpus(region, gpu) + count;
    if (total <= quota) return;
    const known = SERVING_QUOTA[gpu] ?? { id: `CustomModelServing${gpu}GPUsPerProjectPerRegion`, metric: `custom_model_serving_${gpu.toLowerCase()}_gpus` };
    // Real wording, from a failed deploy of 8 L4 (g2-standard-96): "429 The following quotas are
    // exceeded: CustomModelServingL4GPUsPerProjectPerRegion 8" (HTTP 429 = RESOURCE_EXHAUSTED); the
    // number is read here as the GPUs the project would hold. ErrorInfo as google.api.ErrorReason
    // RESOURCE_QUOTA_EXCEEDED describes it (consumer, service, quota_metric, quota_limit).
    throw new RpcError(S.RESOURCE_EXHAUSTED, `The following quotas are exceeded: ${known.id} ${total}`, {
      reason: "RESOURCE_QUOTA_EXCEEDED",
      domain: "googleapis.com",
      metadata: {
        consumer: `projects/${ctx.projectNumber}`,
        service: "aiplatform.googleapis.com",
        quota_metric: `aiplatform.googleapis.com/${known.metric}`,
        quota_limit: known.id,
        quota_location: region,
        quota_limit_value: String(quota),
      },
    });
  }

  async function startServer(ep: EndpointRecord, dmId: string, version: VersionRecord, machineSpec: MachineSpec, signal: AbortSignal, serviceAccount?: string): Promise<ServerRecord> {
    const modelDir = join(ctx.work, `serve-${dmId}`, "model");
    // What the image's entrypoint does: copy AIP_STORAGE_URI/* to the model dir.
    cpSync(version.snapshot, modelDir, { recursive: true });
    const env: Record<string, string> = {
      PATH: `${dirname(ctx.python)}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      HOME: process.env.HOME ?? tmpdir(),
      PYTHONUNBUFFERED: "1",
      ...Object.fromEntries((version.resource.containerSpec.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value])),
      ...ctx.options.env,
      // The bucket is readable only under a user-managed serviceAccount: Vertex's default prediction
      // identity may read the model's own artifacts (AIP_STORAGE_URI) and nothing else (docs:
      // general/custom-service-account, "Prediction container"). Without one, the container's
      // Cloud Storage client finds no emulator and no credentials, as a real one finds no access.
      ...(serviceAccount ? { AVATAR_GCS_ENDPOINT: ctx.options.gcsEndpoint } : {}),
    };
    const sources = ["HF_MODEL_ID", "HF_MODEL_DIR"].filter((k) => env[k]);
    const log: string[] = [];
    if (sources.length) {
      // huggingface-pytorch-inference …transformers.4-48 entrypoint.sh: exactly one source, else exit 1.
      log.push("ERROR: Exactly one of HF_MODEL_ID, HF_MODEL_DIR, or AIP_STORAGE_URI must be provided.");
      throw Object.assign(new RpcError(S.FAILED_PRECONDITION, "Model server exited unexpectedly. Model server logs can be found at Cloud Logging."), { log });
    }
    const health = `/v1/endpoints/${ep.id}/deployedModels/${dmId}`;
    const predictRoute = `${health}:predict`;
    Object.assign(env, {
      AIP_MODE: "PREDICTION",
      AIP_MODE_VERSION: "1.0.0",
      AIP_HTTP_PORT: "0", // the real container gets 8080; here any free port (read from the ready line)
      AIP_HEALTH_ROUTE: health,
      AIP_PREDICT_ROUTE: predictRoute,
      AIP_STORAGE_URI: version.resource.artifactUri,
      AIP_DEPLOYED_MODEL_ID: dmId,
      AIP_ENDPOINT_ID: ep.id,
      AIP_MODEL_NAME: ep.id,
      AIP_VERSION_NAME: dmId,
      AIP_FRAMEWORK: "CUSTOM_CONTAINER",
      AIP_MACHINE_TYPE: machineSpec.machineType,
      AIP_ACCELERATOR_TYPE: machineSpec.acceleratorType,
      AIP_PROJECT_NUMBER: ctx.projectNumber,
    });
    const script = ctx.options.serverScript ?? join(repoRoot, "handlers", "local_server.py");
    const child = spawn(ctx.python, [script, "--model-dir", modelDir], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let url: string | undefined;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        log.push(line);
        url ??= /^ready url=(\S+)/.exec(line)?.[1];
      });
    }
    const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const deadline = Date.now() + 1000 * Number(version.resource.containerSpec.deploymentTimeout?.seconds || 600);
    while (Date.now() < deadline && !ctx.isClosed() && !signal.aborted) {
      if (exited(child)) {
        // Vertex: "Model server exited unexpectedly. Model server logs can be found at …" (python-aiplatform #4559).
        throw Object.assign(new RpcError(S.FAILED_PRECONDITION, `Model server exited unexpectedly (fake: ${log.at(-1) ?? "no output"}).`), { log });
      }
      if (url) {
        try {
          const r = await fetch(`${url}${health}`);
          if (r.status === 200) return { child, url, predictRoute, log };
        } catch {
          // not yet
        }
      }
      await Promise.race([done, sleep(100)]);
    }
    await stopChild(child);
    if (signal.aborted) throw Object.assign(signal.reason as Error, { log });
    // Vertex: "Model server never became ready. Please validate that your model file or container
    // configuration are valid. …" (vertex-ai-samples #3485).
    throw Object.assign(new RpcError(S.DEADLINE_EXCEEDED, "Model server never became ready within the deployment timeout."), { log });
  }

  return {
    CreateEndpoint: unary("CreateEndpoint", (req) => {
      const locName = ctx.location(req.parent);
      if (!req.endpoint?.displayName) throw invalid("endpoint.display_name is required.");
      checkLabels(req.endpoint.labels);
      const id = req.endpointId || String(ctx.nextId());
      if (!/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(id) && !/^[1-9]\d{0,8}$/.test(id)) throw invalid(`endpoint_id "${id}" is invalid.`);
      if (ctx.endpoints.has(id)) throw new RpcError(S.ALREADY_EXISTS, `Endpoint ${locName}/endpoints/${id} already exists.`);
      const timeout = Number(req.endpoint.clientConnectionConfig?.inferenceTimeout?.seconds ?? 0);
      // Docs ("Choose an endpoint type"): a dedicated endpoint's inference timeout goes up to 3600 s. The wording of the refusal is the fake's.
      if (timeout < 0 || timeout > 3600) throw invalid(`fake: client_connection_config.inference_timeout must be at most 3600s, got ${timeout}s.`);
      const resource = {
        ...req.endpoint,
        name: `${locName}/endpoints/${id}`,
        deployedModels: [],
        trafficSplit: {},
        createTime: timestamp(),
        updateTime: timestamp(),
        // Output only. The form Vertex gives it: {endpoint_id}.{region}-{project number}.prediction.vertexai.goog
        // (Endpoint proto comment; used as a bare host in https://{dns}/v1/… by the Python SDK and samples).
        dedicatedEndpointDns: req.endpoint.dedicatedEndpointEnabled ? `${id}.${parseName(locName).region}-${ctx.projectNumber}.prediction.vertexai.goog` : "",
      };
      const op = ctx.operation(resource.name, `${V1}.CreateEndpointOperationMetadata`, {});
      return ctx.run("CreateEndpoint", op, async () => {
        ctx.endpoints.set(id, { id, resource, servers: new Map() });
        return pack(`${V1}.Endpoint`, resource);
      });
    }),
    GetEndpoint: unary("GetEndpoint", (req) => ctx.findEndpoint(req.name).resource),
    ListEndpoints: unary("ListEndpoints", (req) => {
      const locName = ctx.location(req.parent);
      const match = labelFilter(req.filter ?? "");
      return { endpoints: [...ctx.endpoints.values()].map((e) => e.resource).filter((r) => r.name.startsWith(locName) && match(r.labels ?? {})), nextPageToken: "" };
    }),
    DeployModel: unary("DeployModel", (req) => {
      const ep = ctx.findEndpoint(req.endpoint);
      const dm = req.deployedModel;
      if (!dm?.model) throw invalid("deployed_model.model is required.");
      const { version } = ctx.findModel(dm.model);
      const resources = dm.dedicatedResources;
      if (!resources) throw invalid(`Model ${dm.model} does not support automatic resources: deployed_model.dedicated_resources is required.`);
      checkMachine(resources.machineSpec);
      if (Number(resources.minReplicaCount) < 1) throw invalid("dedicated_resources.min_replica_count must be ≥ 1.");
      if (Number(resources.maxReplicaCount) !== 0 && Number(resources.maxReplicaCount) < Number(resources.minReplicaCount)) throw invalid("dedicated_resources.max_replica_count must be ≥ min_replica_count.");
      const split: Record<string, number> = { ...(req.trafficSplit ?? {}) };
      const existing = ep.resource.deployedModels.map((d: any) => d.id);
      if (Object.keys(split).length === 0) {
        if (existing.length) throw invalid("traffic_split is required when the endpoint already has deployed models.");
        split["0"] = 100;
      }
      for (const key of Object.keys(split)) if (key !== "0" && !existing.includes(key)) throw invalid(`traffic_split names unknown deployed model ${key}.`);
      if (Object.values(split).reduce((a, b) => a + Number(b), 0) !== 100) throw invalid("traffic_split must add up to 100.");
      // Quota is charged for what is deployed and what is being deployed: a new version next to the
      // one still serving needs twice the GPUs (research: vertex-real-behaviour.md, "Redeploy").
      const region = parseName(ep.resource.name).region;
      const gpu = gpuOf(resources.machineSpec);
      const count = gpusOf(resources);
      if (gpu) checkQuota(region, gpu, count);
      const dmId = String(4_000_000_000 + ctx.nextId());
      const op = ctx.operation(ep.resource.name, `${V1}.DeployModelOperationMetadata`, { deploymentStage: "STARTING_DEPLOYMENT" }, { cancellable: true });
      const signal = op.abort.signal;
      const delay = ctx.settings.deployDelayMs;
      const stage = async (s: string, ms = 150) => {
        op.metadata.deploymentStage = s;
        op.metadata.genericMetadata.updateTime = timestamp();
        await sleep(ms, signal);
      };
      return ctx.run("DeployModel", op, async () => {
        // Runs synchronously up to the first await: the GPUs are held from the RPC on.
        const reservation: GpuReservation | undefined = gpu ? { region, gpu, count } : undefined;
        if (reservation) ctx.reservations.add(reservation);
        let srv: ServerRecord | undefined;
        try {
          await stage("STARTING_DEPLOYMENT");
          await stage("PREPARING_MODEL");
          // deployDelayMs: the time Vertex spends finding and starting VMs (minutes for a GPU).
          await stage("CREATING_SERVING_CLUSTER", 150 + Math.floor(delay / 2));
          if (delay > 0) await stage("ADDING_NODES_TO_CLUSTER", delay - Math.floor(delay / 2));
          await stage("GETTING_CONTAINER_IMAGE");
          op.metadata.deploymentStage = "STARTING_MODEL_SERVER";
          try {
            srv = await startServer(ep, dmId, version, resources.machineSpec, signal, dm.serviceAccount || undefined);
          } catch (error) {
            ctx.serverLogs.set(dmId, (error as { log?: string[] }).log ?? []);
            throw error;
          }
          ctx.serverLogs.set(dmId, srv.log);
          await stage("FINISHING_UP");
          // Only now does the endpoint list the model (a deployment in flight shows only in its operation).
          ep.servers.set(dmId, srv);
          const deployed = { ...dm, id: dmId, model: version.resource.name, modelVersionId: version.resource.versionId, createTime: timestamp() };
          ep.resource.deployedModels.push(deployed);
          const next: Record<string, number> = {};
          for (const [k, v] of Object.entries(split)) next[k === "0" ? dmId : k] = Number(v);
          for (const id of existing) next[id] ??= 0;
          ep.resource.trafficSplit = next;
          ep.resource.updateTime = timestamp();
          version.resource.deployedModels.push({ endpoint: ep.resource.name, deployedModelId: dmId });
          op.metadata.deploymentStage = "SUCCESSFULLY_DEPLOYED";
          return pack(`${V1}.DeployModelResponse`, { deployedModel: deployed });
        } catch (error) {
          await stopChild(srv?.child);
          op.metadata.deploymentStage = signal.aborted ? "DEPLOYMENT_TERMINATED" : "FAILED_TO_DEPLOY";
          throw signal.aborted ? signal.reason : error;
        } finally {
          if (reservation) ctx.reservations.delete(reservation);
        }
      });
    }),
    UndeployModel: unary("UndeployModel", (req) => {
      const ep = ctx.findEndpoint(req.endpoint);
      const id = req.deployedModelId;
      const dm = ep.resource.deployedModels.find((d: any) => d.id === id);
      if (!dm) throw notFound(`Deployed model ${id} not found on ${req.endpoint}.`);
      const others = ep.resource.deployedModels.filter((d: any) => d.id !== id).map((d: any) => d.id);
      const given: Record<string, number> = { ...(req.trafficSplit ?? {}) };
      let next: Record<string, number>;
      if (others.length === 0) next = {};
      else if (Object.keys(given).length) {
        if ((given[id] ?? 0) !== 0) throw invalid(`traffic_split still sends traffic to ${id}, which is being undeployed.`);
        if (Object.values(given).reduce((a, b) => a + Number(b), 0) !== 100) throw invalid("traffic_split must add up to 100.");
        next = Object.fromEntries(others.map((o: string) => [o, Number(given[o] ?? 0)]));
      } else {
        if ((ep.resource.trafficSplit[id] ?? 0) > 0) throw new RpcError(S.FAILED_PRECONDITION, `Deployed model ${id} still has ${ep.resource.trafficSplit[id]}% of the traffic; pass a traffic_split that moves it.`);
        next = Object.fromEntries(others.map((o: string) => [o, Number(ep.resource.trafficSplit[o] ?? 0)]));
      }
      const op = ctx.operation(ep.resource.name, `${V1}.UndeployModelOperationMetadata`, {});
      return ctx.run("UndeployModel", op, async () => {
        // The GPUs are free once the model is gone from the endpoint.
        await stopChild(ep.servers.get(id)?.child);
        ep.servers.delete(id);
        ep.resource.deployedModels = ep.resource.deployedModels.filter((d: any) => d.id !== id);
        ep.resource.trafficSplit = next;
        for (const m of ctx.models.values()) for (const v of m.versions) v.resource.deployedModels = v.resource.deployedModels.filter((r: any) => r.deployedModelId !== id);
        return pack(`${V1}.UndeployModelResponse`, {});
      });
    }),
    DeleteEndpoint: unary("DeleteEndpoint", (req) => {
      const ep = ctx.findEndpoint(req.name);
      if (ep.resource.deployedModels.length) throw new RpcError(S.FAILED_PRECONDITION, `Endpoint ${req.name} still has deployed models; undeploy them first.`);
      const op = ctx.operation(ep.resource.name, `${V1}.DeleteOperationMetadata`, {});
      return ctx.run("DeleteEndpoint", op, async () => {
        ctx.endpoints.delete(ep.id);
        return pack("google.protobuf.Empty", {});
      });
    }),
  };
}
