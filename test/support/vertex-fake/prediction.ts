// PredictionService.predict: instances/parameters → JSON → the serving container → predictions as
// Values, with the answers real Vertex gives when the container or the request is not fine. Served
// twice: on the shared API host for shared endpoints, and on the host playing dedicated endpoints'
// DNS names for dedicated ones, each with its payload and time limits.
import { fromValue, RpcError, S, toValue } from "./common.ts";
import type { Ctx, EndpointRecord, FakeHost, Handler, PredictRecord } from "./types.ts";

/**
 * The shared public endpoint's request limit. Vertex answers FAILED_PRECONDITION "The request size
 * (24724085 bytes) exceeds 1.500MB limit." (seen verbatim in public code handling it, e.g. a
 * `google.api_core.exceptions.FailedPrecondition: 400 The request size (…) exceeds 1.500MB limit.`).
 * Whether "MB" means 10^6 or 2^20 bytes is not known: the fake takes the stricter 1 500 000.
 */
export const PREDICT_REQUEST_LIMIT = 1_500_000;

/** A dedicated endpoint's payload limit, 10 MB (docs "Choose an endpoint type"), read as 10^7 bytes. */
export const DEDICATED_PAYLOAD_LIMIT = 10_000_000;

/** The header Vertex requires on gRPC calls to a dedicated endpoint (docs "Get online inferences"). */
const ENDPOINT_ID_HEADER = "x-vertex-ai-endpoint-id";

/**
 * Whether this call came the way the endpoint's type requires, or why not.
 * - A dedicated endpoint asked on the shared host: real Vertex answers 400 FAILED_PRECONDITION "This
 *   endpoint is a dedicated endpoint via CloudESF and cannot be accessed through the Vertex AI API.
 *   Please access the endpoint using its dedicated dns name '<endpoint_id>.<region>-<project
 *   number>.prediction.vertexai.goog'" (quoted in a public README on serving a MovieLens model).
 * - On the dedicated host, the call must name this endpoint's DNS name (:authority) and carry the
 *   x-vertex-ai-endpoint-id header (docs: mandatory for gRPC; its value is not documented, so the
 *   endpoint id or full name are taken). Real answers to these mistakes were not found: a shared
 *   endpoint has no DNS name to reach at all. The fake's words say "fake:".
 */
function routingProblem(ep: EndpointRecord, host: FakeHost, authority: string, header: string | undefined): RpcError | undefined {
  const dns: string = ep.resource.dedicatedEndpointDns ?? "";
  if (host === "shared") {
    if (!ep.resource.dedicatedEndpointEnabled) return undefined;
    return new RpcError(
      S.FAILED_PRECONDITION,
      `This endpoint is a dedicated endpoint via CloudESF and cannot be accessed through the Vertex AI API. Please access the endpoint using its dedicated dns name '${dns}'`,
    );
  }
  if (!ep.resource.dedicatedEndpointEnabled) return new RpcError(S.FAILED_PRECONDITION, `fake: ${ep.resource.name} is a shared endpoint: it has no dedicated DNS name (the call came to ${authority}).`);
  if (authority.replace(/:\d+$/, "") !== dns) return new RpcError(S.FAILED_PRECONDITION, `fake: the call came to ${authority}, not to this endpoint's dedicated DNS name ${dns}.`);
  if (header !== ep.id && header !== ep.resource.name) return new RpcError(S.INVALID_ARGUMENT, `fake: gRPC calls to a dedicated endpoint must carry the ${ENDPOINT_ID_HEADER} header (got ${header === undefined ? "none" : `"${header}"`}).`);
  return undefined;
}

/** Limits by endpoint type: payload bytes, and how long the front end waits for the container. */
function limitsOf(ctx: Ctx, ep: EndpointRecord): { payloadBytes: number; payloadText: string; timeoutMs: number } {
  if (!ep.resource.dedicatedEndpointEnabled) return { payloadBytes: PREDICT_REQUEST_LIMIT, payloadText: "1.500MB", timeoutMs: ctx.settings.predictTimeoutMs };
  // Docs: "default 10 min timeout, up to 3600 s via clientConnectionConfig.inferenceTimeout".
  const own = Number(ep.resource.clientConnectionConfig?.inferenceTimeout?.seconds ?? 0) * 1000;
  return { payloadBytes: DEDICATED_PAYLOAD_LIMIT, payloadText: "10.000MB", timeoutMs: ctx.settings.dedicatedPredictTimeoutMs ?? (own || 600_000) };
}

/**
 * A container's non-200 answer → the gRPC code the client gets. Observed: 400 → FAILED_PRECONDITION
 * (python-aiplatform #514: `"code": 400, … "status": "FAILED_PRECONDITION"`) and 503 → UNAVAILABLE
 * (vertex-ai-samples #2122: `StatusCode.UNAVAILABLE`, details = TorchServe's 503 body), both with the
 * container's body verbatim as the message. The rest follow google.rpc's HTTP mapping (500 →
 * INTERNAL, 429 → RESOURCE_EXHAUSTED, 504 → DEADLINE_EXCEEDED, …): not observed.
 */
function codeForHttp(status: number): number {
  const known: Record<number, number> = { 400: S.FAILED_PRECONDITION, 401: S.UNAUTHENTICATED, 403: S.PERMISSION_DENIED, 404: S.NOT_FOUND, 409: S.ABORTED, 429: S.RESOURCE_EXHAUSTED, 499: S.CANCELLED, 500: S.INTERNAL, 501: S.UNIMPLEMENTED, 503: S.UNAVAILABLE, 504: S.DEADLINE_EXCEEDED };
  return known[status] ?? (status >= 500 ? S.INTERNAL : S.FAILED_PRECONDITION);
}

export function predictionService(ctx: Ctx, unary: (method: string, handler: Handler) => unknown) {
  return {
    Predict: unary("Predict", async (req, call) => {
      const record: PredictRecord = { endpoint: req.endpoint, host: call.host, authority: call.authority, requestBytes: 0, outcome: "pending" };
      if (call.metadata[ENDPOINT_ID_HEADER] !== undefined) record.endpointIdHeader = call.metadata[ENDPOINT_ID_HEADER];
      ctx.predictions.push(record);
      try {
        const response = await predict(ctx, req, call, record);
        record.outcome = "ok";
        return response;
      } catch (error) {
        record.outcome = error instanceof RpcError ? `${error.code} ${error.message}` : String(error);
        throw error;
      }
    }),
  };
}

async function predict(ctx: Ctx, req: any, call: Parameters<Handler>[1], record: PredictRecord): Promise<object> {
  const ep = ctx.findEndpoint(req.endpoint);
  const wrongWay = routingProblem(ep, call.host, call.authority, record.endpointIdHeader);
  if (wrongWay) throw wrongWay;
  const limits = limitsOf(ctx, ep);
  const split: Record<string, number> = ep.resource.trafficSplit ?? {};
  const target = ep.resource.deployedModels.filter((d: any) => (split[d.id] ?? 0) > 0).sort((a: any, b: any) => split[b.id]! - split[a.id]!)[0];
  // The real text for an endpoint without a deployed model was not found; the code follows the
  // other serving-state errors (FAILED_PRECONDITION).
  if (!target) throw new RpcError(S.FAILED_PRECONDITION, `Endpoint ${req.endpoint} has no deployed model with traffic.`);
  const srv = ep.servers.get(target.id)!;
  const body: Record<string, unknown> = { instances: (req.instances ?? []).map(fromValue) };
  if (req.parameters) body.parameters = fromValue(req.parameters);
  const text = JSON.stringify(body);
  const size = Buffer.byteLength(text);
  record.requestBytes = size;
  // The dedicated endpoint's wording is assumed to follow the shared one's.
  if (size > limits.payloadBytes) throw new RpcError(S.FAILED_PRECONDITION, `The request size (${size} bytes) exceeds ${limits.payloadText} limit.`);

  // The shared endpoint cuts an inference at 60 s with a 503 (Hugging Face's FLUX-on-Vertex
  // notebook: "a request timeout of 60 seconds, meaning that if the prediction request takes longer
  // than that, an HTTP 503 will be raised"; python-aiplatform #1158: "The 60s timeout is a
  // Prediction service's internal time out"). The text: "503 Took too long to respond when
  // processing endpoint <endpointID>, deployed model id: <modelID>" (quoted in public write-ups
  // and the Model Garden notebooks' "ServiceUnavailable: 503 Took too long to respond when
  // processing"). The fake drops its request to the container then, as the front end does, and
  // also when the client gives up (deadline, cancel).
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new RpcError(S.UNAVAILABLE, `Took too long to respond when processing endpoint ${ep.id}, deployed model id: ${target.id}`)),
    // A dedicated endpoint's own timeout: the same answer is assumed (not observed).
    limits.timeoutMs,
  );
  const onCancel = () => controller.abort(new RpcError(S.CANCELLED, "fake: the client cancelled the call"));
  call.cancelled.addEventListener("abort", onCancel, { once: true });
  let status: number;
  let answer: string;
  try {
    const response = await fetch(`${srv.url}${srv.predictRoute}`, { method: "POST", headers: { "content-type": "application/json" }, body: text, signal: controller.signal });
    status = response.status;
    answer = await response.text();
  } catch (error) {
    if (controller.signal.aborted) throw controller.signal.reason;
    throw new RpcError(S.UNAVAILABLE, `fake: the model server did not answer: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
    call.cancelled.removeEventListener("abort", onCancel);
  }
  record.responseBytes = Buffer.byteLength(answer);
  if (status !== 200) throw new RpcError(codeForHttp(status), answer);
  // A response over the payload limit: python-aiplatform #190 (a shared endpoint, 2021):
  // "InvalidArgument: 400 Failed to handle request. endpoint_id: …, deployed_model_id: … with
  // error: `Response size too large. Received at least 3288694 bytes; m…" (cut off there: the
  // rest of the fake's sentence is a guess).
  if (record.responseBytes > limits.payloadBytes) {
    throw new RpcError(
      S.INVALID_ARGUMENT,
      `Failed to handle request. endpoint_id: ${ep.id}, deployed_model_id: ${target.id} with error: \`Response size too large. Received at least ${record.responseBytes} bytes; max is ${limits.payloadBytes} bytes\`.`,
    );
  }
  let parsed: { predictions?: unknown } | undefined;
  try {
    parsed = JSON.parse(answer) as { predictions?: unknown };
  } catch {
    parsed = undefined;
  }
  // python-aiplatform #1526: "Invalid response from prediction server - the response field predictions is missing. Response: …"
  const predictions = parsed?.predictions;
  if (!Array.isArray(predictions)) throw new RpcError(S.FAILED_PRECONDITION, `Invalid response from prediction server - the response field predictions is missing. Response: ${answer.slice(0, 300)}`);
  const { version } = ctx.findModel(`${target.model}@${target.modelVersionId}`);
  return {
    predictions: predictions.map(toValue),
    deployedModelId: target.id,
    model: target.model,
    modelVersionId: target.modelVersionId,
    modelDisplayName: version.resource.displayName,
  };
}
