// Predictions through PredictionService: to the shared regional host, or to a dedicated endpoint's
// own DNS name (core/endpoint-types.ts). The request's instances and parameters travel as protobuf
// Values; errors are mapped the way real Vertex reports a handler's refusals and its time limits.
import {
  dedicatedHost, ENDPOINT_LIMITS, endpointTypeOf, sharedResponseProblem, type EndpointType,
} from "../../core/endpoint-types.ts";
import { AvatarError } from "../../core/errors.ts";
import { endpointName, resourceId } from "../../core/vertex-names.ts";
import { predictRequest } from "../../core/vertex-specs.ts";
import type { PredictResponse } from "../backend.ts";
import { errorContext, type VertexContext } from "./context.ts";
import { mapPredictError, responseSizeHint } from "./errors.ts";

/** Where an endpoint's predictions go and how long Vertex gives each. */
export interface Route {
  id: string;
  type: EndpointType;
  /** A dedicated endpoint's DNS name (empty until Vertex assigns it). */
  host?: string;
  limitSeconds: number;
}

/** The fields of an Endpoint resource that decide its route. */
interface RoutedEndpoint {
  name?: string | null;
  dedicatedEndpointEnabled?: boolean | null;
  dedicatedEndpointDns?: string | null;
  clientConnectionConfig?: { inferenceTimeout?: { seconds?: string | number | null } | null } | null;
}

/**
 * A dedicated endpoint's own inference timeout (clientConnectionConfig; Vertex's default is 600 s);
 * a shared endpoint's is fixed at 60 s.
 */
export function routeOf(ep: RoutedEndpoint): Route {
  const type = endpointTypeOf(ep);
  const set = Number(ep.clientConnectionConfig?.inferenceTimeout?.seconds ?? 0);
  const limitSeconds = type === "dedicated" ? (set > 0 ? set : 600) : ENDPOINT_LIMITS.shared.inferenceSeconds;
  return { id: resourceId(ep.name ?? ""), type, host: type === "dedicated" ? dedicatedHost(ep.dedicatedEndpointDns) : undefined, limitSeconds };
}

interface ValueLike {
  kind?: string;
  nullValue?: unknown;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: { fields?: Record<string, ValueLike> | null } | null;
  listValue?: { values?: ValueLike[] | null } | null;
}

/** google.protobuf.Value → plain JSON (any kind, unlike helpers.fromValue which wants a struct). */
export function fromValue(v: ValueLike | null | undefined): unknown {
  if (!v) return null;
  const kind = v.kind ?? Object.keys(v).find((k) => k.endsWith("Value"));
  switch (kind) {
    case "numberValue":
      return v.numberValue;
    case "stringValue":
      return v.stringValue;
    case "boolValue":
      return v.boolValue;
    case "structValue":
      return Object.fromEntries(Object.entries(v.structValue?.fields ?? {}).map(([k, x]) => [k, fromValue(x)]));
    case "listValue":
      return (v.listValue?.values ?? []).map((x) => fromValue(x));
    default:
      return null;
  }
}

/** The client's deadline over the endpoint's own limit: Vertex's answer (an error) must arrive first. */
const DEADLINE_MARGIN_S = 60;

/** One predict call on an endpoint whose route is known. */
export async function predictOn(
  vctx: VertexContext,
  target: { name: string; route: Route },
  body: unknown,
  options: { signal?: AbortSignal; timeoutMs?: number },
): Promise<PredictResponse> {
  const { name, route } = target;
  const request = predictRequest(endpointName(vctx.loc, name), body);
  // The handler's limits are a dedicated endpoint's (set at register): a shared endpoint's 1.5 MB
  // response limit is checked here, before a GPU spends a minute on images Vertex would drop.
  const tooBig = route.type === "shared" ? sharedResponseProblem(body) : undefined;
  if (tooBig) throw new AvatarError("BAD_INPUT", `${name}'s endpoint is shared: ${tooBig}.`, { hint: responseSizeHint(name, "shared") });
  const prediction = await vctx.clients.prediction(route.host);
  const { helpers } = await vctx.clients.module();
  const value = (x: unknown) => {
    const v = helpers.toValue(x as object);
    if (!v) throw new AvatarError("BAD_INPUT", "A prediction request holds a value that is not JSON.");
    return v;
  };
  const started = Date.now();
  const call = prediction.predict(
    {
      endpoint: request.endpoint,
      // Numbers travel as doubles (protobuf Value); the handler casts them back.
      instances: request.instances.map(value),
      ...(request.parameters === undefined ? {} : { parameters: value(request.parameters) }),
    },
    {
      // The default deadline is 30 s; an image on a cold GPU takes longer. Past the endpoint's own
      // limit Vertex answers with an error, which should arrive before the client gives up.
      timeout: options.timeoutMs ?? (route.limitSeconds + DEADLINE_MARGIN_S) * 1000,
      // gRPC to a dedicated endpoint must name it (Vertex docs, "Get online inferences").
      ...(route.type === "dedicated" ? { otherArgs: { headers: { "x-vertex-ai-endpoint-id": route.id } } } : {}),
    },
  );
  const cancel = () => (call as unknown as { cancel?: () => void }).cancel?.();
  options.signal?.addEventListener("abort", cancel, { once: true });
  try {
    const [response] = await call;
    const predictions = (response.predictions ?? []).map((p) => fromValue(p as ValueLike)) as Record<string, unknown>[];
    return { predictions, deployedModelId: response.deployedModelId ?? undefined };
  } catch (error) {
    if (options.signal?.aborted) throw new AvatarError("INTERRUPTED", "Interrupted while waiting for the endpoint.");
    const context = errorContext(vctx, `generating with ${name}`, { kind: "serving" });
    throw mapPredictError(error, { ...context, name, elapsedMs: Date.now() - started, limitSeconds: route.limitSeconds, endpointType: route.type });
  } finally {
    options.signal?.removeEventListener("abort", cancel);
  }
}
