// PredictionService.predict: instances/parameters → JSON → the serving container → predictions as
// Values, with the answers real Vertex gives when the container or the request is not fine.
import { fromValue, RpcError, S, toValue } from "./common.ts";
import type { Ctx, Handler } from "./types.ts";

/**
 * The shared public endpoint's request limit. Vertex answers FAILED_PRECONDITION "The request size
 * (24724085 bytes) exceeds 1.500MB limit." (seen verbatim in public code handling it, e.g. a
 * `google.api_core.exceptions.FailedPrecondition: 400 The request size (…) exceeds 1.500MB limit.`).
 * Whether "MB" means 10^6 or 2^20 bytes is not known: the fake takes the stricter 1 500 000.
 */
export const PREDICT_REQUEST_LIMIT = 1_500_000;

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
      const ep = ctx.findEndpoint(req.endpoint);
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
      if (size > PREDICT_REQUEST_LIMIT) throw new RpcError(S.FAILED_PRECONDITION, `The request size (${size} bytes) exceeds 1.500MB limit.`);

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
        ctx.settings.predictTimeoutMs,
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
      if (status !== 200) throw new RpcError(codeForHttp(status), answer);
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
    }),
  };
}
