// Reads that long waits depend on survive transient faults. The aiplatform client's config marks
// every method non_idempotent with no retry codes (research/vertex-real-behaviour.md), so a single
// UNAVAILABLE during a three-hour training wait or a twenty-minute deploy would end the command
// while the job goes on billing. Reads (Get*, List*, GetOperation, the trainer's log object) are
// retried here; calls that create or change something never are: they are not provably idempotent.
import { setTimeout as sleep } from "node:timers/promises";
import { AvatarError } from "../../core/errors.ts";

/** DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE. */
const TRANSIENT_CODES = new Set([4, 13, 14]);

/** Consecutive failures of one read before the command gives up (about two minutes of outage). */
export const READ_ATTEMPTS = 8;

export interface RetryPolicy {
  attempts: number;
  firstDelayMs: number;
  maxDelayMs: number;
  /** One line per retry (shown with --verbose). */
  onRetry?: (line: string) => void;
  signal?: AbortSignal;
}

/** Real Vertex: 2 s doubling to 30 s. With a fast test poll interval, the same shape scaled down. */
export function retryPolicy(pollMs: number, onRetry?: (line: string) => void): RetryPolicy {
  const firstDelayMs = Math.min(2000, pollMs);
  return { attempts: READ_ATTEMPTS, firstDelayMs, maxDelayMs: firstDelayMs * 15, onRetry };
}

export function isTransient(error: unknown): boolean {
  if (error instanceof AvatarError) return error.code === "UNAVAILABLE";
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "number") return TRANSIENT_CODES.has(code);
  return typeof code === "string" && ["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EAI_AGAIN", "EPIPE"].includes(code);
}

function shortText(error: unknown): string {
  const e = error as { details?: string; message?: string } | null;
  return (e?.details || e?.message || String(error)).split("\n")[0]!.slice(0, 200);
}

/** Runs `read`, retrying transient failures with backoff; the last failure is thrown as it came. */
export async function retryRead<T>(what: string, read: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (error) {
      if (!isTransient(error) || attempt >= policy.attempts || policy.signal?.aborted) throw error;
      const delay = Math.min(policy.maxDelayMs, policy.firstDelayMs * 2 ** (attempt - 1));
      policy.onRetry?.(`retry ${attempt}/${policy.attempts - 1} ${what} in ${(delay / 1000).toFixed(1)} s: ${shortText(error)}`);
      try {
        await sleep(delay, undefined, { signal: policy.signal });
      } catch {
        throw error; // interrupted while waiting to retry: the caller handles the abort
      }
    }
  }
}
