// The local backend's object store: a directory with the same layout as the bucket.
// Writes go to a hidden temporary file beside the target and appear by link/rename only once
// complete, so an interrupted write never leaves a complete-looking object.
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { link, mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { AvatarError } from "../../core/errors.ts";
import { checkStoreKey, checkStorePrefix, STORE_ROOT } from "../../core/store-keys.ts";
import type { ObjectInfo, ObjectStore, PutBody, PutOptions } from "../store.ts";

const TEMP_SUFFIX = ".partial";

function isTemp(name: string): boolean {
  return name.startsWith(".") && name.endsWith(TEMP_SUFFIX);
}

function interrupted(): AvatarError {
  return new AvatarError("INTERRUPTED", "Interrupted; nothing was written to the store.");
}

export class LocalStore implements ObjectStore {
  readonly kind = "local" as const;
  /** Absolute path of `<store>/avatar`. */
  readonly root: string;

  constructor(storeDir: string) {
    this.root = resolve(storeDir, STORE_ROOT);
  }

  get rootUri(): string {
    return pathToFileURL(this.root).href;
  }

  /** The file behind a key (the local backend's trainer and server read files directly). */
  path(key: string): string {
    return join(this.root, ...checkStoreKey(key).split("/"));
  }

  uri(key: string): string {
    return pathToFileURL(this.path(key)).href;
  }

  /** The directory is created on the first write; only an existing non-directory is a problem. */
  async ready(): Promise<void> {
    try {
      const s = await stat(this.root);
      if (!s.isDirectory()) throw new AvatarError("CONFIG", `The store ${this.root} is not a folder.`, { hint: "Pick another with --store or AVATAR_STORE." });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw storeError(error, `opening the store ${this.root}`);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.path(key));
      if (!s.isFile()) return undefined;
      return { key, uri: this.uri(key), size: s.size, updated: s.mtime.toISOString() };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
      throw storeError(error, `reading ${this.uri(key)}`);
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.stat(key)) !== undefined;
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<ObjectInfo> {
    const target = this.path(key);
    const dir = dirname(target);
    if (options.signal?.aborted) throw interrupted();
    if (!options.overwrite && (await this.exists(key))) throw alreadyExists(this.uri(key));
    try {
      await mkdir(dir, { recursive: true });
    } catch (error) {
      throw storeError(error, `creating ${dir}`);
    }
    const temp = join(dir, `.${target.slice(dir.length + 1)}.${randomBytes(6).toString("hex")}${TEMP_SUFFIX}`);
    let written = 0;
    const source =
      body instanceof Uint8Array ? Readable.from([body]) : typeof body === "function" ? body() : body;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        written += chunk.length;
        options.onProgress?.(written);
        callback(null, chunk);
      },
    });
    try {
      // flush: fsync before close, so a crash right after the rename cannot expose a torn file.
      await pipeline(source, counter, createWriteStream(temp, { flags: "wx", mode: 0o644, flush: true }), { signal: options.signal });
      if (options.size !== undefined && written !== options.size) {
        throw new AvatarError("INTERNAL", `The write to ${this.uri(key)} produced ${written} bytes where ${options.size} were declared; nothing was stored.`);
      }
      if (options.overwrite) {
        await rename(temp, target);
      } else {
        // link() fails when the target exists: create-only without a check-then-write race.
        try {
          await link(temp, target);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "EEXIST") throw alreadyExists(this.uri(key));
          if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw error;
          // A file system without hard links: fall back to check + rename.
          if (await this.exists(key)) throw alreadyExists(this.uri(key));
          await rename(temp, target);
        }
      }
    } catch (error) {
      if (options.signal?.aborted) throw interrupted();
      throw storeError(error, `writing ${this.uri(key)}`);
    } finally {
      await rm(temp, { force: true }).catch(() => undefined);
    }
    const info = await this.stat(key);
    if (!info) throw new AvatarError("INTERNAL", `${this.uri(key)} vanished right after it was written.`);
    return { ...info, contentType: options.contentType, metadata: options.metadata };
  }

  async read(key: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    const path = this.path(key);
    try {
      const handle = await open(path, "r");
      const s = await handle.stat();
      if (!s.isFile()) {
        await handle.close();
        throw Object.assign(new Error("not a file"), { code: "ENOENT" });
      }
      return handle.createReadStream({ signal: options.signal });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new AvatarError("NOT_FOUND", `${this.uri(key)} does not exist.`, { hint: "Check the name; `avatar list` shows what exists." });
      }
      throw storeError(error, `reading ${this.uri(key)}`);
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkStorePrefix(prefix);
    // Walk only the deepest folder the prefix names, then filter by the full prefix.
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    const start = base ? join(this.root, ...base.split("/")) : this.root;
    const found: ObjectInfo[] = [];
    const walk = async (dir: string, keyPrefix: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return;
        throw storeError(error, `listing ${pathToFileURL(dir).href}`);
      }
      for (const entry of entries) {
        if (entry.name.startsWith(".")) continue;
        const key = keyPrefix ? `${keyPrefix}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || `${key}/`.startsWith(prefix)) await walk(join(dir, entry.name), key);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          const s = await stat(join(dir, entry.name));
          found.push({ key, uri: pathToFileURL(join(dir, entry.name)).href, size: s.size, updated: s.mtime.toISOString() });
        }
      }
    };
    await walk(start, base);
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw storeError(error, `deleting ${this.uri(key)}`);
    }
  }

  async close(): Promise<void> {}

  /** Leftover temporary files of interrupted writes under a prefix (for tests and cleanup). */
  async partials(prefix = ""): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const entry of entries) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (isTemp(entry.name)) out.push(full.slice(this.root.length + 1).split(sep).join("/"));
      }
    };
    await walk(prefix ? join(this.root, ...prefix.replace(/\/$/, "").split("/")) : this.root);
    return out;
  }
}

function alreadyExists(uri: string): AvatarError {
  return new AvatarError("ALREADY_EXISTS", `${uri} already exists.`, { hint: "Objects in the store are never overwritten." });
}

function storeError(error: unknown, doing: string): AvatarError {
  if (error instanceof AvatarError) return error;
  const e = error as NodeJS.ErrnoException;
  const code = e.code ?? "";
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new AvatarError("PERMISSION", `Permission denied while ${doing}.`, { cause: error, hint: "Check the permissions of the store folder, or pick another with --store." });
  }
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new AvatarError("ENVIRONMENT", `Disk full while ${doing}.`, { cause: error, hint: "Free some space or move the store with --store." });
  }
  return new AvatarError("ENVIRONMENT", `Failed while ${doing}: ${e.message ?? String(error)}`, { cause: error });
}
