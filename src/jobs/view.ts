// The job as clients see it — GET /async-result/{id} and the webhook body — in GLM's async shape
// ({id, request_id, model, task_status, choices, usage} or error) plus the gateway's additions.
import type { JobView, TaskStatus } from "./schema.ts";
import type { Delivery, JobRecord, JobResult } from "./types.ts";

export function taskStatus(r: JobRecord): TaskStatus {
  return r.state === "succeeded" ? "SUCCESS" : r.state === "failed" ? "FAIL" : "PROCESSING";
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function webhookView(r: JobRecord, url: string, d: Delivery | null): NonNullable<JobView["webhook"]> {
  return {
    url,
    webhook_id: d?.webhook_id ?? r.id,
    state: d?.state ?? "not_started",
    deliveries: (d?.attempts ?? []).map((a) => ({ ...a, at: iso(a.at)! })),
    next_attempt_at: iso(d?.next_attempt_at ?? null),
    gave_up: d?.gave_up ?? null,
  };
}

/**
 * The result object. `withWebhook` adds the delivery log (GET only: the webhook body must be the same
 * bytes on every attempt, so it never describes its own deliveries).
 */
export function jobView(r: JobRecord, result: JobResult | null, withWebhook: boolean): JobView {
  const status = taskStatus(r);
  return {
    id: r.id,
    request_id: r.request_id,
    model: r.model,
    task_status: status,
    kind: r.kind,
    created: Math.floor(r.created_at / 1000),
    ...(status === "SUCCESS" && result ? result : {}),
    ...(status === "FAIL" ? { error: r.last_error ?? { code: "500", message: "the job failed" } } : {}),
    ...(status === "PROCESSING" && r.last_error ? { last_error: r.last_error } : {}),
    attempts: r.attempts + (r.state === "running" ? 1 : 0),
    finished_at: iso(r.finished_at),
    metadata: r.metadata,
    ...(withWebhook && r.callback_url ? { webhook: webhookView(r, r.callback_url, r.delivery) } : {}),
  };
}
