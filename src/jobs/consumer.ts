// The queue consumer: for each message, ask the job's object whether to run it, run it holding a
// renewed lease (and within a time cap), report the outcome, and ack / retry / re-send each message explicitly. A slot
// wait sends a fresh delayed message (so waiting never uses up delivery attempts); a transient failure retries the
// same message with backoff; a job that failed for good after its attempts is forwarded to the
// dead-letter queue. Messages on the dead-letter queue make sure their job ends FAIL with a cause.
import { Codes } from "../errors.ts";
import { log } from "../shared/log.ts";
import { JOB_HEARTBEAT_MS, JOB_RUN_TIMEOUT_MS } from "./config.ts";
import { runJob } from "./run.ts";
import { jobStub, JOB_ID_RE } from "./store.ts";
import type { JobMessage, MessageAction, RunOutcome } from "./types.ts";

/** The dead-letter queue is named after the job queue with this suffix (wrangler.toml). */
export const DLQ_SUFFIX = "-dlq";
/** Delay for a message whose handling broke before its job's object could decide (object unreachable). */
const ERROR_RETRY_S = 10;

export function parseJobMessage(body: unknown): JobMessage | null {
  const job = (body as { job?: unknown } | null)?.job;
  return typeof job === "string" && JOB_ID_RE.test(job) ? { job } : null;
}

/**
 * Heartbeats keep a live run's lease, so a run that hangs must be cut off here, not by the lease: after
 * `ms` the run is aborted and counts as a transient failure, whether or not its promise ever settles.
 */
export async function withDeadline(run: Promise<RunOutcome>, ms: number, abort: AbortController): Promise<RunOutcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cutOff = new Promise<RunOutcome>((resolve) => {
    timer = setTimeout(() => {
      abort.abort("run timeout");
      resolve({
        kind: "transient",
        error: { code: Codes.network, message: `the run did not finish within ${Math.round(ms / 1000)} s` },
      });
    }, ms);
  });
  try {
    return await Promise.race([run, cutOff]);
  } finally {
    clearTimeout(timer);
  }
}

async function apply(env: Env, message: Message, body: JobMessage, action: MessageAction): Promise<void> {
  switch (action.do) {
    case "ack":
      message.ack();
      return;
    case "retry":
      message.retry({ delaySeconds: action.delaySeconds });
      return;
    case "requeue":
      try {
        await env.JOB_QUEUE.send(body, { delaySeconds: action.delaySeconds });
        message.ack();
      } catch (err) {
        log({
          level: "warn",
          msg: "job requeue failed; retrying the message instead",
          job_id: body.job,
          error: String(err),
        });
        message.retry({ delaySeconds: action.delaySeconds });
      }
      return;
    case "dead-letter":
      // The job is already FAIL with its cause; the dead-letter copy is for operators. Losing it loses nothing.
      await env.JOB_DLQ.send(body).catch((err: unknown) =>
        log({ level: "error", msg: "dead-letter send failed", job_id: body.job, error: String(err) }),
      );
      message.ack();
      return;
  }
}

async function processMessage(env: Env, ctx: ExecutionContext, message: Message): Promise<void> {
  const body = parseJobMessage(message.body);
  if (!body) {
    log({ level: "error", msg: "malformed job message dropped", message_id: message.id });
    message.ack();
    return;
  }
  const job = jobStub(env, body.job);
  const runId = crypto.randomUUID();
  try {
    const start = await job.begin(runId);
    if (start.do !== "run") return await apply(env, message, body, start);

    const abort = new AbortController();
    const heartbeat = setInterval(() => {
      job.renew(runId).then(
        (held) => {
          if (!held) abort.abort("lease lost");
        },
        (err: unknown) => log({ level: "warn", msg: "job lease renewal failed", job_id: body.job, error: String(err) }),
      );
    }, JOB_HEARTBEAT_MS);
    let outcome: RunOutcome;
    try {
      outcome = await withDeadline(runJob({ env, ctx, signal: abort.signal }, start.run), JOB_RUN_TIMEOUT_MS, abort);
    } finally {
      clearInterval(heartbeat);
    }
    await apply(env, message, body, await job.settle(runId, outcome));
  } catch (err) {
    // The job's object was unreachable: retry; after max_retries the message reaches the dead-letter queue.
    log({
      level: "error",
      msg: "job message failed",
      job_id: body.job,
      attempts: message.attempts,
      error: String(err),
    });
    message.retry({ delaySeconds: ERROR_RETRY_S });
  }
}

async function processDeadLetter(env: Env, message: Message): Promise<void> {
  const body = parseJobMessage(message.body);
  if (body) {
    try {
      await jobStub(env, body.job).deadLettered(message.attempts);
    } catch (err) {
      log({ level: "error", msg: "dead-letter handling failed", job_id: body.job, error: String(err) });
      message.retry({ delaySeconds: ERROR_RETRY_S });
      return;
    }
    log({ level: "warn", msg: "job message dead-lettered", job_id: body.job });
  }
  message.ack();
}

export async function handleQueue(batch: MessageBatch, env: Env, ctx: ExecutionContext): Promise<void> {
  const deadLetters = batch.queue.endsWith(DLQ_SUFFIX);
  await Promise.all(batch.messages.map((m) => (deadLetters ? processDeadLetter(env, m) : processMessage(env, ctx, m))));
}
