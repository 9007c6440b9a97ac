// Validation rules for config values, written as predicates returning a reason (or undefined).

export function regionProblem(value: string): string | undefined {
  return /^[a-z]+-[a-z]+[0-9]+$/.test(value) ? undefined : "is not a region like us-central1 or europe-west4";
}

export function projectProblem(value: string): string | undefined {
  return /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/.test(value)
    ? undefined
    : "is not a project id (6-30 lowercase letters, digits or dashes, starting with a letter)";
}

/** Cloud Storage bucket naming rules (the subset that applies to names without dots domains). */
export function bucketProblem(value: string): string | undefined {
  if (value.startsWith("gs://")) return "must be a bare bucket name, without gs://";
  if (value.length < 3 || value.length > 63) return "must be 3-63 characters long";
  if (!/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/.test(value)) {
    return "may contain only lowercase letters, digits, dashes, underscores and dots, and must start and end with a letter or digit";
  }
  if (value.startsWith("goog") || /g(o|0)(o|0)gle/.test(value)) return 'may not start with "goog" or contain "google"';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(value)) return "may not look like an IP address";
  if (value.includes("..")) return "may not contain two dots in a row";
  return undefined;
}
