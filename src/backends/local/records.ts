// JSON records of the local backend (jobs, endpoints, registry): atomic writes, tolerant reads.
import { mkdir, open, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";

export async function readRecord<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Temp file + rename: a reader never sees half a record, even if this process dies mid-write. */
export async function writeRecord(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  // Unique per write: two writers in one process (a wait loop and a child's exit) may overlap.
  const temp = join(dirname(path), `.${randomUUID()}.tmp`);
  await writeFile(temp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(temp, path);
}

export async function removeRecord(path: string): Promise<void> {
  await rm(path, { force: true });
}

export async function listRecords<T>(dir: string): Promise<T[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const records = await Promise.all(names.filter((n) => n.endsWith(".json") && !n.startsWith(".")).sort().map((n) => readRecord<T>(join(dir, n))));
  return records.filter((r): r is Awaited<T> => r !== undefined) as T[];
}

export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Reads the lines appended to a file since `offset`; returns them and the new offset. */
export async function readNewLines(path: string, offset: number, partial: string): Promise<{ lines: string[]; offset: number; partial: string }> {
  let chunk: Buffer;
  try {
    const handle = await open(path, "r");
    try {
      const { size } = await handle.stat();
      if (size <= offset) return { lines: [], offset, partial };
      chunk = Buffer.alloc(size - offset);
      await handle.read(chunk, 0, chunk.length, offset);
      offset = size;
    } finally {
      await handle.close();
    }
  } catch {
    return { lines: [], offset, partial };
  }
  const text = partial + chunk.toString("utf8");
  const lines = text.split("\n");
  return { lines: lines.slice(0, -1), offset, partial: lines[lines.length - 1] ?? "" };
}

export async function tailLines(path: string, count: number): Promise<string[]> {
  try {
    const lines = (await readFile(path, "utf8")).split("\n").filter((l) => l.length > 0);
    return lines.slice(-count);
  } catch {
    return [];
  }
}
