// Object keys in the store, relative to its root (`gs://<bucket>/avatar` or `<store>/avatar`).
// The same layout on both backends (design.md, "Storage layout").
import { AvatarError } from "./errors.ts";

/** Every object lives under this prefix of the bucket or store directory. */
export const STORE_ROOT = "avatar";

// A segment may not start with a dot: the local store keeps its temporary files as hidden names.
const segmentPattern = /^[A-Za-z0-9_-][A-Za-z0-9._@+=-]*$/;

/** Why a key is unusable, or undefined. Keys are '/'-separated relative paths without dot segments. */
export function storeKeyProblem(key: string): string | undefined {
  if (key === "") return "is empty";
  if (key.length > 900) return "is longer than 900 characters";
  if (key.startsWith("/") || key.endsWith("/")) return "may not start or end with /";
  for (const segment of key.split("/")) {
    if (segment === "") return "has an empty path segment";
    if (segment === "." || segment === "..") return "has a . or .. segment";
    if (!segmentPattern.test(segment)) return `has an unsupported character in "${segment}"`;
  }
  return undefined;
}

export function checkStoreKey(key: string): string {
  const problem = storeKeyProblem(key);
  if (problem) throw new AvatarError("INTERNAL", `Store key "${key}" ${problem}.`);
  return key;
}

/** A prefix for list(): "" (everything) or a key-like string that may end with "/". */
export function checkStorePrefix(prefix: string): string {
  if (prefix === "") return prefix;
  checkStoreKey(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
  return prefix;
}

export function datasetKey(name: string, sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new AvatarError("INTERNAL", `Not a sha256: "${sha256}".`);
  return checkStoreKey(`${name}/datasets/${sha256}.zip`);
}

export function datasetsPrefix(name: string): string {
  return checkStorePrefix(`${name}/datasets/`);
}
