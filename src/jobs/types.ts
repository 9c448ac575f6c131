// What a job is: its stored record, the outcome of one run, and the message that carries it on the queue. These
// never cross the wire as they are (times are ms here, ISO strings or seconds in the client's view), so they are
// interfaces; what clients see is src/jobs/schema.ts, built from them by src/jobs/view.ts.
import type { GlmErrorBody } from "../errors.ts";
import type { JobKind } from "./schema.ts";

export type JobState = "queued" | "running" | "succeeded" | "failed";
export type GlmError = GlmErrorBody["error"];

/** The queue message: just the job's id — the job's object holds everything else. */
export interface JobMessage {
  job: string;
}

export interface DeliveryAttempt {
  attempt: number;
  /** ms since the epoch */
  at: number;
  /** HTTP status of the receiver's answer; null when none came (timeout, refused connection). */
  status: number | null;
  error: string | null;
  duration_ms: number;
}

export interface Delivery {
  /** The `webhook-id` header: the same on every attempt, so receivers can drop duplicates. */
  webhook_id: string;
  state: "pending" | "delivered" | "failed";
  attempts: DeliveryAttempt[];
  next_attempt_at: number | null;
  first_attempt_at: number | null;
  /** Why delivery stopped without a 2xx (window over, URL no longer allowed, key revoked). */
  gave_up: string | null;
}

export interface JobRecord {
  id: string;
  key_id: string;
  kind: JobKind;
  model: string;
  request_id: string;
  callback_url: string | null;
  metadata: Record<string, unknown> | null;
  created_at: number;
  state: JobState;
  /** The run holding the job: only its results count (fencing), and only while its lease is live. */
  run: { id: string; lease_until: number; started_at: number } | null;
  /** Runs that ended — succeeded, failed, or never reported back — not counting slot waits. */
  attempts: number;
  slot_waits: number;
  /** The latest transient failure while still PROCESSING; the final cause once FAIL. */
  last_error: GlmError | null;
  next_try_at: number | null;
  finished_at: number | null;
  dead_lettered_at: number | null;
  delivery: Delivery | null;
}

/**
 * What a finished chat or summarize run produced (the fields GET async-result adds for SUCCESS). Open: a chat
 * result carries what GLM sent (web_search), a summary its `truncated`, beyond the fields the schema names.
 */
export type JobResult = Record<string, unknown>;

/** How one run ended, as the consumer reports it to the job's object. */
export type RunOutcome =
  | { kind: "success"; result: JobResult }
  /** Will not get better by retrying (bad request, budget used up, key revoked). */
  | { kind: "fail"; error: GlmError }
  /** Upstream overloaded, 5xx, timeout, network: retried with backoff up to JOB_MAX_ATTEMPTS. */
  | { kind: "transient"; error: GlmError }
  /** No free slot in the key's in-flight limit: wait and look again, not a failure. */
  | { kind: "wait"; error: GlmError };

/** What the consumer should do with the message after asking the job's object. */
export type MessageAction =
  | { do: "ack" }
  | { do: "retry"; delaySeconds: number }
  /** Send a fresh message (a slot wait must not use up the message's delivery attempts). */
  | { do: "requeue"; delaySeconds: number }
  /** The job failed for good after its attempts: forward the message to the dead-letter queue. */
  | { do: "dead-letter" };

export type BeginResult = MessageAction | { do: "run"; run: RunSpec };

export interface RunSpec {
  id: string;
  key_id: string;
  kind: JobKind;
  model: string;
  request_id: string;
  attempt: number;
  /** The request body to run (chat: GLM's body, request_id set; summarize: the summarize input). */
  body: string;
}
