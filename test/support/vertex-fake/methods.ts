// The methods the fake serves and the scripted faults it accepts, from the package's protos.json
// alone (no gRPC loaded: `npm run fakes` checks a faults file in a blink).
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const protosJson = require("@google-cloud/aiplatform/build/protos/protos.json");

export const V1 = "google.cloud.aiplatform.v1";

/** The services the fake serves, by full name. */
export const SERVICES = [`${V1}.JobService`, `${V1}.ModelService`, `${V1}.EndpointService`, `${V1}.PredictionService`, "google.longrunning.Operations"] as const;

type MethodJson = { requestStream?: boolean; responseStream?: boolean };
const lookup = (name: string) => name.split(".").reduce((node: any, key) => node.nested[key], protosJson) as { methods: Record<string, MethodJson> };

/** Unary method name (as in the protos: "GetCustomJob") → its service, for every service the fake serves. */
export const UNARY_METHODS: ReadonlyMap<string, string> = new Map(
  SERVICES.flatMap((service) =>
    Object.entries(lookup(service).methods)
      .filter(([, m]) => !m.requestStream && !m.responseStream)
      .map(([name]) => [name, service] as [string, string]),
  ),
);

/** gRPC status codes by name (google.rpc.Code). */
export const STATUS_CODES: Readonly<Record<string, number>> = {
  CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

export interface FakeFailure {
  code: number;
  message: string;
  /** How many consecutive calls fail this way (default 1). */
  times?: number;
  /** google.rpc.ErrorInfo attached as grpc-status-details-bin. */
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
}

/** A FakeFailure as given by a caller: a clear error for what could never be sent. */
export function checkFailure(method: string, failure: FakeFailure): void {
  if (!UNARY_METHODS.has(method)) {
    throw new Error(`fake: unknown method "${method}" (one of the unary methods of ${SERVICES.join(", ")}, e.g. GetCustomJob, DeployModel, Predict, GetOperation)`);
  }
  if (!Number.isInteger(failure?.code) || failure.code < 1 || failure.code > 16) throw new Error(`fake: ${method}: code must be a gRPC status code 1-16, got ${JSON.stringify(failure?.code)}`);
  if (typeof failure.message !== "string") throw new Error(`fake: ${method}: message must be a string`);
  if (failure.times !== undefined && (!Number.isInteger(failure.times) || failure.times < 1)) throw new Error(`fake: ${method}: times must be an integer ≥ 1, got ${JSON.stringify(failure.times)}`);
}
