// Long-running operations: the records every LRO method starts, and google.longrunning.Operations
// (Get, List, Cancel, Delete) over them, on the same host as the services (the clients' mixins).
import { invalid, notFound, pack, parseName, RpcError, S, timestamp, type Any } from "./common.ts";
import type { Ctx, Handler, OperationRecord } from "./types.ts";

export function operationTools(ctx: Pick<Ctx, "operations" | "nextId" | "track">, opFailures: Map<string, { code: number; message: string }[]>) {
  function operation(resource: string, metadataType: string, metadata: object, options: { cancellable?: boolean } = {}): OperationRecord {
    const op: OperationRecord = {
      name: `${resource}/operations/${ctx.nextId()}`,
      done: false,
      metadataType,
      metadata: { genericMetadata: { createTime: timestamp(), updateTime: timestamp() }, ...metadata },
      abort: new AbortController(),
      cancellable: options.cancellable === true,
    };
    ctx.operations.set(op.name, op);
    return op;
  }

  function wire(op: OperationRecord) {
    return {
      name: op.name,
      done: op.done,
      metadata: pack(op.metadataType, op.metadata),
      ...(op.error ? { error: { code: op.error.code, message: op.error.message, details: [] } } : op.response ? { response: op.response } : {}),
    };
  }

  function run(method: string, op: OperationRecord, work: () => Promise<Any>) {
    const injected = opFailures.get(method)?.shift();
    const task = (async () => {
      try {
        if (injected) throw new RpcError(injected.code, injected.message);
        op.response = await work();
      } catch (error) {
        const e = error instanceof RpcError ? error : new RpcError(S.INTERNAL, String((error as Error)?.message ?? error));
        op.error = { code: e.code, message: e.message };
      } finally {
        op.metadata.genericMetadata.updateTime = timestamp();
        op.done = true;
      }
    })();
    ctx.track(task);
    return wire(op);
  }

  return { operation, wire, run };
}

/** `done=false`, `done = true`, or nothing: the filters the fake knows for ListOperations. */
function doneFilter(filter: string): (op: OperationRecord) => boolean {
  if (!filter.trim()) return () => true;
  const m = /^\s*done\s*=\s*(true|false)\s*$/.exec(filter);
  if (!m) throw invalid(`fake: unsupported operations filter "${filter}" (the fake knows done=true and done=false)`);
  const done = m[1] === "true";
  return (op) => op.done === done;
}

export function operationsService(ctx: Ctx, unary: (method: string, handler: Handler) => unknown) {
  const find = (name: string) => {
    const op = ctx.operations.get(name);
    if (!op) throw notFound(`Operation ${name} not found.`);
    return op;
  };
  return {
    GetOperation: unary("GetOperation", (req) => ctx.wire(find(req.name))),
    // The operations of one resource (projects/…/endpoints/<id>) or of a whole location
    // (projects/…/locations/<region>), newest first. The name may use the project id or number.
    ListOperations: unary("ListOperations", (req) => {
      const p = parseName(req.name);
      const prefix = p.collection ? `${ctx.loc(p)}/${p.collection}/${p.id}/operations/` : `${ctx.loc(p)}/`;
      const match = doneFilter(req.filter ?? "");
      const operations = [...ctx.operations.values()].filter((op) => op.name.startsWith(prefix) && match(op)).reverse();
      return { operations: operations.map((op) => ctx.wire(op)), nextPageToken: "" };
    }),
    // google.longrunning: "On successful cancellation, the operation is not deleted; instead, it becomes
    // an operation with an Operation.error value with a google.rpc.Status.code of 1" — best effort: a
    // done operation stays as it is. The fake stops only a DeployModel in flight (nothing gets deployed);
    // the others finish as they would have. The message text of a cancelled Vertex operation is not
    // confirmed ("Operation was cancelled." is the fake's).
    CancelOperation: unary("CancelOperation", (req) => {
      const op = find(req.name);
      if (!op.done && op.cancellable) op.abort.abort(new RpcError(S.CANCELLED, "Operation was cancelled."));
      return {};
    }),
    // "The client is no longer interested in the operation result. It does not cancel the operation."
    DeleteOperation: unary("DeleteOperation", (req) => {
      find(req.name);
      ctx.operations.delete(req.name);
      return {};
    }),
  };
}
