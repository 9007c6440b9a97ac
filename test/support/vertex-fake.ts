// The Vertex fake's entry: the implementation lives in ./vertex-fake/ (one module per service; see
// its index.ts for what the fake does and where each real-Vertex behaviour comes from).
export { DEDICATED_PAYLOAD_LIMIT, fetchObject, PREDICT_REQUEST_LIMIT, startVertexFake, UNARY_METHODS, venvPython } from "./vertex-fake/index.ts";
export type { FakeFailure, FakeHost, PredictRecord, PreemptOptions, RecordedCall, VertexFake, VertexFakeOptions } from "./vertex-fake/index.ts";
