// `avatar cancel`: stop an avatar's queued or running training job. Vertex: CancelCustomJob, then
// wait for the job to end (the time it ran is billed: "You are charged for training time if you
// cancel", cloud.google.com/vertex-ai/pricing). Local: the trainer subprocess is stopped; its
// checkpoints stay, so the same `avatar train` resumes it.
import type { Backend, TrainingJob } from "../backends/backend.ts";
import type { Context } from "../context.ts";
import { AvatarError } from "../core/errors.ts";

export interface CancelResult {
  name: string;
  /** The jobs cancelled (or, with --dry-run, that would be), as they ended. */
  cancelled: TrainingJob[];
  dryRun: boolean;
}

const active = (j: TrainingJob) => j.state === "running" || j.state === "queued";

export async function cancelTraining(ctx: Context, backend: Backend, input: { name: string; runId?: string }): Promise<CancelResult> {
  const runs = await backend.training.list({ name: input.name });
  const jobs = runs.filter((j) => active(j) && (!input.runId || j.runId === input.runId));
  // Like CancelCustomJob on a job that has ended (FAILED_PRECONDITION), nothing to cancel is an
  // error: a script that cancels expects something to stop, and must learn that it had already ended.
  if (jobs.length === 0) {
    const last = runs.filter((j) => !input.runId || j.runId === input.runId).at(-1);
    throw new AvatarError("NOT_FOUND", `No training job of ${input.name}${input.runId ? ` run ${input.runId}` : ""} is queued or running${last ? ` (the last one is ${last.state})` : ""}.`, {
      hint: `\`avatar status ${input.name}\` lists its runs.`,
    });
  }
  if (ctx.flags.dryRun) return { name: input.name, cancelled: jobs, dryRun: true };
  const what = jobs.map((j) => `run ${j.runId} (${j.state}${j.progress ? `, step ${j.progress.step}/${j.progress.total}` : ""})`).join(", ");
  const billed = backend.kind === "vertex" ? " The time it has run is billed; its checkpoints stay in the bucket." : " Its checkpoints stay: the same `avatar train` resumes it.";
  // Destructive: a script must say --yes (the prompt module refuses without it, exit 2).
  if (!(await ctx.prompts.confirm({ message: `Cancel ${input.name}'s training ${what}?${billed}`, default: false }))) {
    throw new AvatarError("USAGE", "Not confirmed: the training goes on.", { hint: "Pass --yes to cancel without the question." });
  }
  const spinner = await ctx.out.spinner(`Cancelling ${what}`);
  const cancelled: TrainingJob[] = [];
  try {
    for (const job of jobs) {
      await backend.training.cancel(job.id);
      cancelled.push(await backend.training.wait(job.id, { signal: ctx.signal }));
    }
  } catch (error) {
    spinner.fail(`Cancelling ${input.name}'s training failed`);
    throw error;
  }
  spinner.succeed(`Cancelled ${what}`);
  return { name: input.name, cancelled, dryRun: false };
}
