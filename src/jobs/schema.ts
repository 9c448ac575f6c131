// An async job as clients see it, in GLM's async shape: the answer to a submission, and the result that GET
// /async-result/{id} answers and the webhook carries (src/jobs/view.ts builds it). One definition documents
// /openapi.json and types the code; each is built on first use (src/lazy.ts).
import * as z from "../shared/zod.ts";
import { usageSchema } from "../chat/schema.ts";
import { errorSchema } from "../http/openapi.ts";
import { once } from "../lazy.ts";

export const asyncTaskSchema = once(() =>
  z
    .object({
      id: z.string().openapi({ example: "job_3f7c0c4e9b2a4d6f8e1a2b3c4d5e6f70" }),
      request_id: z.string(),
      model: z.string(),
      task_status: z.literal("PROCESSING"),
    })
    .openapi("AsyncTask"),
);

export const webhookSchema = once(() => {
  const delivery = z.object({
    attempt: z.number().int(),
    at: z.string().openapi({ description: "ISO 8601 time of the attempt" }),
    status: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "the receiver's HTTP status; null when it did not answer" }),
    error: z.string().nullable(),
    duration_ms: z.number(),
  });
  return z
    .object({
      url: z.string(),
      webhook_id: z.string().openapi({ description: "the webhook-id header, the same on every attempt" }),
      state: z.enum(["not_started", "pending", "delivered", "failed"]),
      deliveries: z.array(delivery),
      next_attempt_at: z.string().nullable(),
      gave_up: z.string().nullable().openapi({ description: "why delivery stopped without a 2xx" }),
    })
    .openapi("WebhookDeliveries");
});

export const asyncResultSchema = once(() =>
  z
    .looseObject({
      id: z.string(),
      request_id: z.string(),
      model: z.string(),
      task_status: z.enum(["PROCESSING", "SUCCESS", "FAIL"]),
      kind: z.enum(["chat", "summarize"]),
      created: z.number().int().openapi({ description: "submission time, Unix seconds" }),
      choices: z.array(z.looseObject({})).optional().openapi({ description: "chat SUCCESS: GLM's choices" }),
      usage: usageSchema().optional(),
      cost_cny: z.number().optional(),
      summary: z.string().optional().openapi({ description: "summarize SUCCESS: the summary" }),
      chunks: z.number().int().optional(),
      error: errorSchema().shape.error.optional().openapi({ description: "FAIL: the cause, GLM-style" }),
      last_error: errorSchema()
        .shape.error.optional()
        .openapi({ description: "PROCESSING: why the latest attempt did not finish (1302 = waiting for a free slot)" }),
      attempts: z.number().int(),
      finished_at: z.string().nullable(),
      metadata: z.record(z.string(), z.unknown()).nullable(),
      webhook: webhookSchema().optional(),
    })
    .openapi("AsyncResult"),
);

/** The job as clients see it: GET /async-result/{id} (with `webhook`) and the webhook body (without). */
export type JobView = z.infer<ReturnType<typeof asyncResultSchema>>;
export type TaskStatus = JobView["task_status"];
export type JobKind = JobView["kind"];
