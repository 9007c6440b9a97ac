// Opens the configured backend for one command and closes it afterwards.
import { openBackend, type Backend } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { pythonProvider } from "./python.ts";

export async function withBackend<T>(ctx: Context, work: (backend: Backend) => Promise<T>): Promise<T> {
  const backend = await openBackend(ctx, { python: pythonProvider(ctx) });
  try {
    const result = await work(backend);
    const unchecked = backend.store.unchecked?.();
    if (unchecked) ctx.out.warn(unchecked);
    return result;
  } finally {
    await backend.close();
  }
}
