// Types of tools.mjs for the TypeScript callers.
import type { StdioOptions } from "node:child_process";

export declare const repoRoot: string;
export declare const toolsBin: string;
export declare const FAKE_GCS_MODULE: string;
export declare function ensureFakeGcsServer(options?: { stdio?: StdioOptions }): string;
