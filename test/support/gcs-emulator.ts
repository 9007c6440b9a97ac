// Starts fake-gcs-server (fsouza, Go) on 127.0.0.1 with a free port and the in-memory backend, for
// tests that run the real @google-cloud/storage client against it through `apiEndpoint`.
// The binary comes from `.tools/bin` (or $AVATAR_FAKE_GCS); a missing binary is a failure, not a skip.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Storage, type StorageOptions } from "@google-cloud/storage";

type RetryOptions = NonNullable<StorageOptions["retryOptions"]>;

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export const INSTALL_HINT =
  "Install it with: GOTOOLCHAIN=local GOBIN=$PWD/.tools/bin go install github.com/fsouza/fake-gcs-server@v1.55.1 (needs Go >= 1.25), or run `npm test`, which builds it.";

export function emulatorBinary(): string {
  const path = process.env.AVATAR_FAKE_GCS || join(repoRoot, ".tools", "bin", "fake-gcs-server");
  if (!existsSync(path)) throw new Error(`fake-gcs-server not found at ${path}. ${INSTALL_HINT}`);
  return path;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

export interface GcsEmulator {
  /** http://127.0.0.1:<port>: the value for apiEndpoint / AVATAR_GCS_ENDPOINT. */
  endpoint: string;
  port: number;
  /** A real client pointed at the emulator. */
  storage(retryOptions?: RetryOptions): Storage;
  createBucket(name: string): Promise<void>;
  /** Every object in a bucket: name → bytes. */
  objects(bucket: string): Promise<Map<string, Buffer>>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

async function waitHealthy(endpoint: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`fake-gcs-server exited with ${child.exitCode}: ${stderr()}`);
    try {
      const response = await fetch(`${endpoint}/_internal/healthcheck`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`fake-gcs-server did not become healthy at ${endpoint}: ${stderr()}`);
}

export async function startGcsEmulator(): Promise<GcsEmulator> {
  const binary = emulatorBinary();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const child = spawn(
      binary,
      ["-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "memory", "-log-level", "warn", "-external-url", endpoint, "-public-host", `127.0.0.1:${port}`],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
    try {
      await waitHealthy(endpoint, child, () => stderr);
    } catch (error) {
      lastError = error;
      child.kill("SIGKILL");
      continue;
    }
    const make = (retryOptions?: RetryOptions) =>
      new Storage({ apiEndpoint: endpoint, projectId: "avatar-test", ...(retryOptions ? { retryOptions } : {}) });
    const admin = make();
    return {
      endpoint,
      port,
      storage: (retryOptions) => make(retryOptions),
      async createBucket(name) {
        await admin.createBucket(name);
      },
      async objects(bucket) {
        const [files] = await admin.bucket(bucket).getFiles();
        const out = new Map<string, Buffer>();
        for (const f of files) out.set(f.name, (await f.download())[0]);
        return out;
      },
      async reset() {
        await fetch(`${endpoint}/_internal/delete_all`, { method: "POST" });
      },
      stop() {
        return new Promise<void>((resolve) => {
          if (child.exitCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
          setTimeout(() => child.kill("SIGKILL"), 2000).unref();
        });
      },
    };
  }
  throw lastError;
}

/**
 * A TCP proxy in front of the emulator that can cut every connection: the way to make an upload
 * fail half-way ("the network dropped") without touching the client.
 */
export interface CuttingProxy {
  endpoint: string;
  /** Bytes forwarded from clients to the server so far. */
  readonly clientBytes: number;
  /**
   * Cut all connections once this many client bytes have passed (from now). By default new
   * connections are refused until heal(); with { once: true } only the live ones are cut.
   */
  cutAfter(bytes: number, options?: { once?: boolean }): void;
  /** Stop forwarding client data after this many bytes, keeping connections open (a stalled network). */
  stallAfter(bytes: number): void;
  /** How many times connections were cut. */
  readonly cuts: number;
  /** The start (request line and headers) of every HTTP request clients sent, as text. */
  readonly heads: string[];
  /** Accept and forward connections again. */
  heal(): void;
  close(): Promise<void>;
}

export async function startCuttingProxy(targetPort: number): Promise<CuttingProxy> {
  let forwarded = 0;
  let limit = Infinity;
  let cut = false;
  let once = false;
  let cuts = 0;
  let stallAt = Infinity;
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const cutAll = () => {
    cuts++;
    cut = !once;
    limit = Infinity;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  const server: Server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("data", (chunk: Buffer) => {
      if (cut || !sockets.has(client)) return drop();
      const start = chunk.subarray(0, 4096).toString("latin1");
      if (/^(GET|POST|PUT|PATCH|DELETE|HEAD) \//.test(start)) heads.push(start);
      if (forwarded >= stallAt) return;
      if (forwarded + chunk.length > stallAt) {
        const room = stallAt - forwarded;
        upstream.write(chunk.subarray(0, room));
        forwarded = stallAt;
        return;
      }
      const room = limit - forwarded;
      if (chunk.length >= room) {
        if (room > 0) upstream.write(chunk.subarray(0, room));
        forwarded += Math.max(0, room);
        cutAll();
        return;
      }
      forwarded += chunk.length;
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!cut) client.write(chunk);
    });
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
  });
  const port = await new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)),
  );
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get clientBytes() {
      return forwarded;
    },
    get cuts() {
      return cuts;
    },
    heads,
    cutAfter(bytes, options = {}) {
      once = options.once === true;
      limit = forwarded + bytes;
    },
    stallAfter(bytes) {
      stallAt = forwarded + bytes;
    },
    heal() {
      cut = false;
      limit = Infinity;
      stallAt = Infinity;
    },
    close() {
      once = false;
      cutAll();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
