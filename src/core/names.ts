// Names, run ids and labels: the contract that lets state be recovered from the cloud alone.
import { badInput } from "./errors.ts";

export const MAX_NAME_LENGTH = 40;

/**
 * A name that becomes part of resource names (avatar-<name>, studio-<name>). The last character is a
 * letter or digit: Vertex endpoint ids must end in one (CreateEndpointRequest.endpoint_id), and the
 * check belongs at the first command, not at deploy.
 */
export function checkResourceName(name: string, kind: string, maxLength: number, example: string): string {
  const pattern = new RegExp(`^[a-z](?:[a-z0-9-]{0,${maxLength - 2}}[a-z0-9])?$`);
  if (!pattern.test(name)) {
    throw badInput(
      `"${name}" is not a valid ${kind} name.`,
      `Use 1-${maxLength} characters: a lowercase letter first, then lowercase letters, digits or dashes, ending in a letter or digit (e.g. ${example}).`,
    );
  }
  return name;
}

export function validateAvatarName(name: string): string {
  checkResourceName(name, "avatar", MAX_NAME_LENGTH, "alice or team-bob");
  // Studios (core/studio.ts) go by studio-<name> in the registry and serving.
  if (name.startsWith("studio-")) throw badInput(`"${name}" is reserved: names starting with studio- belong to studios.`, "Pick another avatar name (e.g. without the studio- prefix).");
  return name;
}

/** Run ids are UTC timestamps, so they sort in time order and are valid label values. */
export function newRunId(now: Date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  const date = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}`;
  const time = `${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`;
  return `${date}-${time}`;
}

export function isRunId(value: string): boolean {
  return /^\d{8}-\d{6}$/.test(value);
}

export const MANAGED_BY = "avatar-cli";

export function resourceLabels(name: string, runId?: string): Record<string, string> {
  const labels: Record<string, string> = { avatar: name, "managed-by": MANAGED_BY };
  if (runId) labels["avatar-run"] = runId;
  return labels;
}
