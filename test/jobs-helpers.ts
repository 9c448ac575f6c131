// Helpers for the async job tests: submit, poll, and read what the webhook receiver got.
import { env } from "cloudflare:workers";
import { inject } from "vitest";
import { gw, waitFor } from "./helpers.ts";
import { jobStub } from "../src/jobs/store.ts";
import type { JobRecord } from "../src/jobs/types.ts";

export const HOOKS = inject("hookUrl");

export interface Hook {
  headers: Record<string, string>;
  body: string;
  status: number;
  at: number;
}

export function submit(key: string, body: unknown, path = "/v1/async/chat/completions"): Promise<Response> {
  return gw(path, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export async function submitOk(
  key: string,
  body: unknown,
  path?: string,
): Promise<{ id: string; request_id: string; model: string; task_status: string }> {
  const res = await submit(key, body, path);
  if (res.status !== 200) throw new Error(`submit: ${res.status} ${await res.text()}`);
  return (await res.json()) as never;
}

export function result(key: string, id: string, base = "/v1"): Promise<Response> {
  return gw(`${base}/async-result/${id}`, { headers: { authorization: `Bearer ${key}` } });
}

export type JobView = Record<string, unknown> & {
  task_status: string;
  attempts: number;
  error?: { code: string; message: string };
  last_error?: { code: string; message: string };
  webhook?: {
    state: string;
    webhook_id: string;
    deliveries: { attempt: number; status: number | null; error: string | null }[];
    next_attempt_at: string | null;
    gave_up: string | null;
  };
};

export async function view(key: string, id: string): Promise<JobView> {
  const res = await result(key, id);
  if (res.status !== 200) throw new Error(`result: ${res.status} ${await res.text()}`);
  return (await res.json()) as JobView;
}

/** Polls until the job is finished (and, when asked, its webhook delivery too). */
export function settled(
  key: string,
  id: string,
  opts: { webhook?: boolean; timeoutMs?: number } = {},
): Promise<JobView> {
  return waitFor(
    () => view(key, id),
    (v) =>
      v.task_status !== "PROCESSING" &&
      (!opts.webhook ||
        (v.webhook !== undefined && v.webhook.state !== "pending" && v.webhook.state !== "not_started")),
    opts.timeoutMs ?? 20_000,
  );
}

export async function hooks(name: string): Promise<Hook[]> {
  return (await (await fetch(`${HOOKS}/_hooks/${name}`)).json()) as Hook[];
}

export function hookUrl(name: string, query = ""): string {
  return `${HOOKS}/hooks/${name}${query ? `?${query}` : ""}`;
}

export function inspect(id: string): Promise<JobRecord | null> {
  return jobStub(env, id).inspect() as Promise<JobRecord | null>;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}
