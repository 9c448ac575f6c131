// Async job settings: the fixed limits of the job lifecycle and the few knobs read from the environment.
// The retry schedules themselves live in schedule.ts.

/** A job that has not finished this long after submission is failed by its object's watchdog. */
export const JOB_MAX_AGE_MS = 24 * 3_600_000;
/** Finished jobs (result, deliveries) are kept this long, then the job's object deletes itself. */
export const JOB_RETENTION_MS = 7 * 86_400_000;
/** Runs per job: a transient failure (1305, 5xx, GLM unreachable) is retried until this many runs, so 3 retries. */
export const JOB_MAX_ATTEMPTS = 4;
/**
 * A run holds the job for this long and renews it every JOB_HEARTBEAT_MS, so a run whose consumer died
 * (a deploy, a crash) is taken over within about JOB_LEASE_MS, while three missed renewals are tolerated.
 */
export const JOB_LEASE_MS = 20_000;
export const JOB_HEARTBEAT_MS = 5_000;
/** A run that has not ended by then is stopped and counted as a transient failure (consumers get 15 min). */
export const JOB_RUN_TIMEOUT_MS = 12 * 60_000;
/** Webhooks are retried until this long after the first attempt. */
export const WEBHOOK_WINDOW_MS = 24 * 3_600_000;
/** One delivery attempt may take this long (connect + answer). */
export const WEBHOOK_TIMEOUT_MS = 10_000;
/** `metadata` echoed in the result and webhook: at most this many bytes of JSON. */
export const MAX_METADATA_BYTES = 16_384;
/**
 * Jobs one key may have queued or running when ASYNC_MAX_ACTIVE_JOBS is not set: enough for any batch a
 * client sends at once, small enough that one key cannot fill the queue for everyone (jobs run at the
 * key's own in-flight limit anyway, so more queued jobs only wait longer).
 */
export const DEFAULT_MAX_ACTIVE_JOBS = 100;

export interface JobConfig {
  /** WEBHOOK_RETRY_BASE_SECONDS: first retry delay of a webhook (default 30 s). */
  webhookBaseS: number;
  /** JOB_RETRY_BASE_SECONDS: first retry delay after a transient upstream failure (default 5 s). */
  jobRetryBaseS: number;
  /** WEBHOOK_ALLOW_PRIVATE=true: http and loopback/private callback targets (development and tests). */
  allowPrivate: boolean;
  /** ASYNC_MAX_ACTIVE_JOBS: jobs one key may have queued or running at once (default 100). */
  maxActiveJobs: number;
}

/** A positive number from a var, else the fallback. */
function seconds(raw: string | undefined, fallback: number): number {
  const n = Number(raw);
  return raw !== undefined && raw.trim() !== "" && Number.isFinite(n) && n > 0 ? n : fallback;
}

export function jobConfig(env: Env): JobConfig {
  return {
    webhookBaseS: seconds(env.WEBHOOK_RETRY_BASE_SECONDS, 30),
    jobRetryBaseS: seconds(env.JOB_RETRY_BASE_SECONDS, 5),
    allowPrivate: (env.WEBHOOK_ALLOW_PRIVATE ?? "").trim().toLowerCase() === "true",
    maxActiveJobs: Math.floor(seconds(env.ASYNC_MAX_ACTIVE_JOBS, DEFAULT_MAX_ACTIVE_JOBS)),
  };
}
