// JobObject: one Durable Object per async job — the job's single source of truth. It holds the request,
// the state machine (queued → running → succeeded | failed), the result, and the webhook deliveries, and
// its alarm drives webhook retries, the 24 h watchdog and the 7-day cleanup.
//
// At most one completion: a run must `begin` (which takes a lease with a fresh run id) before it calls
// upstream and `settle` with that id afterwards. A second delivery of the same message finds the job
// running (retry later) or finished (ack); a run whose lease lapsed — its consumer crashed or stalled — is
// fenced out: its late `settle` is ignored, so only one run's result ever counts.
import { DurableObject } from "cloudflare:workers";
import { log } from "../shared/log.ts";
import { JOB_LEASE_MS, JOB_MAX_AGE_MS, JOB_MAX_ATTEMPTS, JOB_RETENTION_MS } from "./config.ts";
import { readConfig } from "../config.ts";
import { attemptDelivery } from "./delivery.ts";
import { jobIndexStub } from "./job-index.ts";
import { nextWebhookAttempt, slotWaitDelayS, upstreamRetryDelayS } from "./schedule.ts";
import type { BeginResult, GlmError, JobRecord, JobResult, MessageAction, RunOutcome } from "./types.ts";
import type { JobView } from "./schema.ts";
import { jobView } from "./view.ts";

/** Request bodies are stored in parts: a SQLite row holds at most 2 MB, a job body up to 8 MB. */
const BODY_PART_CHARS = 500_000;

export interface NewJob {
  record: Omit<
    JobRecord,
    | "state"
    | "run"
    | "attempts"
    | "slot_waits"
    | "last_error"
    | "next_try_at"
    | "finished_at"
    | "dead_lettered_at"
    | "delivery"
  >;
  body: string;
}

function splitBody(body: string): string[] {
  const parts: string[] = [];
  for (let i = 0; i < body.length;) {
    let end = Math.min(i + BODY_PART_CHARS, body.length);
    // Never split a surrogate pair across two rows.
    const last = body.charCodeAt(end - 1);
    if (end < body.length && last >= 0xd800 && last <= 0xdbff) end -= 1;
    parts.push(body.slice(i, end));
    i = end;
  }
  return parts.length ? parts : [""];
}

export class JobObject extends DurableObject<Env> {
  private get record(): JobRecord | undefined {
    return this.ctx.storage.kv.get<JobRecord>("record");
  }

  private save(r: JobRecord): void {
    this.ctx.storage.kv.put("record", r);
  }

  private get result(): JobResult | null {
    return this.ctx.storage.kv.get<JobResult>("result") ?? null;
  }

  private body(): string {
    return this.ctx.storage.sql
      .exec<{ part: string }>("SELECT part FROM body ORDER BY seq")
      .toArray()
      .map((r) => r.part)
      .join("");
  }

  /** Stores a new job. False when the id is taken (ids are random: a retried submission). */
  async create(job: NewJob): Promise<boolean> {
    if (this.record) return false;
    // Tables only for real jobs: a GET for an unknown id must not leave an empty object behind.
    this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS body (seq INTEGER PRIMARY KEY, part TEXT NOT NULL)");
    splitBody(job.body).forEach((part, seq) =>
      this.ctx.storage.sql.exec("INSERT INTO body (seq, part) VALUES (?, ?)", seq, part),
    );
    this.save({
      ...job.record,
      state: "queued",
      run: null,
      attempts: 0,
      slot_waits: 0,
      last_error: null,
      next_try_at: null,
      finished_at: null,
      dead_lettered_at: null,
      delivery: null,
    });
    await this.schedule();
    return true;
  }

  /** Undoes a submission whose queue message could not be sent (the client got an error). */
  async discard(): Promise<void> {
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
  }

  /** The client's view, or null when the job does not exist or belongs to another key (both are a 404). */
  view(keyId: string): JobView | null {
    const r = this.record;
    return r && r.key_id === keyId ? jobView(r, this.result, true) : null;
  }

  /** The stored record, for operators and tests. */
  inspect(): JobRecord | null {
    return this.record ?? null;
  }

  /** A consumer wants to run the job: hand it the request and a lease, or say what to do with the message. */
  async begin(runId: string): Promise<BeginResult> {
    const r = this.record;
    if (!r || r.state === "succeeded" || r.state === "failed") return { do: "ack" };
    const now = Date.now();
    if (r.state === "running" && r.run && r.run.lease_until > now) {
      // Another delivery is running it (or just crashed): look again once its lease could have lapsed.
      return { do: "retry", delaySeconds: Math.max(1, Math.ceil((r.run.lease_until - now) / 1000) + 1) };
    }
    if (r.state === "running") {
      r.attempts += 1;
      r.last_error = {
        code: "500",
        message: "a run of this job stopped without reporting back (the consumer crashed or stalled)",
      };
      if (r.attempts >= JOB_MAX_ATTEMPTS) {
        await this.finish(r, null, {
          code: "500",
          message: `the job was given up after ${r.attempts} runs that stopped without a result`,
        });
        return { do: "dead-letter" };
      }
    }
    if (now - r.created_at >= JOB_MAX_AGE_MS) {
      await this.finish(r, null, this.expiredError(r));
      return { do: "ack" };
    }
    r.state = "running";
    r.run = { id: runId, lease_until: now + JOB_LEASE_MS, started_at: now };
    r.next_try_at = null;
    this.save(r);
    return {
      do: "run",
      run: {
        id: r.id,
        key_id: r.key_id,
        kind: r.kind,
        model: r.model,
        request_id: r.request_id,
        attempt: r.attempts + 1,
        body: this.body(),
      },
    };
  }

  /** Extends the run's lease. False when the run no longer holds the job: it must stop. */
  renew(runId: string): boolean {
    const r = this.record;
    if (!r || r.state !== "running" || r.run?.id !== runId) return false;
    r.run.lease_until = Date.now() + JOB_LEASE_MS;
    this.save(r);
    return true;
  }

  /** A run reports how it ended. Only the run holding the lease counts; any other is told to ack. */
  async settle(runId: string, outcome: RunOutcome): Promise<MessageAction> {
    const r = this.record;
    if (!r || r.state !== "running" || r.run?.id !== runId) {
      log({ level: "warn", msg: "job run fenced out", job_id: r?.id, state: r?.state });
      return { do: "ack" };
    }
    const now = Date.now();
    switch (outcome.kind) {
      case "success":
        r.attempts += 1;
        r.last_error = null;
        await this.finish(r, outcome.result, null);
        return { do: "ack" };
      case "fail":
        r.attempts += 1;
        await this.finish(r, null, outcome.error);
        return { do: "ack" };
      case "transient": {
        r.attempts += 1;
        if (r.attempts >= JOB_MAX_ATTEMPTS) {
          await this.finish(r, null, {
            code: outcome.error.code,
            message: `${outcome.error.message} (gave up after ${r.attempts} attempts)`,
          });
          return { do: "dead-letter" };
        }
        const delaySeconds = upstreamRetryDelayS(r.attempts, readConfig(this.env).jobRetryBaseS);
        this.requeued(r, outcome.error, now + delaySeconds * 1000);
        return { do: "retry", delaySeconds };
      }
      case "wait": {
        r.slot_waits += 1;
        if (now - r.created_at >= JOB_MAX_AGE_MS) {
          await this.finish(r, null, this.expiredError({ ...r, last_error: outcome.error }));
          return { do: "ack" };
        }
        const delaySeconds = slotWaitDelayS(r.slot_waits);
        this.requeued(r, outcome.error, now + delaySeconds * 1000);
        return { do: "requeue", delaySeconds };
      }
    }
  }

  /**
   * The dead-letter queue's consumer reports the job's message: fail the job unless it is finished or
   * another delivery is running it right now, so the job ends with a cause and its webhook goes out.
   */
  async deadLettered(deliveries: number): Promise<void> {
    const r = this.record;
    if (!r) return;
    const now = Date.now();
    if (r.state === "running" && r.run && r.run.lease_until > now) return;
    if (r.state === "queued" || r.state === "running") {
      const cause = r.last_error ? `; last error: ${r.last_error.code} ${r.last_error.message}` : "";
      r.dead_lettered_at = now;
      await this.finish(r, null, {
        code: "500",
        message: `the job could not be processed: its queue message failed ${deliveries} times${cause}`,
      });
      return;
    }
    if (r.state === "failed" && r.dead_lettered_at === null) {
      r.dead_lettered_at = now;
      this.save(r);
    }
  }

  override async alarm(): Promise<void> {
    const r = this.record;
    if (!r) {
      await this.ctx.storage.deleteAll();
      return;
    }
    const now = Date.now();
    if (r.finished_at !== null && now >= r.finished_at + JOB_RETENTION_MS) {
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
      return;
    }
    const live = r.state === "running" && r.run !== null && r.run.lease_until > now;
    if (r.finished_at === null && now >= r.created_at + JOB_MAX_AGE_MS && !live) {
      await this.finish(r, null, this.expiredError(r));
    }
    const d = this.record?.delivery;
    if (d?.state === "pending" && d.next_attempt_at !== null && d.next_attempt_at <= now) await this.deliver();
    await this.schedule();
  }

  private expiredError(r: JobRecord): GlmError {
    const cause = r.last_error ? ` (last error: ${r.last_error.code} ${r.last_error.message})` : "";
    return {
      code: r.last_error?.code ?? "500",
      message: `the job did not finish within ${JOB_MAX_AGE_MS / 3_600_000} hours${cause}`,
    };
  }

  private requeued(r: JobRecord, error: GlmError, nextTryAt: number): void {
    r.state = "queued";
    r.run = null;
    r.last_error = error;
    r.next_try_at = nextTryAt;
    this.save(r);
  }

  /** Ends the job (once), stores the result and the webhook body, and queues the first delivery. */
  private async finish(r: JobRecord, result: JobResult | null, error: GlmError | null): Promise<void> {
    const now = Date.now();
    r.state = error ? "failed" : "succeeded";
    r.last_error = error;
    r.run = null;
    r.next_try_at = null;
    r.finished_at = now;
    if (result) this.ctx.storage.kv.put("result", result);
    // The request is not needed any more; only the result is kept (7 days).
    this.ctx.storage.sql.exec("DELETE FROM body");
    this.ctx.storage.kv.put("payload", JSON.stringify(jobView(r, result, false)));
    if (r.callback_url) {
      r.delivery = {
        webhook_id: r.id,
        state: "pending",
        attempts: [],
        next_attempt_at: now,
        first_attempt_at: null,
        gave_up: null,
      };
    }
    this.save(r);
    // The job no longer counts against its key's cap on active jobs. Two tries; should both fail, the
    // index stops counting it once it is past the 24 h watchdog.
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await jobIndexStub(this.env, r.key_id).release(r.id);
        break;
      } catch (err) {
        log({ level: "warn", msg: "job index release failed", job_id: r.id, attempt, error: String(err) });
      }
    }
    log({
      level: error ? "warn" : "info",
      msg: "job finished",
      job_id: r.id,
      key_id: r.key_id,
      kind: r.kind,
      status: r.state,
      attempts: r.attempts,
      code: error?.code,
    });
    await this.schedule();
  }

  private async deliver(): Promise<void> {
    const before = this.record!;
    const payload = this.ctx.storage.kv.get<string>("payload") ?? "";
    const outcome = await attemptDelivery(this.env, {
      url: before.callback_url!,
      webhookId: before.delivery!.webhook_id,
      keyId: before.key_id,
      jobId: before.id,
      payload,
      attempt: before.delivery!.attempts.length + 1,
    });
    // Read again: other calls may have run while the request was out.
    const r = this.record!;
    const d = r.delivery!;
    d.attempts.push(outcome.attempt);
    d.first_attempt_at ??= outcome.attempt.at;
    if (outcome.result === "delivered") {
      d.state = "delivered";
      d.next_attempt_at = null;
    } else if (outcome.result === "give_up") {
      d.state = "failed";
      d.next_attempt_at = null;
      d.gave_up = outcome.reason;
    } else {
      const failed = d.attempts.length;
      const next = nextWebhookAttempt(Date.now(), d.first_attempt_at, failed, readConfig(this.env).webhookRetryBaseS);
      d.next_attempt_at = next;
      if (next === null) {
        d.state = "failed";
        d.gave_up = `no 2xx answer within 24 hours (${failed} attempts)`;
      }
    }
    this.save(r);
  }

  /** One alarm serves all timers: the next webhook attempt, the watchdog, and the cleanup. */
  private async schedule(): Promise<void> {
    const r = this.record;
    if (!r) return;
    const times: number[] = [];
    if (r.finished_at === null) {
      times.push(Math.max(r.created_at + JOB_MAX_AGE_MS, r.run?.lease_until ?? 0));
    } else {
      times.push(r.finished_at + JOB_RETENTION_MS);
    }
    if (r.delivery?.state === "pending" && r.delivery.next_attempt_at !== null) times.push(r.delivery.next_attempt_at);
    const at = Math.min(...times);
    if ((await this.ctx.storage.getAlarm()) !== at) await this.ctx.storage.setAlarm(at);
  }
}
