// The process streams, injectable so command tests can capture both outputs in-process.
import type { Readable, Writable } from "node:stream";

export interface OutStream extends Pick<Writable, "write"> {
  isTTY?: boolean;
  columns?: number;
}
export interface InStream extends Readable {
  isTTY?: boolean;
}
export interface Streams {
  stdin: InStream;
  stdout: OutStream;
  stderr: OutStream;
}

/** The real streams. stdin is a getter: touching process.stdin builds a tty or pipe stream (~2 ms
 * of start-up), and most commands never read it. */
export const processStreams = (): Streams => ({
  get stdin() {
    return process.stdin;
  },
  stdout: process.stdout,
  stderr: process.stderr,
});

export function colorEnabled(stream: OutStream, env: Readonly<Record<string, string | undefined>>): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.FORCE_COLOR && env.FORCE_COLOR !== "0") return true;
  return Boolean(stream.isTTY) && env.TERM !== "dumb";
}
