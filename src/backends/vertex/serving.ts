// Serving on Vertex: one Endpoint per avatar (id avatar-<name>), the chosen model version deployed
// on the GPU preset with all traffic; predictions through predict.ts; down = undeploy everything
// and delete the endpoint, which stops the billing. Endpoints are dedicated unless asked otherwise:
// predictions then go to the endpoint's own DNS name (core/endpoint-types.ts).
import { endpointTypeMismatch, endpointTypeOf, predictUrl } from "../../core/endpoint-types.ts";
import { AvatarError } from "../../core/errors.ts";
import {
  avatarFilter, avatarOfResourceId, deploymentStageText, endpointName, gpuOfAccelerator, isoTime, locationName, resourceId,
} from "../../core/vertex-names.ts";
import {
  createEndpointRequest, deployModelRequest, runIdOfDeployedModel, undeployAllRequests, type PlannedRequest,
} from "../../core/vertex-specs.ts";
import { STUDIO_LABEL } from "../../core/studio.ts";
import type { DeploySpec, EndpointInfo, PredictResponse, ServingService } from "../backend.ts";
import { errorContext, isNotFound, readRetrying, type VertexContext } from "./context.ts";
import { mapVertexError } from "./errors.ts";
import { waitOperation } from "./lro.ts";
import { PendingDeploys, type PendingState } from "./pending-deploy.ts";
import { predictOn, routeOf, type Route } from "./predict.ts";

/** A studio's endpoint carries its avatar-studio label too (core/studio.ts). */
const studioLabelOf = (labels: Record<string, string>): Record<string, string> => (labels[STUDIO_LABEL] ? { [STUDIO_LABEL]: labels[STUDIO_LABEL] } : {});

interface DeployedModelLike {
  id?: string | null;
  model?: string | null;
  modelVersionId?: string | null;
  displayName?: string | null;
  dedicatedResources?: { machineSpec?: { acceleratorType?: string | number | null } | null } | null;
  createTime?: { seconds?: string | number | null; nanos?: number | null } | null;
}

interface EndpointLike {
  name?: string | null;
  labels?: Record<string, string> | null;
  deployedModels?: DeployedModelLike[] | null;
  trafficSplit?: Record<string, number> | null;
  createTime?: { seconds?: string | number | null; nanos?: number | null } | null;
  dedicatedEndpointEnabled?: boolean | null;
  dedicatedEndpointDns?: string | null;
  clientConnectionConfig?: { inferenceTimeout?: { seconds?: string | number | null } | null } | null;
}

interface DeployOptions {
  signal?: AbortSignal;
  onStage?: (stage: string) => void;
  confirmReplace?: (running: string) => Promise<boolean>;
}

export class VertexServing implements ServingService {
  readonly #v: VertexContext;
  readonly #pending: PendingDeploys;
  /** Routes of the endpoints read by this process (generate reads the endpoint once, then predicts). */
  readonly #routes = new Map<string, Route>();

  constructor(vctx: VertexContext) {
    this.#v = vctx;
    this.#pending = new PendingDeploys(vctx, () => vctx.clients.endpoints());
  }

  async #getRaw(name: string): Promise<EndpointLike | undefined> {
    const endpoints = await this.#v.clients.endpoints();
    try {
      const [endpoint] = await readRetrying(this.#v, `reading the endpoint of ${name}`, () => endpoints.getEndpoint({ name: endpointName(this.#v.loc, name) }));
      this.#routes.set(name, routeOf(endpoint as EndpointLike));
      return endpoint as EndpointLike;
    } catch (error) {
      if (isNotFound(error)) {
        this.#routes.delete(name);
        return undefined;
      }
      throw mapVertexError(error, errorContext(this.#v, `reading the endpoint of ${name}`));
    }
  }

  /** The deployed model that takes the traffic. */
  #primary(ep: EndpointLike): DeployedModelLike | undefined {
    const split = ep.trafficSplit ?? {};
    return [...(ep.deployedModels ?? [])].sort((a, b) => (split[b.id ?? ""] ?? 0) - (split[a.id ?? ""] ?? 0))[0];
  }

  #toInfo(ep: EndpointLike): EndpointInfo {
    const id = resourceId(ep.name ?? "");
    const labels = { ...(ep.labels ?? {}) };
    const primary = this.#primary(ep);
    const endpointType = endpointTypeOf(ep);
    const info: EndpointInfo = {
      id,
      name: labels.avatar ?? avatarOfResourceId(id) ?? id,
      // Deployed models appear on the endpoint once their deployment finished.
      state: primary ? "ready" : "stopped",
      labels,
      endpointType,
      createdAt: isoTime(ep.createTime) ?? "",
    };
    if (primary) {
      info.modelVersion = String(primary.modelVersionId ?? "");
      const runId = runIdOfDeployedModel(primary.displayName);
      if (runId) info.runId = runId;
      const gpu = gpuOfAccelerator(primary.dedicatedResources?.machineSpec?.acceleratorType);
      if (gpu) info.gpu = gpu;
      const deployedAt = isoTime(primary.createTime); // billing starts with the deployed model, not the endpoint
      if (deployedAt) info.deployedAt = deployedAt;
      info.url = predictUrl(ep.name ?? "", endpointType, this.#v.loc.region, ep.dedicatedEndpointDns);
    }
    return info;
  }

  /** An endpoint keeps the type it was created with: a deploy asking for the other one stops here. */
  #checkType(ep: EndpointLike | undefined, spec: DeploySpec): void {
    const wanted = spec.endpointType ?? "dedicated";
    if (ep && endpointTypeOf(ep) !== wanted) throw endpointTypeMismatch(spec.name, endpointTypeOf(ep), wanted);
  }

  #serves(ep: EndpointLike | undefined, spec: DeploySpec): boolean {
    const primary = ep && this.#primary(ep);
    return Boolean(
      primary &&
        resourceId(primary.model ?? "") === spec.version.modelId &&
        String(primary.modelVersionId) === spec.version.versionId &&
        gpuOfAccelerator(primary.dedicatedResources?.machineSpec?.acceleratorType) === spec.gpu,
    );
  }

  #deployRequest(spec: DeploySpec) {
    return deployModelRequest(this.#v.loc, {
      name: spec.name,
      versionId: spec.version.versionId,
      runId: spec.version.runId,
      gpu: spec.gpu,
      minReplicas: spec.minReplicas,
      maxReplicas: spec.maxReplicas,
      ...(spec.serviceAccount ? { serviceAccount: spec.serviceAccount } : {}),
    });
  }

  async plan(spec: DeploySpec): Promise<PlannedRequest[]> {
    const pending = await this.#pending.get(spec.name);
    const follow: PlannedRequest[] =
      pending && !pending.done ? [{ service: "Operations", method: "GetOperation", request: { name: pending.operation }, note: `follow the deployment of v${pending.versionId} in flight first` }] : [];
    const ep = await this.#getRaw(spec.name);
    this.#checkType(ep, spec);
    if (this.#serves(ep, spec)) return [...follow, { service: "EndpointService", method: "DeployModel", request: null, note: `not needed: version ${spec.version.versionId} is already serving` }];
    const planned: PlannedRequest[] = [...follow];
    const create = createEndpointRequest(this.#v.loc, spec.name, spec.endpointType ?? "dedicated", studioLabelOf(spec.labels));
    if (!ep) planned.push({ service: "EndpointService", method: "CreateEndpoint", request: create, ...(this.#v.offline ? { note: "unless it exists: not checked without credentials" } : {}) });
    planned.push({ service: "EndpointService", method: "DeployModel", request: this.#deployRequest(spec) });
    for (const old of ep?.deployedModels ?? []) {
      planned.push({ service: "EndpointService", method: "UndeployModel", request: { endpoint: endpointName(this.#v.loc, spec.name), deployedModelId: old.id }, note: "the previous version, after the new one serves" });
    }
    return planned;
  }

  async deploy(spec: DeploySpec, options: DeployOptions = {}): Promise<{ endpoint: EndpointInfo; reused: boolean }> {
    // A deployment still in flight (an earlier `avatar deploy` was interrupted): follow it first.
    const pending = await this.#pending.get(spec.name);
    if (pending && !pending.done) {
      options.onStage?.(`following the deployment of v${pending.versionId} started at ${pending.startedAt}`);
      const failed = await this.#pending.follow(spec.name, pending, options);
      if (failed) options.onStage?.(`that deployment failed: ${failed}`);
    }
    let ep = await this.#getRaw(spec.name);
    this.#checkType(ep, spec);
    if (this.#serves(ep, spec)) return { endpoint: this.#toInfo(ep!), reused: true };
    ep ??= await this.#createEndpoint(spec, options);
    const previous = (ep?.deployedModels ?? []).map((m) => ({ id: String(m.id), version: String(m.modelVersionId ?? "?") }));
    try {
      await this.#deployOnce(spec, options);
    } catch (error) {
      // Quota for one GPU: the new version cannot start beside the old one. Replacing means a gap.
      if (!(error instanceof AvatarError) || error.code !== "QUOTA" || previous.length === 0) throw error;
      const versions = previous.map((p) => `v${p.version}`).join(", ");
      if (!(await options.confirmReplace?.(versions))) {
        throw new AvatarError("QUOTA", `Vertex AI refused to start ${spec.name} v${spec.version.versionId} beside ${versions}: the serving GPU quota is used up (a redeploy holds two GPUs until the new version serves).`, {
          cause: error,
          hint: `Pass --replace to undeploy ${versions} first (${spec.name} does not answer for the minutes the new version takes to start), or raise the quota: ${error.hint ?? ""}`.trim(),
        });
      }
      options.onStage?.(`undeploying ${versions} first (quota allows one GPU)`);
      for (const request of this.#undeployRequests(ep!)) await this.#undeploy(spec.name, request);
      await this.#deployOnce(spec, options);
      previous.length = 0;
    }
    // The new version has all the traffic now: the old ones only hold GPUs.
    if (previous.length) {
      options.onStage?.("undeploying the previous version");
      for (const { id } of previous) await this.#undeploy(spec.name, { endpoint: endpointName(this.#v.loc, spec.name), deployedModelId: id });
    }
    const now = await this.#getRaw(spec.name);
    if (!now) throw new AvatarError("REMOTE_FAILED", `The endpoint of ${spec.name} disappeared during the deployment.`, { hint: `Run \`avatar deploy ${spec.name}\` again.` });
    return { endpoint: this.#toInfo(now), reused: false };
  }

  #interrupted(name: string) {
    return {
      interrupted: `Interrupted; the deployment of ${name} continues on Vertex AI and bills once it serves.`,
      interruptedHint: `\`avatar status ${name}\` shows it; \`avatar down ${name}\` cancels it; \`avatar deploy ${name}\` follows it.`,
    };
  }

  async #createEndpoint(spec: DeploySpec, options: DeployOptions): Promise<EndpointLike | undefined> {
    const endpoints = await this.#v.clients.endpoints();
    options.onStage?.("creating the endpoint");
    const context = errorContext(this.#v, `creating the endpoint of ${spec.name}`, { kind: "serving", gpu: spec.gpu });
    try {
      const [op] = await endpoints.createEndpoint(createEndpointRequest(this.#v.loc, spec.name, spec.endpointType ?? "dedicated", studioLabelOf(spec.labels)));
      return (await waitOperation(op, (n) => endpoints.checkCreateEndpointProgress(n), {
        intervalMs: this.#v.poll.operationMs,
        retry: this.#v.retry,
        signal: options.signal,
        context,
        ...this.#interrupted(spec.name),
      })) as EndpointLike;
    } catch (error) {
      // Created meanwhile by another run: use it.
      if ((error as { code?: unknown }).code !== 6) throw error instanceof AvatarError ? error : mapVertexError(error, context);
      return this.#getRaw(spec.name);
    }
  }

  /** One DeployModel, recorded in the bucket while it runs (an interrupt leaves the record behind). */
  async #deployOnce(spec: DeploySpec, options: DeployOptions): Promise<void> {
    const endpoints = await this.#v.clients.endpoints();
    const context = errorContext(this.#v, `deploying ${spec.name} v${spec.version.versionId}`, { kind: "serving", gpu: spec.gpu });
    let op;
    try {
      [op] = await endpoints.deployModel(this.#deployRequest(spec));
    } catch (error) {
      throw mapVertexError(error, context);
    }
    if (op.name) {
      await this.#pending.record(spec.name, { operation: op.name, versionId: spec.version.versionId, runId: spec.version.runId, gpu: spec.gpu, startedAt: new Date().toISOString() });
    }
    let stage: string | undefined;
    try {
      await waitOperation(op, (n) => endpoints.checkDeployModelProgress(n), {
        intervalMs: this.#v.poll.operationMs,
        retry: this.#v.retry,
        signal: options.signal,
        context,
        ...this.#interrupted(spec.name),
        onMetadata: (metadata) => {
          const text = deploymentStageText((metadata as { deploymentStage?: number | string | null }).deploymentStage);
          if (text && text !== stage) {
            stage = text;
            options.onStage?.(text);
          }
        },
      });
    } catch (error) {
      if (!(error instanceof AvatarError && error.code === "INTERRUPTED")) await this.#pending.clear(spec.name);
      throw error;
    }
    await this.#pending.clear(spec.name);
  }

  async #undeploy(name: string, request: { endpoint: string; deployedModelId: string; trafficSplit?: Record<string, number> }): Promise<void> {
    const endpoints = await this.#v.clients.endpoints();
    const context = errorContext(this.#v, `undeploying model ${request.deployedModelId} of ${name}`, { kind: "serving" });
    try {
      const [op] = await endpoints.undeployModel(request);
      await waitOperation(op, (n) => endpoints.checkUndeployModelProgress(n), {
        intervalMs: this.#v.poll.operationMs,
        retry: this.#v.retry,
        context,
        interrupted: `Interrupted while undeploying from ${name}; run \`avatar down ${name}\` again.`,
      });
    } catch (error) {
      if (isNotFound(error)) return;
      throw error instanceof AvatarError ? error : mapVertexError(error, context);
    }
  }

  async list(filter: { name?: string } = {}): Promise<EndpointInfo[]> {
    const endpoints = await this.#v.clients.endpoints();
    let raw: EndpointLike[];
    try {
      [raw] = (await readRetrying(this.#v, "listing endpoints", () => endpoints.listEndpoints({ parent: locationName(this.#v.loc), filter: avatarFilter(filter.name) }))) as unknown as [EndpointLike[]];
    } catch (error) {
      throw mapVertexError(error, errorContext(this.#v, "listing endpoints"));
    }
    const mine = raw.filter((e) => e.labels?.avatar && (!filter.name || e.labels.avatar === filter.name)).map((e) => this.#toInfo(e));
    return Promise.all(mine.map(async (info) => this.#withPending(info, await this.#pending.get(info.name))));
  }

  async get(name: string): Promise<EndpointInfo | undefined> {
    const ep = await this.#getRaw(name);
    return ep ? this.#withPending(this.#toInfo(ep), await this.#pending.get(name)) : undefined;
  }

  /** A deployment in flight shows as `deploying`, with its version and stage. */
  #withPending(info: EndpointInfo, pending: PendingState | undefined): EndpointInfo {
    if (!pending || pending.done) return info;
    return { ...info, state: "deploying", deploying: { versionId: pending.versionId, startedAt: pending.startedAt, operation: pending.operation, ...(pending.stage ? { stage: pending.stage } : {}) } };
  }

  /** The endpoint's route, read once per process (NOT_FOUND when the avatar has no endpoint). */
  async #route(name: string): Promise<Route> {
    let route = this.#routes.get(name);
    // A dedicated endpoint gets its DNS name from Vertex after it is created: read it again then.
    if (!route || (route.type === "dedicated" && !route.host)) {
      await this.#getRaw(name);
      route = this.#routes.get(name);
    }
    if (!route) throw new AvatarError("NOT_FOUND", `${name} is not deployed.`, { hint: `Run \`avatar deploy ${name}\` first.` });
    if (route.type === "dedicated" && !route.host) {
      throw new AvatarError("REMOTE_FAILED", `${name}'s dedicated endpoint has no DNS name yet.`, { hint: "Vertex assigns it shortly after creating the endpoint; try again in a minute (`avatar status` shows the URL)." });
    }
    return route;
  }

  async predict(name: string, body: unknown, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<PredictResponse> {
    return predictOn(this.#v, { name, route: await this.#route(name) }, body, options);
  }

  #undeployRequests(ep: EndpointLike) {
    const split = ep.trafficSplit ?? {};
    return undeployAllRequests(ep.name ?? "", (ep.deployedModels ?? []).map((m) => ({ id: String(m.id), traffic: split[String(m.id)] ?? 0 })));
  }

  async planDown(name: string): Promise<PlannedRequest[]> {
    const pending = await this.#pending.get(name);
    const cancel: PlannedRequest[] =
      pending && !pending.done ? [{ service: "Operations", method: "CancelOperation", request: { name: pending.operation }, note: `the deployment of v${pending.versionId} in flight, then wait for it to end` }] : [];
    const ep = await this.#getRaw(name);
    if (!ep && this.#v.offline) {
      const endpoint = endpointName(this.#v.loc, name);
      return [
        { service: "EndpointService", method: "UndeployModel", request: { endpoint, deployedModelId: "<each deployed model>" }, note: "the deployed models are not listed without credentials" },
        { service: "EndpointService", method: "DeleteEndpoint", request: { name: endpoint } },
      ];
    }
    if (!ep) return cancel;
    return [
      ...cancel,
      ...this.#undeployRequests(ep).map((request) => ({ service: "EndpointService", method: "UndeployModel", request })),
      { service: "EndpointService", method: "DeleteEndpoint", request: { name: ep.name } },
    ];
  }

  async down(name: string, options: { signal?: AbortSignal; onStage?: (stage: string) => void } = {}): Promise<boolean> {
    // A deployment in flight would otherwise land after the endpoint is emptied and bill on.
    const pending = await this.#pending.get(name);
    if (pending && !pending.done) {
      options.onStage?.(`cancelling the deployment of v${pending.versionId} in flight`);
      await this.#pending.cancel(pending);
      await this.#pending.follow(name, pending, options);
    }
    const ep = await this.#getRaw(name);
    if (!ep) return Boolean(pending);
    for (const request of this.#undeployRequests(ep)) await this.#undeploy(name, request);
    const endpoints = await this.#v.clients.endpoints();
    const context = errorContext(this.#v, `deleting the endpoint of ${name}`, { kind: "serving" });
    try {
      const [op] = await endpoints.deleteEndpoint({ name: ep.name! });
      await waitOperation(op, (n) => endpoints.checkDeleteEndpointProgress(n), {
        intervalMs: this.#v.poll.operationMs,
        retry: this.#v.retry,
        context,
        interrupted: `Interrupted while deleting the endpoint of ${name}; run \`avatar down ${name}\` again.`,
      });
    } catch (error) {
      if (!isNotFound(error)) throw error instanceof AvatarError ? error : mapVertexError(error, context);
    }
    return true;
  }

  async logs(name: string, options: { onLine: (line: string) => void; tail?: number }): Promise<void> {
    const ep = await this.#getRaw(name);
    if (!ep) throw new AvatarError("NOT_FOUND", `${name} has no endpoint on Vertex AI.`, { hint: `Run \`avatar deploy ${name}\`.` });
    const info = this.#toInfo(ep);
    const { project } = this.#v.loc;
    const lines = [
      `endpoint  ${ep.name} (${info.state}${info.modelVersion ? `, version ${info.modelVersion}` : ""})`,
      "The serving container's logs are in Cloud Logging (avatar does not download them). Read them with:",
      `  gcloud logging read 'resource.type="aiplatform.googleapis.com/Endpoint" AND resource.labels.endpoint_id="${info.id}"' --project=${project} --limit=200`,
      `  https://console.cloud.google.com/vertex-ai/online-prediction/endpoints?project=${project}`,
    ];
    for (const line of options.tail ? lines.slice(-options.tail) : lines) options.onLine(line);
  }
}
