// What the vertex services share: location, bucket, store, clients, poll intervals.
import type { VertexLocation } from "../../core/vertex-names.ts";
import type { ObjectStore } from "../store.ts";
import type { VertexClients } from "./clients.ts";
import type { VertexErrorContext } from "./errors.ts";
import { retryRead, type RetryPolicy } from "./retry.ts";

export interface VertexContext {
  loc: VertexLocation;
  bucket: string;
  store: ObjectStore;
  clients: VertexClients;
  env: Readonly<Record<string, string | undefined>>;
  poll: { jobMs: number; operationMs: number };
  /** AVATAR_VERTEX_ENDPOINT is set: a local fake plays Vertex (and runs jobs on this machine). */
  emulated: boolean;
  /** How reads are retried through transient faults. */
  retry: RetryPolicy;
  /** A dry run without credentials: every read answers "nothing there" (see offline.ts). */
  offline: boolean;
}

/** A read (Get*, List*, GetOperation, a log object) retried through transient faults. */
export function readRetrying<T>(vctx: VertexContext, what: string, read: () => Promise<T>): Promise<T> {
  return retryRead(what, read, vctx.retry);
}

export function errorContext(vctx: VertexContext, doing: string, extra: Partial<VertexErrorContext> = {}): VertexErrorContext {
  return { doing, region: vctx.loc.region, project: vctx.loc.project, ...extra };
}

/** gRPC NOT_FOUND (code 5). */
export const isNotFound = (error: unknown) => (error as { code?: unknown } | null)?.code === 5;
