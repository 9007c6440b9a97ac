// The trainer package as the jobs see it: templates/trainer/avatar_trainer/*.py, uploaded once per
// version to <root>/_trainer/<version>/ and run from its /gcs/<bucket>/… FUSE path, by the training
// job and by the smoke job of `avatar doctor --smoke` alike.
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { trainerManifestKey, trainerPackageKey } from "../../core/vertex-names.ts";
import { trainerDir } from "../../paths.ts";
import type { ObjectStore } from "../store.ts";

export interface TrainerPackage {
  version: string;
  files: { name: string; body: Buffer }[];
}

let loaded: Promise<TrainerPackage> | undefined;

/** The package of this installation (read once); the version is __version__ plus a content hash. */
export function loadTrainerPackage(): Promise<TrainerPackage> {
  loaded ??= (async () => {
    const dir = join(trainerDir, "avatar_trainer");
    const names = (await readdir(dir)).filter((n) => n.endsWith(".py")).sort();
    const files = await Promise.all(names.map(async (name) => ({ name, body: await readFile(join(dir, name)) })));
    const hash = createHash("sha256");
    for (const f of files) hash.update(f.name).update("\0").update(f.body).update("\0");
    const init = files.find((f) => f.name === "__init__.py")?.body.toString("utf8") ?? "";
    const semver = /__version__\s*=\s*"([^"]+)"/.exec(init)?.[1] ?? "0";
    return { version: `${semver.replace(/[^A-Za-z0-9.-]/g, "-")}-${hash.digest("hex").slice(0, 12)}`, files };
  })();
  return loaded;
}

/** Store keys of the package's objects, the manifest last (the order they are written in). */
export function trainerPackageKeys(pkg: TrainerPackage): string[] {
  return [...pkg.files.map((f) => `${trainerPackageKey(pkg.version)}/avatar_trainer/${f.name}`), trainerManifestKey(pkg.version)];
}

/** Uploads the package unless its manifest (written last, so it marks a complete upload) exists. True when uploaded now. */
export async function ensureTrainerPackage(store: ObjectStore, pkg: TrainerPackage): Promise<boolean> {
  if (await store.exists(trainerManifestKey(pkg.version))) return false;
  for (const file of pkg.files) {
    await store.put(`${trainerPackageKey(pkg.version)}/avatar_trainer/${file.name}`, file.body, { contentType: "text/x-python", overwrite: true });
  }
  const manifest = { version: pkg.version, files: pkg.files.map((f) => ({ name: `avatar_trainer/${f.name}`, sha256: createHash("sha256").update(f.body).digest("hex") })) };
  await store.put(trainerManifestKey(pkg.version), Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), { contentType: "application/json", overwrite: true });
  return true;
}
