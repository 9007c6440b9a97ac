// Names, run ids and labels: the contract that lets state be recovered from the cloud alone.
import { badInput } from "./errors.ts";

// The last character is a letter or digit: Vertex endpoint ids (avatar-<name>) must end in one
// (CreateEndpointRequest.endpoint_id), and the check belongs at the first command, not at deploy.
const avatarNamePattern = /^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

export function validateAvatarName(name: string): string {
  if (!avatarNamePattern.test(name)) {
    throw badInput(
      `"${name}" is not a valid avatar name.`,
      "Use 1-40 characters: a lowercase letter first, then lowercase letters, digits or dashes, ending in a letter or digit (e.g. alice or team-bob).",
    );
  }
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
