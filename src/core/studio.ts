// Studios: one endpoint (one GPU) serving many avatars of one base, through handler.py's studio
// mode. A studio is a model + endpoint named `studio-<studio>` (labels avatar=studio-<studio>,
// avatar-studio=<studio>) and a manifest in the store that says which avatars it serves and where
// each one's registered LoRA lives. Adding or removing an avatar rewrites the manifest only: the
// running handler re-reads it when its generation changes. Pure: no I/O here.
import { MANAGED_BY, MAX_NAME_LENGTH, checkResourceName } from "./names.ts";
import type { AvatarManifest } from "./run-keys.ts";
import { checkStoreKey, checkStorePrefix } from "./store-keys.ts";

export const STUDIO_PREFIX = "studio-";
export const STUDIO_LABEL = "avatar-studio";
export const STUDIOS_PREFIX = "_studios/";

// The same rules as avatar names, 7 characters shorter: `studio-<name>` is a resource name too.
export const validateStudioName = (name: string): string => checkResourceName(name, "studio", MAX_NAME_LENGTH - STUDIO_PREFIX.length, "family");

/** The name a studio's model and endpoint go by in the registry and serving (`studio-family`). */
export const studioResource = (studio: string) => `${STUDIO_PREFIX}${studio}`;

/**
 * The studio a model or endpoint belongs to, or undefined for an avatar's own: its avatar-studio
 * label, else its name (avatar names may not start with studio-, so `studio-<x>` is always a studio's).
 */
export function studioOf(resource: { name: string; labels?: Record<string, string> }): string | undefined {
  const label = resource.labels?.[STUDIO_LABEL];
  if (label) return label;
  return resource.name.startsWith(STUDIO_PREFIX) ? resource.name.slice(STUDIO_PREFIX.length) : undefined;
}

export function studioLabels(studio: string, runId: string): Record<string, string> {
  return { avatar: studioResource(studio), [STUDIO_LABEL]: studio, "avatar-run": runId, "managed-by": MANAGED_BY };
}

export const studioManifestKey = (studio: string) => checkStoreKey(`${STUDIOS_PREFIX}${studio}/manifest.json`);
export const studioModelKey = (studio: string) => checkStoreKey(`${STUDIOS_PREFIX}${studio}/model`);
export const studiosPrefix = () => checkStorePrefix(STUDIOS_PREFIX);

/** The studio a manifest key belongs to (`_studios/<studio>/manifest.json`), or undefined. */
export function studioOfManifestKey(key: string): string | undefined {
  const match = /^_studios\/([a-z][a-z0-9-]*)\/manifest\.json$/.exec(key);
  return match?.[1];
}

export interface StudioAvatarEntry {
  /** The avatar's registered model directory (its version's artifact URI: gs:// or file://). */
  model_uri: string;
  run_id: string;
  version: string;
  added_at: string;
}

/** `_studios/<studio>/manifest.json`: what the studio serves. The handler reads the same file. */
export interface StudioManifest {
  schema: 1;
  studio: string;
  pipeline: "sd15" | "sdxl";
  base_model: string;
  base_revision?: string | null;
  updated_at: string;
  avatars: Record<string, StudioAvatarEntry>;
}

/** `studio.json` in the studio's model directory: the base to load and where the manifest is. */
export interface StudioModelJson {
  schema: 1;
  studio: string;
  pipeline: "sd15" | "sdxl";
  base_model: string;
  base_revision?: string | null;
  manifest: string;
}

export function studioModelJson(manifest: StudioManifest, manifestUri: string): StudioModelJson {
  const { studio, pipeline, base_model, base_revision } = manifest;
  return { schema: 1, studio, pipeline, base_model, ...(base_revision !== undefined ? { base_revision } : {}), manifest: manifestUri };
}

export function emptyStudioManifest(studio: string, avatar: AvatarManifest, now = new Date()): StudioManifest {
  return {
    schema: 1,
    studio,
    pipeline: avatar.pipeline,
    base_model: avatar.base_model,
    ...(avatar.base_revision !== undefined ? { base_revision: avatar.base_revision } : {}),
    updated_at: now.toISOString(),
    avatars: {},
  };
}

/** Why `avatar` cannot join the studio (all its avatars share the base loaded once), or undefined. */
export function baseMismatch(studio: StudioManifest, avatar: AvatarManifest): string | undefined {
  const describe = (m: { pipeline: string; base_model: string; base_revision?: string | null }) =>
    `${m.pipeline} (${m.base_model}${m.base_revision ? `@${m.base_revision.slice(0, 7)}` : ""})`;
  const sameRevision = (studio.base_revision ?? null) === (avatar.base_revision ?? null);
  if (studio.pipeline === avatar.pipeline && studio.base_model === avatar.base_model && sameRevision) return undefined;
  return `${avatar.name} was trained on ${describe(avatar)}, but studio ${studio.studio} serves ${describe(studio)}: all avatars of a studio share one base model, loaded once on its GPU`;
}

export function withAvatar(manifest: StudioManifest, name: string, entry: Omit<StudioAvatarEntry, "added_at">, now = new Date()): StudioManifest {
  const previous = manifest.avatars[name];
  const same = previous && previous.model_uri === entry.model_uri && previous.run_id === entry.run_id;
  return {
    ...manifest,
    updated_at: now.toISOString(),
    avatars: { ...manifest.avatars, [name]: { ...entry, added_at: same ? previous.added_at : now.toISOString() } },
  };
}

export function withoutAvatars(manifest: StudioManifest, names: string[], now = new Date()): StudioManifest {
  const avatars = Object.fromEntries(Object.entries(manifest.avatars).filter(([n]) => !names.includes(n)));
  return { ...manifest, updated_at: now.toISOString(), avatars };
}

/** Why a parsed manifest is unusable, or undefined. */
export function studioManifestProblem(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return "is not a JSON object";
  const m = value as Record<string, unknown>;
  if (m.schema !== 1) return `has schema ${String(m.schema)}, expected 1`;
  if (typeof m.studio !== "string" || typeof m.base_model !== "string") return 'has no "studio" or "base_model"';
  if (m.pipeline !== "sd15" && m.pipeline !== "sdxl") return `has an unknown pipeline "${String(m.pipeline)}"`;
  if (typeof m.avatars !== "object" || m.avatars === null) return 'has no "avatars"';
  return undefined;
}

/** A service account's email (user-managed `x@p.iam.gserviceaccount.com`, or a Google-managed one). */
export const isServiceAccountEmail = (email: string) => /^[a-z0-9][a-z0-9-]*@[a-z0-9][a-z0-9.-]*\.gserviceaccount\.com$/.test(email);

/** Bucket roles that let a principal read objects (storage.objects.get). */
export const OBJECT_READ_ROLES = ["roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin", "roles/storage.admin", "roles/storage.legacyObjectReader", "roles/storage.legacyObjectOwner"];

/** The role of a bucket IAM policy that lets `email` (a service account) read objects, or undefined. */
export function bucketReadRole(policy: { bindings?: { role?: string | null; members?: string[] | null; condition?: unknown }[] | null }, email: string): string | undefined {
  const member = `serviceAccount:${email}`;
  return (policy.bindings ?? []).find((b) => !b.condition && OBJECT_READ_ROLES.includes(b.role ?? "") && (b.members ?? []).includes(member))?.role ?? undefined;
}
