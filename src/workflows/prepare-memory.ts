// Keeps peak memory flat while thousands of megabytes of photos flow through Buffers.
// A Buffer's memory returns only when V8 collects its (tiny) JS wrapper, and with the small JS heap
// of this CLI V8 collects rarely: without help, RSS grows with the folder size (measured: +100 MB
// for 500 photos). A full collection every few dozen megabytes costs a few milliseconds each.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

let collect: (() => void) | null | undefined;

function collector(): (() => void) | null {
  if (collect === undefined) {
    try {
      const exposed = (globalThis as { gc?: () => void }).gc;
      if (typeof exposed === "function") collect = exposed;
      else {
        // The documented way to reach gc() without starting node with --expose-gc.
        setFlagsFromString("--expose-gc");
        collect = runInNewContext("gc") as () => void;
      }
    } catch {
      collect = null;
    }
  }
  return collect;
}

export class MemoryPacer {
  #since = 0;
  readonly #every: number;

  constructor(everyBytes = 16 * 1024 * 1024) {
    this.#every = everyBytes;
  }

  /** Counts bytes that went through Buffers; collects garbage every `everyBytes`. */
  add(bytes: number): void {
    this.#since += bytes;
    if (this.#since >= this.#every) {
      this.#since = 0;
      collector()?.();
    }
  }
}
