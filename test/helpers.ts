// Shared test helpers: call the Worker in-process, create keys through the admin API, and talk to the
// GLM simulator that test/global-setup.ts started (the gateway's upstream in these tests).
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { inject } from "vitest";
import { createApp } from "../src/app.ts";
import type { ModelEntry } from "../src/catalog/schema.ts";
import { poolsFor, type CircuitConfig, type Pool } from "../src/limiter/pools.ts";
import type { SimStats } from "../sim/simulator.ts";

export const ADMIN = "test-admin-token";
export const SIM = inject("simUrl");

/**
 * A request to the Worker. Each comes from its own client address (unless the test names one), as from
 * many clients: the failed-authentication limit per IP then trips only in the tests that aim at it.
 */
export function gw(path: string, init: RequestInit = {}): Promise<Response> {
  const req = new Request(`http://gateway.test${path}`, init);
  if (!req.headers.has("cf-connecting-ip"))
    req.headers.set("cf-connecting-ip", `2001:db8::${crypto.randomUUID().slice(0, 13).replace("-", ":")}`);
  return exports.default.fetch(req);
}

export async function admin(method: string, path: string, body?: unknown): Promise<Response> {
  return gw(`/admin${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

export interface CreatedKey {
  id: string;
  key: string;
  tier: string;
  webhook_secret: string;
}

export async function createKey(settings: Record<string, unknown> = {}): Promise<CreatedKey> {
  const res = await admin("POST", "/keys", { name: "test", tier: "V0", ...settings });
  if (res.status !== 201) throw new Error(`createKey: ${res.status} ${await res.text()}`);
  return (await res.json()) as CreatedKey;
}

export function chatBody(content: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: "glm-4-flash-250414", messages: [{ role: "user", content }], ...extra };
}

export function chat(
  key: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return gw("/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

export async function simStats(): Promise<SimStats> {
  return (await (await fetch(`${SIM}/_sim/stats`)).json()) as never;
}

export async function simReset(config: Record<string, unknown> = {}): Promise<void> {
  await fetch(`${SIM}/_sim/reset`, { method: "POST" });
  if (Object.keys(config).length) {
    await fetch(`${SIM}/_sim/config`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(config),
    });
  }
}

export async function simRequests(limit = 100): Promise<Record<string, unknown>[]> {
  const body = (await (await fetch(`${SIM}/_sim/requests?limit=${limit}`)).json()) as unknown;
  return (
    Array.isArray(body)
      ? body
      : ((body as { data?: unknown[]; requests?: unknown[] }).data ?? (body as { requests?: unknown[] }).requests ?? [])
  ) as Record<string, unknown>[];
}

export async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let v = await fn();
  while (!ok(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 25));
    v = await fn();
  }
  return v;
}

export { sseData } from "../test-support/sse.ts";

/** A chat request through a fresh app whose bindings are overridden (a broken upstream, a missing secret…). */
export async function chatWithEnv(
  key: string,
  overrides: Partial<Env>,
  body: unknown = chatBody("x"),
): Promise<Response> {
  const ctx = createExecutionContext();
  const text = JSON.stringify(body);
  const res = await createApp().fetch(
    new Request("http://gateway.test/v1/chat/completions", {
      method: "POST",
      // The length a request over HTTP carries: without it the gateway authenticates before reading the body.
      headers: {
        authorization: `Bearer ${key}`,
        "content-type": "application/json",
        "content-length": String(new TextEncoder().encode(text).byteLength),
      },
      body: text,
    }),
    { ...env, ...overrides },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

/** The test environment's one upstream account (GLM_API_KEY, tier V0 unless given): its pools for a model. */
export function defaultPools(model: ModelEntry, tier: "V0" | "V1" | "V2" | "V3" = "V0"): Pool[] {
  return poolsFor([{ id: "default", key: "unused", tier, baseUrl: "", weight: 1 }], model, 500);
}

export const CIRCUIT: CircuitConfig = { failures: 3, cooldownMs: 30_000 };
