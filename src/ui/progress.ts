// Byte/step progress: a live bar on a TTY, a line at every quarter elsewhere.
import type { OutStream } from "./streams.ts";
import { formatBytes } from "./format.ts";

export interface Progress {
  update(done: number, total?: number): void;
  done(text?: string): void;
}

export interface ProgressOptions {
  stream: OutStream;
  animate: boolean;
  silent: boolean;
  unit: "bytes" | "steps";
}

function bar(fraction: number, width = 24): string {
  const filled = Math.round(fraction * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

export function startProgress(label: string, total: number | undefined, options: ProgressOptions): Progress {
  if (options.silent) return { update() {}, done() {} };
  const amount = (n: number) => (options.unit === "bytes" ? formatBytes(n) : String(n));
  let known = total;
  let lastQuarter = -1;
  let lastDraw = 0;
  const render = (done: number) => {
    const fraction = known ? Math.min(1, done / known) : 0;
    const pct = known ? `${Math.floor(fraction * 100)}%`.padStart(4) : "";
    return `${label} ${known ? bar(fraction) : ""} ${pct} ${amount(done)}${known ? ` / ${amount(known)}` : ""}`;
  };
  return {
    update(done, newTotal) {
      if (newTotal !== undefined) known = newTotal;
      if (options.animate) {
        const now = Date.now();
        if (now - lastDraw < 80 && done !== known) return;
        lastDraw = now;
        options.stream.write(`\r\u001b[2K${render(done)}`);
        return;
      }
      const quarter = known ? Math.floor((done / known) * 4) : 0;
      if (quarter > lastQuarter) {
        lastQuarter = quarter;
        options.stream.write(`${render(done)}\n`);
      }
    },
    done(text) {
      if (options.animate) options.stream.write("\r\u001b[2K");
      if (text) options.stream.write(`${text}\n`);
    },
  };
}
