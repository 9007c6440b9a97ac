// `--dry-run` with no Google credentials at all: it plans. The store and the Vertex clients are
// replaced by stand-ins that answer every read with "nothing there" and refuse every write, and
// remember what they could not check, so the command can say so in one line. Without them, the
// first read would make the auth library probe the metadata server for half a minute and then
// fail with "Could not load the default credentials".
import type { Readable } from "node:stream";
import { AvatarError } from "../../core/errors.ts";
import { checkStoreKey, STORE_ROOT } from "../../core/store-keys.ts";
import type { ObjectInfo, ObjectStore } from "../store.ts";

/** What an offline dry run could not look at, in the order it came up. */
export class Unchecked {
  readonly #items = new Set<string>();

  add(what: string): void {
    this.#items.add(what);
  }

  summary(): string | undefined {
    if (this.#items.size === 0) return undefined;
    return `Planned without Google credentials: not checked ${[...this.#items].join(", ")}; the real run may skip some of these requests.`;
  }
}

const noWrite = (what: string) =>
  new AvatarError("INTERNAL", `A dry run without credentials tried to ${what}.`, { hint: "This is a bug in avatar; please report it." });

/** Describes a store key for the one-line note: the kind of object, not its full path. */
function describe(key: string): string {
  if (key.startsWith("_trainer/")) return "whether the trainer package is in the bucket";
  if (/\/datasets\//.test(key)) return "whether the dataset is already in the bucket";
  if (/\/checkpoints\//.test(key)) return "the run's checkpoints";
  if (/\/serving\//.test(key)) return "deployments in flight";
  if (/\/runs\//.test(key)) return "the run's files in the bucket";
  if (/\/outputs\//.test(key)) return "earlier generations in the bucket";
  return `gs:// objects under ${key}`;
}

export class OfflineStore implements ObjectStore {
  readonly kind = "gcs" as const;
  readonly rootUri: string;
  readonly #bucket: string;
  readonly #unchecked: Unchecked;

  constructor(bucket: string, unchecked: Unchecked) {
    this.#bucket = bucket;
    this.#unchecked = unchecked;
    this.rootUri = `gs://${bucket}/${STORE_ROOT}`;
  }

  uri(key: string): string {
    return `gs://${this.#bucket}/${STORE_ROOT}/${checkStoreKey(key)}`;
  }

  async ready(): Promise<void> {
    this.#unchecked.add(`that gs://${this.#bucket} exists`);
  }

  async exists(key: string): Promise<boolean> {
    this.#unchecked.add(describe(key));
    return false;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.#unchecked.add(describe(key));
    return undefined;
  }

  async read(key: string): Promise<Readable> {
    this.#unchecked.add(describe(key));
    throw new AvatarError("NOT_FOUND", `${this.uri(key)} was not read: no Google credentials.`);
  }

  async readUri(uri: string): Promise<Readable> {
    throw new AvatarError("AUTH", `Reading ${uri} needs Google credentials, even in a dry run.`, {
      hint: "Run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS), or pass a local folder.",
    });
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    this.#unchecked.add(describe(prefix));
    return [];
  }

  async put(key: string): Promise<ObjectInfo> {
    throw noWrite(`write ${this.uri(key)}`);
  }

  async delete(key: string): Promise<void> {
    throw noWrite(`delete ${this.uri(key)}`);
  }

  async close(): Promise<void> {}

  unchecked(): string | undefined {
    return this.#unchecked.summary();
  }
}

const NOT_FOUND = 5;

/**
 * A Vertex client stand-in: get and check…Progress calls answer NOT_FOUND, list calls an empty list, anything
 * else (create, deploy, delete, predict …) is refused, since a dry run must never send it.
 */
export function offlineClient(kind: string, unchecked: Unchecked): { close(): Promise<void> } {
  const what: Record<string, string> = {
    JobServiceClient: "earlier training runs",
    ModelServiceClient: "registered models",
    EndpointServiceClient: "endpoints",
    PredictionServiceClient: "endpoints",
  };
  return new Proxy({ close: async () => {} } as Record<string | symbol, unknown>, {
    get(target, property) {
      if (property in target || typeof property !== "string") return target[property];
      if (property === "then") return undefined; // not a promise
      return async () => {
        unchecked.add(what[kind] ?? kind);
        if (/^(get|check)/.test(property)) throw Object.assign(new Error(`${property}: not looked up (no credentials)`), { code: NOT_FOUND });
        if (/^list/.test(property)) return [[], null, null];
        throw noWrite(`call ${kind}.${property}`);
      };
    },
  }) as { close(): Promise<void> };
}
