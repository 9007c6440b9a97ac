// The local backend: directory store, subprocess trainer, JSON registry, local serving container.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Context } from "../../context.ts";
import { AvatarError } from "../../core/errors.ts";
import { STORE_ROOT } from "../../core/store-keys.ts";
import type { Backend } from "../backend.ts";
import { LocalStore } from "./store.ts";
import { LocalRegistry } from "./registry.ts";
import { LocalServing } from "./serving.ts";
import { LocalTraining } from "./training.ts";

export interface LocalBackendOptions {
  /** Returns the venv's python, creating the environment on first use. */
  python: () => Promise<string>;
}

export function openLocalBackend(ctx: Pick<Context, "config" | "env">, options: LocalBackendOptions): Backend {
  const { store: storeDir, home } = ctx.config.values;
  const store = new LocalStore(storeDir);
  const root = join(storeDir, STORE_ROOT);
  const storePath = (key: string) => join(root, key);
  const modelDir = (artifactUri: string) => {
    if (!artifactUri.startsWith("file://")) {
      throw new AvatarError("BAD_INPUT", `The local backend serves file:// models, not ${artifactUri}.`, { hint: "Use --backend vertex for gs:// models." });
    }
    return fileURLToPath(artifactUri);
  };
  return {
    kind: "local",
    store,
    training: new LocalTraining({ dir: join(home, "jobs"), storePath, storeUri: (k) => store.uri(k), python: options.python, env: ctx.env }),
    registry: new LocalRegistry(root, (k) => store.uri(k)),
    serving: new LocalServing({ dir: join(home, "endpoints"), modelDir, python: options.python, env: ctx.env, gpu: ctx.config.sources.gpu === "default" ? undefined : ctx.config.values.gpu }),
    close: () => store.close(),
  };
}
