// One error type for everything the user should see as a message rather than a stack trace.
// Only src/main.ts turns these into exit codes.

export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  remoteFailed: 3,
  auth: 4,
  quota: 5,
  notFound: 6,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorCode =
  | "USAGE"
  | "BAD_INPUT"
  | "CONFIG"
  | "NOT_AVAILABLE"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "AUTH"
  | "PERMISSION"
  | "QUOTA"
  | "UNAVAILABLE"
  | "REMOTE_FAILED"
  | "ENVIRONMENT"
  | "INTERRUPTED"
  | "INTERNAL";

const exitCodeOf: Record<ErrorCode, ExitCode> = {
  USAGE: ExitCode.usage,
  BAD_INPUT: ExitCode.usage,
  CONFIG: ExitCode.usage,
  NOT_AVAILABLE: ExitCode.usage,
  NOT_FOUND: ExitCode.notFound,
  ALREADY_EXISTS: ExitCode.usage,
  AUTH: ExitCode.auth,
  PERMISSION: ExitCode.auth,
  QUOTA: ExitCode.quota,
  UNAVAILABLE: ExitCode.remoteFailed,
  REMOTE_FAILED: ExitCode.remoteFailed,
  ENVIRONMENT: ExitCode.failure,
  INTERRUPTED: ExitCode.interrupted,
  INTERNAL: ExitCode.failure,
};

export interface AvatarErrorOptions {
  hint?: string;
  cause?: unknown;
  exitCode?: ExitCode;
  /** Machine-readable context, shown as error.details in the --json envelope (e.g. prepare's per-file report). */
  details?: Record<string, unknown>;
}

export class AvatarError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AvatarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AvatarError";
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? exitCodeOf[code];
    this.details = options.details;
  }
}

export const usageError = (message: string, hint?: string) => new AvatarError("USAGE", message, { hint });
export const badInput = (message: string, hint?: string) => new AvatarError("BAD_INPUT", message, { hint });
export const notFound = (message: string, hint?: string) => new AvatarError("NOT_FOUND", message, { hint });

export function isAvatarError(error: unknown): error is AvatarError {
  return error instanceof AvatarError;
}
