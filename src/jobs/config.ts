// Async job settings: the fixed limits of the job lifecycle (the knobs read from the environment are in
// src/config.ts). The retry schedules themselves live in schedule.ts.

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
