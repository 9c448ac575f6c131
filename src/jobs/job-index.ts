// JobIndex: one Durable Object per key (named by the key id) that knows the key's recent async jobs. It
// makes two submission rules atomic: at most ASYNC_MAX_ACTIVE_JOBS jobs queued or running per key, and
// idempotency — the same request_id from the same key within 24 h names the job it started, so a client
// that retries a submission (a timeout, a lost answer) never runs and pays for it twice.
//
// A job is active from its submission until its JobObject finishes it and says so (release). Should that
// call be lost, the row stops counting once the job is past the 24 h watchdog that would have failed it.
import { DurableObject } from "cloudflare:workers";
import { JOB_MAX_AGE_MS } from "./config.ts";

/** How long a request_id names its job. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3_600_000;
/** An active row older than this is a job whose release was lost: its watchdog has failed it by now. */
const STALE_ACTIVE_MS = JOB_MAX_AGE_MS + 3_600_000;

export interface Reservation {
  jobId: string;
  requestId: string;
  model: string;
  /** A hash of what was submitted: a request_id reused for a different request is refused. */
  fingerprint: string;
  /** The key's limit on jobs queued or running. */
  cap: number;
}

export type ReserveResult =
  | { ok: true }
  /** The request_id already names a job of this key (within 24 h). */
  | { ok: false; existing: { id: string; model: string; sameRequest: boolean } }
  /** The key has `active` jobs queued or running: at its cap. */
  | { ok: false; active: number };

export class JobIndex extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Only reached for a key that authenticated (submission) or has jobs (release): never for a guess.
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, request_id TEXT NOT NULL, model TEXT NOT NULL, fingerprint TEXT NOT NULL,
      created_at INTEGER NOT NULL, active INTEGER NOT NULL)`);
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS jobs_request ON jobs (request_id)");
  }

  reserve(r: Reservation, now = Date.now()): ReserveResult {
    const sql = this.ctx.storage.sql;
    sql.exec(
      "DELETE FROM jobs WHERE created_at < ? AND (active = 0 OR created_at < ?)",
      now - IDEMPOTENCY_WINDOW_MS,
      now - STALE_ACTIVE_MS,
    );
    const prior = sql
      .exec<{ id: string; model: string; fingerprint: string }>(
        "SELECT id, model, fingerprint FROM jobs WHERE request_id = ? AND created_at >= ? ORDER BY created_at DESC " +
          "LIMIT 1",
        r.requestId,
        now - IDEMPOTENCY_WINDOW_MS,
      )
      .toArray()[0];
    if (prior)
      return {
        ok: false,
        existing: { id: prior.id, model: prior.model, sameRequest: prior.fingerprint === r.fingerprint },
      };
    const active = sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE active = 1 AND created_at >= ?", now - STALE_ACTIVE_MS)
      .one().n;
    if (active >= r.cap) return { ok: false, active };
    sql.exec(
      "INSERT INTO jobs (id, request_id, model, fingerprint, created_at, active) VALUES (?, ?, ?, ?, ?, 1)",
      r.jobId,
      r.requestId,
      r.model,
      r.fingerprint,
      now,
    );
    return { ok: true };
  }

  /** The job finished: it no longer counts against the cap (its request_id still names it for 24 h). */
  release(jobId: string): void {
    this.ctx.storage.sql.exec("UPDATE jobs SET active = 0 WHERE id = ?", jobId);
  }

  /** The submission was not accepted after all (the queue refused it): forget it entirely. */
  forget(jobId: string): void {
    this.ctx.storage.sql.exec("DELETE FROM jobs WHERE id = ?", jobId);
  }

  /** Jobs of this key queued or running (tests and operators). */
  activeCount(now = Date.now()): number {
    return this.ctx.storage.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM jobs WHERE active = 1 AND created_at >= ?", now - STALE_ACTIVE_MS)
      .one().n;
  }
}

export function jobIndexStub(env: Env, keyId: string) {
  return env.JOB_INDEX.get(env.JOB_INDEX.idFromName(keyId));
}
