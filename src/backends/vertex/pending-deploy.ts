// A DeployModel operation outlives the CLI that started it (Ctrl-C, a closed laptop): Vertex lists a
// deployed model on the endpoint only once its deployment has finished, so without a record a
// second `avatar deploy` would start another one and `avatar down` would not see it. The operation's
// name is kept in the bucket beside the avatar's runs, so any machine finds it: `deploy` follows it,
// `down` cancels it and waits for it to end, `status` shows it.
import { text } from "node:stream/consumers";
import { setTimeout as sleep } from "node:timers/promises";
import { AvatarError } from "../../core/errors.ts";
import { checkStoreKey } from "../../core/store-keys.ts";
import { deploymentStageText } from "../../core/vertex-names.ts";
import type { EndpointServiceClient } from "./clients.ts";
import { isNotFound, readRetrying, type VertexContext } from "./context.ts";

export interface PendingDeploy {
  operation: string;
  versionId: string;
  runId: string;
  gpu: string;
  startedAt: string;
}

export interface PendingState extends PendingDeploy {
  done: boolean;
  stage?: string;
  error?: string;
}

export const pendingDeployKey = (name: string) => checkStoreKey(`${name}/serving/deploy-operation.json`);

interface OperationLike {
  done?: boolean | null;
  metadata?: { deploymentStage?: string | number | null } | null;
  error?: { code?: number | null; message?: string | null } | null;
}

export class PendingDeploys {
  readonly #v: VertexContext;
  readonly #endpoints: () => Promise<EndpointServiceClient>;

  constructor(vctx: VertexContext, endpoints: () => Promise<EndpointServiceClient>) {
    this.#v = vctx;
    this.#endpoints = endpoints;
  }

  async record(name: string, pending: PendingDeploy): Promise<void> {
    await this.#v.store.put(pendingDeployKey(name), Buffer.from(`${JSON.stringify(pending, null, 2)}\n`), { contentType: "application/json", overwrite: true });
  }

  async clear(name: string): Promise<void> {
    await this.#v.store.delete(pendingDeployKey(name));
  }

  async #read(name: string): Promise<PendingDeploy | undefined> {
    let body: string;
    try {
      body = await text(await this.#v.store.read(pendingDeployKey(name)));
    } catch (error) {
      if (error instanceof AvatarError && error.code === "NOT_FOUND") return undefined;
      throw error;
    }
    try {
      const parsed = JSON.parse(body) as PendingDeploy;
      return typeof parsed.operation === "string" ? parsed : undefined;
    } catch {
      return undefined; // unreadable: as good as none
    }
  }

  async #operation(name: string): Promise<OperationLike | undefined> {
    const endpoints = await this.#endpoints();
    try {
      // check…Progress decodes the metadata (deploymentStage); getOperation would leave it packed.
      return (await readRetrying(this.#v, `reading operation ${name}`, () => endpoints.checkDeployModelProgress(name))) as unknown as OperationLike;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * The recorded deployment and its state, or undefined when there is none. A record of an
   * operation that has ended (or that Vertex no longer knows) is removed on the way.
   */
  async get(name: string): Promise<PendingState | undefined> {
    const pending = await this.#read(name);
    if (!pending) return undefined;
    const op = await this.#operation(pending.operation);
    if (!op || op.done) {
      await this.clear(name);
      return op ? { ...pending, done: true, ...(op.error?.message ? { error: op.error.message } : {}) } : undefined;
    }
    const stage = deploymentStageText(op.metadata?.deploymentStage ?? undefined);
    return { ...pending, done: false, ...(stage ? { stage } : {}) };
  }

  /** Waits until the operation has ended (polling), then removes the record; returns its error, if any. */
  async follow(name: string, pending: PendingDeploy, options: { signal?: AbortSignal; onStage?: (stage: string) => void } = {}): Promise<string | undefined> {
    let shown: string | undefined;
    for (;;) {
      const op = await this.#operation(pending.operation);
      if (!op || op.done) {
        await this.clear(name);
        return op?.error?.message ?? undefined;
      }
      const stage = deploymentStageText(op.metadata?.deploymentStage ?? undefined);
      if (stage && stage !== shown) options.onStage?.((shown = stage));
      try {
        await sleep(this.#v.poll.operationMs, undefined, { signal: options.signal });
      } catch {
        throw new AvatarError("INTERRUPTED", `Interrupted; the deployment of ${name} v${pending.versionId} continues on Vertex AI.`, {
          hint: `\`avatar status ${name}\` shows it; \`avatar down ${name}\` cancels it.`,
        });
      }
    }
  }

  /** Asks Vertex to cancel the operation (best effort: a deployment near its end may still finish). */
  async cancel(pending: PendingDeploy): Promise<void> {
    const endpoints = await this.#endpoints();
    try {
      await endpoints.cancelOperation({ name: pending.operation } as Parameters<EndpointServiceClient["cancelOperation"]>[0]);
    } catch (error) {
      if (!isNotFound(error) && (error as { code?: unknown }).code !== 9) throw error;
    }
  }
}
