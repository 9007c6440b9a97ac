// Which processes a test left behind: servers and trainers are found by a path in their command line.
import { readdirSync, readFileSync } from "node:fs";

/** Command lines of running processes that mention `needle` (the vitest workers themselves excluded). */
export function processesMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmdline.includes(needle) && !cmdline.includes("vitest")) found.push(`${pid}: ${cmdline}`);
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}
