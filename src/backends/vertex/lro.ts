// Waiting for Vertex long-running operations with our own polling loop (interval from
// AVATAR_VERTEX_POLL_MS): each poll is one GetOperation via the client's check<Method>Progress,
// so metadata (e.g. deploymentStage) is seen on every poll and an interrupt stops only the waiting.
import { setTimeout as sleep } from "node:timers/promises";
import { AvatarError } from "../../core/errors.ts";
import { mapOperationError, mapVertexError, type VertexErrorContext } from "./errors.ts";
import { retryRead, type RetryPolicy } from "./retry.ts";

export interface OperationLike<R, M> {
  name?: string | null;
  done?: boolean | null;
  result?: R | null;
  metadata?: M | null;
  error?: { code?: number | null; message?: string | null } | Error | null;
}

export interface WaitOperationOptions<M> {
  intervalMs: number;
  /** GetOperation is a read: retried through transient faults. */
  retry: RetryPolicy;
  signal?: AbortSignal;
  onMetadata?: (metadata: M) => void;
  context: VertexErrorContext;
  /** Message when the signal aborts: the operation itself keeps going on Vertex. */
  interrupted: string;
  interruptedHint?: string;
}

/** Poll intervals: AVATAR_VERTEX_POLL_MS (tests use a few hundred ms), else sensible cloud defaults. */
export function pollIntervals(env: Readonly<Record<string, string | undefined>>): { jobMs: number; operationMs: number } {
  const raw = Number(env.AVATAR_VERTEX_POLL_MS);
  if (Number.isFinite(raw) && raw >= 10) return { jobMs: raw, operationMs: raw };
  return { jobMs: 15_000, operationMs: 5_000 };
}

export async function waitOperation<R, M>(
  first: OperationLike<R, M>,
  check: (name: string) => Promise<OperationLike<R, M>>,
  options: WaitOperationOptions<M>,
): Promise<R> {
  let op = first;
  const name = first.name;
  if (!name && !first.done) throw new AvatarError("INTERNAL", `Vertex AI returned an operation without a name while ${options.context.doing}.`);
  for (;;) {
    if (op.metadata) options.onMetadata?.(op.metadata);
    if (op.error) {
      const status = op.error as { code?: number | null; message?: string | null };
      throw mapOperationError({ code: status.code ?? 2, message: status.message ?? String(op.error) }, options.context);
    }
    if (op.done) return (op.result ?? {}) as R;
    if (options.signal?.aborted) throw new AvatarError("INTERRUPTED", options.interrupted, { hint: options.interruptedHint });
    try {
      await sleep(options.intervalMs, undefined, { signal: options.signal });
    } catch {
      throw new AvatarError("INTERRUPTED", options.interrupted, { hint: options.interruptedHint });
    }
    try {
      // gax already retries GetOperation on UNAVAILABLE/DEADLINE_EXCEEDED (its operations client
      // config); this adds INTERNAL and a --verbose line per retry.
      op = await retryRead(`reading operation ${name}`, () => check(name!), { ...options.retry, signal: options.signal });
    } catch (error) {
      throw mapVertexError(error, options.context);
    }
  }
}
