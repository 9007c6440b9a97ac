// The Vertex fake itself, through the REAL @google-cloud/aiplatform clients: it answers the way real
// Vertex does where the CLI must cope (predict errors and the 60 s limit, scripted transient faults,
// Spot preemption, slow and cancelled deployments, serving GPU quota, CPU jobs on the FUSE mount),
// and `npm run fakes` serves it for manual runs. Small Python stand-ins (an echo handler.py, a scripted
// HTTP server, a checkpointing "trainer") keep this fast: no model weights are involved.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { helpers, protos, v1 } from "@google-cloud/aiplatform";
import { grpc } from "google-gax";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../support/cli.ts";
import { startGcsEmulator, type GcsEmulator } from "../support/gcs-emulator.ts";
import { DEDICATED_PAYLOAD_LIMIT, fetchObject, PREDICT_REQUEST_LIMIT, startVertexFake, type VertexFake } from "../support/vertex-fake.ts";

const PROJECT = "avatar-test";
const REGION = "us-central1";
const BUCKET = "avatar-fake-behaviour";
const parent = `projects/${PROJECT}/locations/${REGION}`;
const LONG = 5 * 60_000;
const CPU = { machineType: "n1-standard-4" };
const L4 = { machineType: "g2-standard-8", acceleratorType: "NVIDIA_L4", acceleratorCount: 1 };
const T4 = { machineType: "n1-standard-8", acceleratorType: "NVIDIA_TESLA_T4", acceleratorCount: 1 };
const Stage = protos.google.cloud.aiplatform.v1.DeploymentStage;

// A handler.py for handlers/local_server.py (the HF toolkit's contract): echoes, refuses, or answers
// without "predictions", as the instance asks.
const ECHO_HANDLER = `
import json

class EndpointHandler:
    def __init__(self, path=""):
        self.path = path

    def __call__(self, data):
        instance = data["instances"][0]
        if "fail" in instance:
            raise ValueError(instance["fail"])
        if instance.get("no_predictions"):
            return {"result": 1}
        return {"predictions": [{"seen_bytes": len(json.dumps(data, separators=(",", ":"))), "parameters": data.get("parameters")}]}
`;

// A serving container stand-in that answers any status and body, sleeps on request, pads its answer
// with "pad" bytes, and prints "client disconnected" when the caller drops the connection while it sleeps.
const SCRIPTED_SERVER = `
import json, os, select, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTH, PREDICT = os.environ["AIP_HEALTH_ROUTE"], os.environ["AIP_PREDICT_ROUTE"]

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, kind="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send(200, b"Ok", "text/plain") if self.path == HEALTH else self.send(404, b"")

    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        instance = data["instances"][0]
        end = time.time() + instance.get("sleep", 0)
        while time.time() < end:
            ready, _, _ = select.select([self.connection], [], [], 0.05)
            if ready and not self.connection.recv(1, socket.MSG_PEEK):
                print("client disconnected", flush=True)
                return
        if "pad" in instance:
            instance["pad"] = "x" * int(instance["pad"])
        body = instance["body"] if "body" in instance else json.dumps({"predictions": [instance]})
        self.send(int(instance.get("status", 200)), body.encode())

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"ready url=http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
`;

// A "trainer": a step every 0.2 s, a complete checkpoint (checkpoint-<step>/COMPLETE, as
// templates/trainer writes them) every 2 steps, resumes from the newest one, and on SIGTERM saves one
// more and exits 143, like avatar_trainer. The checkpoint dir: --checkpoint-dir, else AIP_CHECKPOINT_DIR
// (a gs:// URI, read through the mount as the real trainer does with AVATAR_GCS_FUSE_ROOT).
const TRAINER = `
import os, pathlib, signal, sys, time

def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

checkpoints = arg("--checkpoint-dir") or os.environ["AIP_CHECKPOINT_DIR"].replace("gs://", os.environ["AVATAR_GCS_FUSE_ROOT"] + "/", 1)
checkpoints = pathlib.Path(checkpoints)
total = int(arg("--steps"))
checkpoints.mkdir(parents=True, exist_ok=True)
done = sorted(int(p.name.split("-")[1]) for p in checkpoints.iterdir() if (p / "COMPLETE").is_file())
step = done[-1] if done else 0
print(f"start step={step}", flush=True)
stop = {}
signal.signal(signal.SIGTERM, lambda signum, frame: stop.setdefault("signal", signum))

def save(step):
    path = checkpoints / f"checkpoint-{step:06d}"
    path.mkdir(exist_ok=True)
    (path / "state.txt").write_text(str(step))
    (path / "COMPLETE").write_text(f"{step}\\n")

while step < total:
    time.sleep(0.2)
    step += 1
    if step % 2 == 0 or stop:
        save(step)
        print(f"checkpoint {step}", flush=True)
    if stop:
        print(f"SIGTERM at step {step}", flush=True)
        sys.exit(143)
model = checkpoints.parent / "model"
model.mkdir(exist_ok=True)
(model / "done.txt").write_text(str(step))
print("done", flush=True)
`;

// What a `doctor --smoke` job does with the trainer kit: runs from a bucket "directory" and writes back.
const SMOKE = `
import json, os, sys

def listing(top):
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)

out_path, probe = sys.argv[1], sys.argv[sys.argv.index("--probe-dir") + 1]
os.makedirs(os.path.dirname(out_path), exist_ok=True)
with open(out_path, "w") as out:
    json.dump({"files": listing("."), "probe": listing(probe), "probe_text": open(os.path.join(probe, "sub", "b.txt")).read()}, out)
`;

type Clients = {
  jobs: InstanceType<typeof v1.JobServiceClient>;
  models: InstanceType<typeof v1.ModelServiceClient>;
  endpoints: InstanceType<typeof v1.EndpointServiceClient>;
  prediction: InstanceType<typeof v1.PredictionServiceClient>;
};

function clientsFor(address: string): Clients {
  const [host, port] = address.split(":");
  const options = { apiEndpoint: host, port: Number(port), sslCreds: grpc.credentials.createInsecure(), universeDomain: "googleapis.com" };
  return {
    jobs: new v1.JobServiceClient(options),
    models: new v1.ModelServiceClient(options),
    endpoints: new v1.EndpointServiceClient(options),
    prediction: new v1.PredictionServiceClient(options),
  };
}

async function closeClients(c: Clients | undefined) {
  if (c) await Promise.all(Object.values(c).map((client) => client.close()));
}

/** The error a call fails with (a call that succeeds fails the test). */
async function failure(call: Promise<unknown>): Promise<any> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail");
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let gcs: GcsEmulator;
let work: string;
let fake: VertexFake; // serves with handlers/local_server.py
let scripted: VertexFake; // serves with SCRIPTED_SERVER
let c: Clients;
let s: Clients;

async function put(name: string, body: string) {
  await gcs.storage().bucket(BUCKET).file(name).save(body, { resumable: false });
}

async function uploadEcho(clients: Clients, modelId: string, parentModel?: string): Promise<string> {
  const [op] = await clients.models.uploadModel({
    parent,
    ...(parentModel ? { parentModel } : { modelId }),
    model: { displayName: modelId, artifactUri: `gs://${BUCKET}/models/echo`, containerSpec: { imageUri: "us-docker.pkg.dev/x/serve:1", ports: [{ containerPort: 8080 }] } },
  });
  const [result] = await op.promise();
  return `${result.model}@${result.modelVersionId}`;
}

async function createEndpoint(clients: Clients, id: string): Promise<string> {
  const [op] = await clients.endpoints.createEndpoint({ parent, endpointId: id, endpoint: { displayName: id } });
  await op.promise();
  return `${parent}/endpoints/${id}`;
}

function deployRequest(endpoint: string, model: string, machineSpec: object, trafficSplit: Record<string, number> = { "0": 100 }) {
  return { endpoint, deployedModel: { model, dedicatedResources: { machineSpec, minReplicaCount: 1, maxReplicaCount: 1 } }, trafficSplit };
}

async function deploy(clients: Clients, endpoint: string, model: string, machineSpec: object, trafficSplit?: Record<string, number>): Promise<string> {
  const [op] = await clients.endpoints.deployModel(deployRequest(endpoint, model, machineSpec, trafficSplit));
  const [result] = await op.promise();
  return String(result.deployedModel!.id);
}

function predict(clients: Clients, endpoint: string, instance: object, callOptions: { timeout?: number } = {}) {
  return clients.prediction.predict({ endpoint, instances: [helpers.toValue(instance)!] }, callOptions);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "avatar-fake-behaviour-"));
  gcs = await startGcsEmulator();
  await gcs.createBucket(BUCKET);
  const serverScript = join(work, "scripted_server.py");
  writeFileSync(serverScript, SCRIPTED_SERVER);
  [fake, scripted] = await Promise.all([
    startVertexFake({ gcsEndpoint: gcs.endpoint, project: PROJECT, env: { HF_HUB_OFFLINE: "1" } }),
    startVertexFake({ gcsEndpoint: gcs.endpoint, project: PROJECT, serverScript, preemptGraceMs: 10_000 }),
  ]);
  c = clientsFor(fake.address);
  s = clientsFor(scripted.address);
  await Promise.all([
    put("models/echo/handler.py", ECHO_HANDLER),
    put("models/echo/requirements.txt", ""),
    put("fake-jobs/trainer.py", TRAINER),
    // A trainer kit as the CLI uploads it: objects only, no "directory" placeholder objects.
    put("kit/0.1/pkg/__init__.py", ""),
    put("kit/0.1/pkg/smoke.py", SMOKE),
    put("probe/a.txt", "a"),
    put("probe/sub/b.txt", "b"),
  ]);
}, LONG);

afterAll(async () => {
  await closeClients(c);
  await closeClients(s);
  await fake?.close();
  await scripted?.close();
  await gcs?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("predict answers as real Vertex does", () => {
  let echo: string; // endpoint served by local_server.py + the echo handler
  let script: string; // endpoint served by the scripted server
  let scriptedModel: string;

  beforeAll(async () => {
    echo = await createEndpoint(c, "echo");
    await deploy(c, echo, await uploadEcho(c, "echo"), CPU);
    script = await createEndpoint(s, "scripted");
    scriptedModel = await deploy(s, script, await uploadEcho(s, "echo"), CPU);
  }, LONG);

  it("a container's 400 is FAILED_PRECONDITION with the container's body as the message (python-aiplatform #514)", async () => {
    const [ok] = await predict(c, echo, { prompt: "a cat" });
    expect(ok.predictions).toHaveLength(1);
    const e = await failure(predict(c, echo, { fail: "steps must be between 1 and 100" }));
    expect(e.code).toBe(9);
    expect(JSON.parse(e.details)).toEqual({ error: "steps must be between 1 and 100" });
  });

  it("a request over the shared endpoint's 1.5 MB is FAILED_PRECONDITION 'The request size (n bytes) exceeds 1.500MB limit.'", async () => {
    const base = Buffer.byteLength(JSON.stringify({ instances: [{ p: "" }] }));
    const [fits] = await predict(c, echo, { p: "x".repeat(PREDICT_REQUEST_LIMIT - base) });
    expect(helpers.fromValue(fits.predictions![0] as never)).toMatchObject({ seen_bytes: PREDICT_REQUEST_LIMIT });
    const e = await failure(predict(c, echo, { p: "x".repeat(PREDICT_REQUEST_LIMIT - base + 1) }));
    expect(e.code).toBe(9);
    expect(e.details).toBe(`The request size (${PREDICT_REQUEST_LIMIT + 1} bytes) exceeds 1.500MB limit.`);
  });

  it("an endpoint without a deployed model and a 200 without predictions are FAILED_PRECONDITION too", async () => {
    const empty = await createEndpoint(c, "empty");
    const none = await failure(predict(c, empty, { prompt: "a cat" }));
    expect(none.code).toBe(9);
    expect(none.details).toMatch(/no deployed model/);
    const bad = await failure(predict(c, echo, { no_predictions: true }));
    expect(bad.code).toBe(9);
    expect(bad.details).toMatch(/^Invalid response from prediction server - the response field predictions is missing\. Response: \{"result":1\}/);
  });

  it("a container's 503 is UNAVAILABLE and its 500 INTERNAL, each with the body as the message", async () => {
    const torchserve = '{\n  "code": 503,\n  "type": "InternalServerException",\n  "message": "Prediction failed"\n}\n';
    const unavailable = await failure(predict(s, script, { status: 503, body: torchserve }));
    expect(unavailable.code).toBe(14);
    expect(unavailable.details).toBe(torchserve);
    const internal = await failure(predict(s, script, { status: 500, body: "Internal Server Error" }));
    expect(internal.code).toBe(13);
    expect(internal.details).toBe("Internal Server Error");
    const [ok] = await predict(s, script, { prompt: "still serving" });
    expect(helpers.fromValue(ok.predictions![0] as never)).toEqual({ prompt: "still serving" });
  });

  it("a container slower than predictTimeoutMs: UNAVAILABLE 'Took too long to respond…', and the fake hangs up on the container", async () => {
    scripted.setPredictTimeout(1000);
    try {
      const started = Date.now();
      const e = await failure(predict(s, script, { sleep: 60 }, { timeout: 120_000 }));
      expect(e.code).toBe(14);
      expect(e.details).toBe(`Took too long to respond when processing endpoint scripted, deployed model id: ${scriptedModel}`);
      expect(Date.now() - started).toBeLessThan(30_000); // answered long before the container would have
      await until("the container to see its client go", () => scripted.serverLog(scriptedModel).filter((l) => l === "client disconnected").length === 1 || undefined);
    } finally {
      scripted.setPredictTimeout(60_000);
    }
    const [ok] = await predict(s, script, { sleep: 1.5 });
    expect(helpers.fromValue(ok.predictions![0] as never)).toEqual({ sleep: 1.5 });
  });

  it("a client that gives up (its deadline) also makes the fake hang up on the container", async () => {
    const e = await failure(predict(s, script, { sleep: 60 }, { timeout: 1000 }));
    expect(e.code).toBe(4);
    await until("the container to see its client go", () => scripted.serverLog(scriptedModel).filter((l) => l === "client disconnected").length === 2 || undefined);
  });
});

describe("dedicated endpoints: their own host, 10 MB, their own inference timeout", () => {
  const ENDPOINT_ID_HEADER = "x-vertex-ai-endpoint-id";
  let model: string;
  let dedicated: string; // dedicatedEndpointEnabled, inferenceTimeout 2 s, served by the scripted server
  let dns: string;
  let shared: string;
  let client: InstanceType<typeof v1.PredictionServiceClient>; // the dedicated host, addressed to `dns`

  /** A predict on the dedicated host, with the endpoint-id header (null: without it). */
  const dedicatedPredict = (endpoint: string, instance: object, header: string | null = endpoint.split("/").at(-1)!) =>
    client.predict({ endpoint, instances: [helpers.toValue(instance)!] }, header === null ? {} : { otherArgs: { headers: { [ENDPOINT_ID_HEADER]: header } } });

  beforeAll(async () => {
    model = await uploadEcho(s, "echo-dedicated");
    const [op] = await s.endpoints.createEndpoint({
      parent,
      endpointId: "dedicated",
      endpoint: { displayName: "dedicated", dedicatedEndpointEnabled: true, clientConnectionConfig: { inferenceTimeout: { seconds: 2 } } },
    });
    const [created] = await op.promise();
    dedicated = `${parent}/endpoints/dedicated`;
    dns = created.dedicatedEndpointDns!;
    await deploy(s, dedicated, model, CPU);
    shared = await createEndpoint(s, "plain");
    await deploy(s, shared, model, CPU);
    const [host, port] = scripted.dedicatedAddress.split(":");
    client = new v1.PredictionServiceClient({
      apiEndpoint: host,
      port: Number(port),
      sslCreds: grpc.credentials.createInsecure(),
      universeDomain: "googleapis.com",
      "grpc.default_authority": dns,
    });
  }, LONG);

  afterAll(async () => {
    await client?.close();
  });

  it("Get and List show the DNS name Vertex gives a dedicated endpoint ({id}.{region}-{project number}.prediction.vertexai.goog); a shared one has none", async () => {
    expect(dns).toBe(`dedicated.${REGION}-${scripted.projectNumber}.prediction.vertexai.goog`);
    const [got] = await s.endpoints.getEndpoint({ name: dedicated });
    expect(got).toMatchObject({ dedicatedEndpointEnabled: true, dedicatedEndpointDns: dns });
    expect(Number(got.clientConnectionConfig?.inferenceTimeout?.seconds)).toBe(2);
    const [listed] = await s.endpoints.listEndpoints({ parent });
    expect(listed.find((e) => e.name!.endsWith("/plain"))).toMatchObject({ dedicatedEndpointEnabled: false, dedicatedEndpointDns: "" });
  });

  it("the shared host refuses a dedicated endpoint with Vertex's words; the dedicated host answers at the DNS name with the header, and refuses otherwise", async () => {
    const viaShared = await failure(predict(s, dedicated, { prompt: "x" }));
    expect(viaShared.code).toBe(9);
    expect(viaShared.details).toBe(`This endpoint is a dedicated endpoint via CloudESF and cannot be accessed through the Vertex AI API. Please access the endpoint using its dedicated dns name '${dns}'`);
    const [answered] = await dedicatedPredict(dedicated, { prompt: "dedicated" });
    expect(helpers.fromValue(answered.predictions![0] as never)).toEqual({ prompt: "dedicated" });
    expect(scripted.predictions.at(-1)).toMatchObject({ host: "dedicated", authority: dns, endpointIdHeader: "dedicated", outcome: "ok" });
    expect(await failure(dedicatedPredict(dedicated, { prompt: "x" }, null))).toMatchObject({ code: 3, details: expect.stringMatching(/x-vertex-ai-endpoint-id header/) });
    expect(await failure(dedicatedPredict(shared, { prompt: "x" }))).toMatchObject({ code: 9, details: expect.stringMatching(/is a shared endpoint: it has no dedicated DNS name/) });
    const [plain] = await predict(s, shared, { prompt: "shared" });
    expect(helpers.fromValue(plain.predictions![0] as never)).toEqual({ prompt: "shared" });
  });

  it("payloads: 10 MB on a dedicated endpoint, 1.5 MB on a shared one, for requests and responses (a response over it: INVALID_ARGUMENT 'Response size too large')", async () => {
    const [big] = await dedicatedPredict(dedicated, { p: "x".repeat(3_000_000) });
    expect((helpers.fromValue(big.predictions![0] as never) as { p: string }).p).toHaveLength(3_000_000);
    const tooBig = await failure(dedicatedPredict(dedicated, { p: "x".repeat(DEDICATED_PAYLOAD_LIMIT) }));
    expect(tooBig.code).toBe(9);
    expect(tooBig.details).toMatch(/^The request size \(\d+ bytes\) exceeds 10\.000MB limit\.$/);
    const [padded] = await dedicatedPredict(dedicated, { pad: 5_000_000 });
    expect(padded.predictions).toHaveLength(1);
    const overDedicated = await failure(dedicatedPredict(dedicated, { pad: DEDICATED_PAYLOAD_LIMIT }));
    expect(overDedicated.code).toBe(3);
    expect(overDedicated.details).toMatch(/^Failed to handle request\. endpoint_id: dedicated, deployed_model_id: \d+ with error: `Response size too large\. Received at least \d+ bytes; max is 10000000 bytes`\.$/);
    const overShared = await failure(predict(s, shared, { pad: PREDICT_REQUEST_LIMIT }));
    expect(overShared.code).toBe(3);
    expect(overShared.details).toMatch(/Response size too large\. Received at least \d+ bytes; max is 1500000 bytes/);
    expect(scripted.predictions.at(-1)!.responseBytes).toBeGreaterThan(PREDICT_REQUEST_LIMIT);
  });

  it("time: a dedicated endpoint's own inference timeout (2 s here), not the shared 60 s; setPredictTimeout(ms, 'dedicated') overrides it", async () => {
    const started = Date.now();
    const slow = await failure(dedicatedPredict(dedicated, { sleep: 30 }));
    expect(slow.code).toBe(14);
    expect(slow.details).toMatch(/^Took too long to respond when processing endpoint dedicated, deployed model id: \d+$/);
    expect(Date.now() - started).toBeLessThan(15_000);
    const [fine] = await dedicatedPredict(dedicated, { sleep: 1 });
    expect(fine.predictions).toHaveLength(1);
    scripted.setPredictTimeout(500, "dedicated");
    try {
      expect(await failure(dedicatedPredict(dedicated, { sleep: 1 }))).toMatchObject({ code: 14 });
    } finally {
      scripted.setPredictTimeout(undefined, "dedicated");
    }
  });

  it("CreateEndpoint refuses an inference timeout over 3600 s", async () => {
    const [op] = await s.endpoints.createEndpoint({ parent, endpointId: "too-long", endpoint: { displayName: "x", dedicatedEndpointEnabled: true, clientConnectionConfig: { inferenceTimeout: { seconds: 3601 } } } }).catch((e) => [e]);
    expect(op).toMatchObject({ code: 3 });
  });
});

describe("scripted transient faults", () => {
  const job = `${parent}/customJobs/424242`;

  it("failNext with times fails that many calls of the method, in order, then it answers again; ErrorInfo reaches the client", async () => {
    fake.failNext("GetCustomJob", { code: 14, message: "The service is currently unavailable.", times: 3 });
    fake.failNext("GetCustomJob", { code: 8, message: "Quota exceeded", reason: "RATE_LIMIT_EXCEEDED", metadata: { quota_metric: "aiplatform.googleapis.com/get_requests" } });
    for (let i = 0; i < 3; i++) expect(await failure(c.jobs.getCustomJob({ name: job }))).toMatchObject({ code: 14, details: "The service is currently unavailable." });
    expect(await failure(c.jobs.getCustomJob({ name: job }))).toMatchObject({ code: 8, reason: "RATE_LIMIT_EXCEEDED", errorInfoMetadata: { quota_metric: "aiplatform.googleapis.com/get_requests" } });
    expect(await failure(c.jobs.getCustomJob({ name: job }))).toMatchObject({ code: 5 });
  });

  it("unknown methods, bad codes and bad counts are refused when scripted; a method the fake does not implement answers UNIMPLEMENTED and takes faults too", async () => {
    expect(() => fake.failNext("GetCustomJobs", { code: 14, message: "x" })).toThrow(/unknown method "GetCustomJobs"/);
    expect(() => fake.failNext("GetCustomJob", { code: 0, message: "x" })).toThrow(/code must be a gRPC status code/);
    expect(() => fake.failNext("GetCustomJob", { code: 14, message: "x", times: 0 })).toThrow(/times must be an integer/);
    expect(await failure(c.jobs.deleteCustomJob({ name: job }))).toMatchObject({ code: 12 });
    fake.failNext("DeleteCustomJob", { code: 7, message: "Permission 'aiplatform.customJobs.delete' denied" });
    expect(await failure(c.jobs.deleteCustomJob({ name: job }))).toMatchObject({ code: 7 });
  });
});

describe("custom jobs: CPU machines, the FUSE mount, Spot preemption", () => {
  const jobSpec = (command: string[], args: string[], extra: object = {}) => ({
    displayName: "fake-job",
    jobSpec: {
      workerPoolSpecs: [
        {
          machineSpec: { machineType: "e2-standard-4" },
          replicaCount: 1,
          // As the CLI's jobs do: code runs from the bucket, so no __pycache__ objects go back into it.
          containerSpec: { imageUri: "us-docker.pkg.dev/x/train:1", command, args, env: [{ name: "PYTHONDONTWRITEBYTECODE", value: "1" }] },
        },
      ],
      ...extra,
    },
  });
  const trainerCommand = ["sh", "-c", `cd /gcs/${BUCKET}/fake-jobs && exec python trainer.py "$@"`, "sh"];

  async function finished(fakeToUse: VertexFake, clients: Clients, name: string) {
    await fakeToUse.jobDone(name.split("/").at(-1)!);
    return (await clients.jobs.getCustomJob({ name }))[0];
  }

  it("a CPU-only job runs (e2-standard-4, n1-standard-4); G2 without its L4 is refused; a bucket 'directory' without placeholder objects shows its files in the mount", async () => {
    const g2 = await failure(c.jobs.createCustomJob({ parent, customJob: { ...jobSpec(["true"], []), jobSpec: { workerPoolSpecs: [{ machineSpec: { machineType: "g2-standard-8" }, replicaCount: 1, containerSpec: { imageUri: "x", command: ["true"] } }] } } }));
    expect(g2.code).toBe(3);
    const [n1] = await c.jobs.createCustomJob({ parent, customJob: { ...jobSpec(["true"], []), jobSpec: { workerPoolSpecs: [{ machineSpec: { machineType: "n1-standard-4" }, replicaCount: 1, containerSpec: { imageUri: "x", command: ["true"] } }] } } });
    expect((await finished(fake, c, n1.name!)).state).toBe("JOB_STATE_SUCCEEDED");

    const [smoke] = await c.jobs.createCustomJob({
      parent,
      customJob: jobSpec(["sh", "-c", `cd /gcs/${BUCKET}/kit/0.1 && exec python -m pkg.smoke "$@"`, "sh"], [`/gcs/${BUCKET}/smoke/out.json`, "--probe-dir", `/gcs/${BUCKET}/probe`]),
    });
    const done = await finished(fake, c, smoke.name!);
    expect(done.state, fake.jobLog(smoke.name!.split("/").at(-1)!).join("\n")).toBe("JOB_STATE_SUCCEEDED");
    const out = JSON.parse((await fetchObject(gcs.endpoint, BUCKET, "smoke/out.json")).toString());
    expect(out).toEqual({ files: ["pkg/__init__.py", "pkg/smoke.py"], probe: ["a.txt", "sub/b.txt"], probe_text: "b" });
    const [files] = await gcs.storage().bucket(BUCKET).getFiles({ prefix: "kit/" });
    expect(files.map((f) => f.name).sort()).toEqual(["kit/0.1/pkg/__init__.py", "kit/0.1/pkg/smoke.py"]); // nothing added
  }, LONG);

  it("preemptNext: SIGTERM once the new checkpoints are there; the trainer's last checkpoint reaches the bucket; FAILED with code 14 (disableRetries beats restartJobOnWorkerRestart; strategy SPOT is taken)", async () => {
    scripted.preemptNext({ afterCheckpoints: 2 });
    const [job] = await s.jobs.createCustomJob({
      parent,
      customJob: jobSpec(trainerCommand, ["--checkpoint-dir", `/gcs/${BUCKET}/runs/p1/checkpoints`, "--steps", "100"], {
        baseOutputDirectory: { outputUriPrefix: `gs://${BUCKET}/runs/p1` },
        scheduling: { strategy: "SPOT", restartJobOnWorkerRestart: true, disableRetries: true },
      }),
    });
    const id = job.name!.split("/").at(-1)!;
    const done = await finished(scripted, s, job.name!);
    const log = scripted.jobLog(id);
    expect(done.state, log.join("\n")).toBe("JOB_STATE_FAILED");
    expect(done.error).toMatchObject({ code: 14 });
    expect(done.error!.message).toMatch(/^The replica workerpool0-0 was preempted/);
    expect(log.filter((l) => l.startsWith("start step="))).toEqual(["start step=0"]);
    const last = Number(/^SIGTERM at step (\d+)$/.exec(log.find((l) => l.startsWith("SIGTERM at step"))!)![1]);
    expect(last).toBeGreaterThanOrEqual(5); // two checkpoints first (steps 2 and 4), then the one on SIGTERM
    const [objects] = await gcs.storage().bucket(BUCKET).getFiles({ prefix: "runs/p1/" });
    const names = objects.map((o) => o.name);
    expect(names).toContain(`runs/p1/checkpoints/checkpoint-${String(last).padStart(6, "0")}/COMPLETE`);
    expect(names).toContain("runs/p1/checkpoints/checkpoint-000002/COMPLETE");
    expect(names.some((n) => n.startsWith("runs/p1/model/"))).toBe(false);

    // Only the next job was meant: this one runs to the end.
    const [next] = await s.jobs.createCustomJob({ parent, customJob: jobSpec(trainerCommand, ["--checkpoint-dir", `/gcs/${BUCKET}/runs/p0/checkpoints`, "--steps", "3"]) });
    expect((await finished(scripted, s, next.name!)).state).toBe("JOB_STATE_SUCCEEDED");
  }, LONG);

  it("with scheduling.restartJobOnWorkerRestart a preempted job runs its command again from the bucket's state and stays RUNNING until it succeeds", async () => {
    scripted.preemptNext();
    const [job] = await s.jobs.createCustomJob({
      parent,
      customJob: jobSpec(trainerCommand, ["--steps", "10"], { baseOutputDirectory: { outputUriPrefix: `gs://${BUCKET}/runs/p2` }, scheduling: { strategy: "SPOT", restartJobOnWorkerRestart: true } }),
    });
    const id = job.name!.split("/").at(-1)!;
    const states = new Set<string>();
    const final = await until(
      "the job to end",
      async () => {
        const [now] = await s.jobs.getCustomJob({ name: job.name! });
        states.add(String(now.state));
        return ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"].includes(String(now.state)) ? now : undefined;
      },
      LONG / 2,
    );
    const log = scripted.jobLog(id);
    expect(final.state, log.join("\n")).toBe("JOB_STATE_SUCCEEDED");
    expect([...states].filter((x) => x !== "JOB_STATE_PENDING")).toEqual(["JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]);
    const starts = log.filter((l) => l.startsWith("start step=")).map((l) => Number(l.slice("start step=".length)));
    expect(starts).toHaveLength(2);
    expect(starts[0]).toBe(0);
    expect(starts[1]).toBeGreaterThanOrEqual(2); // resumed from a checkpoint the first run left in the bucket
    expect(log).toContain("fake: restarting the job on a new VM (scheduling.restartJobOnWorkerRestart)");
    expect((await fetchObject(gcs.endpoint, BUCKET, "runs/p2/model/done.txt")).toString()).toBe("10");
  }, LONG);
});

describe("deployments: in flight, cancelled, listed; serving GPU quota", () => {
  let model: string;

  beforeAll(async () => {
    model = await uploadEcho(c, "slow-echo");
  }, LONG);

  it("with a deploy delay the operation stays in flight (cluster stages), the endpoint lists nothing, ListOperations shows it; CancelOperation stops it and nothing is deployed", async () => {
    const endpoint = await createEndpoint(c, "slow");
    fake.setDeployDelay(60_000);
    try {
      const servers = fake.runningServers();
      const [op] = await c.endpoints.deployModel(deployRequest(endpoint, model, CPU));
      const stage = await until("a cluster stage", async () => {
        const progress = await c.endpoints.checkDeployModelProgress(op.name!);
        const now = (progress.metadata as { deploymentStage?: number } | null)?.deploymentStage;
        return now === Stage.CREATING_SERVING_CLUSTER || now === Stage.ADDING_NODES_TO_CLUSTER ? now : undefined;
      });
      expect([Stage.CREATING_SERVING_CLUSTER, Stage.ADDING_NODES_TO_CLUSTER]).toContain(stage);
      expect((await c.endpoints.getEndpoint({ name: endpoint }))[0].deployedModels).toEqual([]);

      const list = async (filter: string) => {
        const names: string[] = [];
        for await (const o of c.endpoints.listOperationsAsync({ name: endpoint, filter })) names.push(o.name!);
        return names;
      };
      expect(await list("done=false")).toEqual([op.name]);
      expect(await list("done=true")).toHaveLength(1); // CreateEndpoint's
      const [inFlight] = await c.endpoints.getOperation({ name: op.name! });
      expect(inFlight.done).toBe(false);

      await c.endpoints.cancelOperation({ name: op.name! });
      const cancelled = await failure(op.promise());
      expect(cancelled.code).toBe(1);
      expect((await c.endpoints.getEndpoint({ name: endpoint }))[0].deployedModels).toEqual([]);
      expect(fake.runningServers()).toEqual(servers);
      expect(await list("done=false")).toEqual([]);
      expect(await list("done=true")).toContain(op.name);
      expect(await list("")).toHaveLength(2);

      await c.endpoints.cancelOperation({ name: op.name! }); // done already: nothing happens
      const [after] = await c.endpoints.getOperation({ name: op.name! });
      expect(after).toMatchObject({ done: true, error: { code: 1 } });
      await c.endpoints.deleteOperation({ name: op.name! });
      expect(await failure(c.endpoints.getOperation({ name: op.name! }))).toMatchObject({ code: 5 });
      expect(await failure(list("state=RUNNING"))).toMatchObject({ code: 3 });
    } finally {
      fake.setDeployDelay(0);
    }
  }, LONG);

  it("serving GPU quota: a redeploy next to the serving version needs two and is refused with RESOURCE_EXHAUSTED + ErrorInfo; in-flight deploys hold GPUs; undeploying and cancelling free them; GPU types count apart", async () => {
    const endpoint = await createEndpoint(c, "quota");
    const v2 = await uploadEcho(c, "slow-echo", model.replace(/@.*$/, ""));
    fake.setServingGpuQuota(1);
    try {
      const first = await deploy(c, endpoint, model, L4);
      const refused = await failure(c.endpoints.deployModel(deployRequest(endpoint, v2, L4, { "0": 100, [first]: 0 })));
      expect(refused.code).toBe(8);
      expect(refused.details).toBe("The following quotas are exceeded: CustomModelServingL4GPUsPerProjectPerRegion 2");
      expect(refused.reason).toBe("RESOURCE_QUOTA_EXCEEDED");
      expect(refused.errorInfoMetadata).toMatchObject({ quota_metric: "aiplatform.googleapis.com/custom_model_serving_nvidia_l4_gpus", quota_limit: "CustomModelServingL4GPUsPerProjectPerRegion" });
      // Another GPU type has its own quota.
      const t4 = await deploy(c, endpoint, v2, T4, { "0": 0, [first]: 100 });

      const [undeploy] = await c.endpoints.undeployModel({ endpoint, deployedModelId: first, trafficSplit: { [t4]: 100 } });
      await undeploy.promise();
      fake.setDeployDelay(60_000);
      const [slow] = await c.endpoints.deployModel(deployRequest(endpoint, v2, L4, { "0": 0, [t4]: 100 }));
      expect(await failure(c.endpoints.deployModel(deployRequest(endpoint, model, L4, { "0": 0, [t4]: 100 })))).toMatchObject({ code: 8 });
      await c.endpoints.cancelOperation({ name: slow.name! });
      expect(await failure(slow.promise())).toMatchObject({ code: 1 });
      fake.setDeployDelay(0);
      const again = await deploy(c, endpoint, model, L4, { "0": 100, [t4]: 0 });
      const [ep] = await c.endpoints.getEndpoint({ name: endpoint });
      expect(ep.deployedModels!.map((d) => d.id).sort()).toEqual([again, t4].sort());
    } finally {
      fake.setServingGpuQuota(undefined);
      fake.setDeployDelay(0);
    }
  }, LONG);
});

describe("npm run fakes", () => {
  const script = join(repoRoot, "test", "support", "fakes.ts");
  const run = (args: string[]) => spawnSync(process.execPath, ["--experimental-strip-types", script, ...args], { cwd: repoRoot, encoding: "utf8", timeout: 60_000 });
  const refused = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => (socket.destroy(), resolve(false)));
      socket.once("error", () => resolve(true));
    });

  it("prints the export lines, applies the faults file through a real client, and stops cleanly on SIGINT", async () => {
    const faults = join(work, "faults.json");
    writeFileSync(faults, JSON.stringify([{ method: "ListCustomJobs", code: 14, times: 2, message: "The service is currently unavailable." }]));
    const child = spawn(process.execPath, ["--experimental-strip-types", script, "--faults", faults, "--bucket", "fakes-bucket", "--project", "fakes-project"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      const env: Record<string, string> = {};
      const lines = createInterface({ input: child.stdout });
      for await (const line of lines) {
        const m = /^export ([A-Z_]+)=(.*)$/.exec(line);
        if (m) env[m[1]!] = m[2]!;
        if (env.AVATAR_VERTEX_POLL_MS) break;
      }
      expect(env).toMatchObject({ AVATAR_BACKEND: "vertex", AVATAR_PROJECT: "fakes-project", AVATAR_REGION: "us-central1", AVATAR_BUCKET: "fakes-bucket" });
      expect(env.AVATAR_GCS_ENDPOINT).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(env.AVATAR_VERTEX_ENDPOINT).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(env.AVATAR_VERTEX_DEDICATED_ENDPOINT).toMatch(/^127\.0\.0\.1:\d+$/);
      expect((await fetch(`${env.AVATAR_GCS_ENDPOINT}/storage/v1/b/fakes-bucket`)).status).toBe(200);

      const clients = clientsFor(env.AVATAR_VERTEX_ENDPOINT!);
      try {
        const request = { parent: "projects/fakes-project/locations/us-central1" };
        for (let i = 0; i < 2; i++) expect(await failure(clients.jobs.listCustomJobs(request))).toMatchObject({ code: 14, details: "The service is currently unavailable." });
        expect((await clients.jobs.listCustomJobs(request))[0]).toEqual([]);
      } finally {
        await closeClients(clients);
      }

      child.kill("SIGINT");
      expect(await exited, stderr).toBe(0);
      expect(await refused(Number(env.AVATAR_VERTEX_ENDPOINT!.split(":")[1]))).toBe(true);
      expect(await refused(Number(new URL(env.AVATAR_GCS_ENDPOINT!).port))).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
  }, LONG);

  it("a bad faults file or a bad option exits 2 with a message, before starting anything", () => {
    const write = (name: string, body: string) => {
      const path = join(work, name);
      writeFileSync(path, body);
      return path;
    };
    const unknown = run(["--faults", write("unknown.json", JSON.stringify([{ method: "GetCustomJobz", code: 14, message: "x" }]))]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/fault 1: unknown method "GetCustomJobz"/);
    expect(unknown.stdout).toBe("");
    const code = run(["--faults", write("code.json", JSON.stringify([{ method: "GetCustomJob", code: 42, message: "x" }]))]);
    expect(code.status).toBe(2);
    expect(code.stderr).toMatch(/code must be a gRPC status code 1-16, got 42/);
    const notArray = run(["--faults", write("object.json", JSON.stringify({ method: "GetCustomJob", code: 14 }))]);
    expect(notArray.status).toBe(2);
    expect(notArray.stderr).toMatch(/expected a JSON array/);
    const option = run(["--deploy-delay-ms", "soon"]);
    expect(option.status).toBe(2);
    expect(option.stderr).toMatch(/--deploy-delay-ms takes a whole number/);
  });
});
