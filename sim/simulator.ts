// GLM upstream simulator core: a web-standard fetch handler (Request in, Response out) that mimics
// Zhipu's /api/paas/v4 chat API, its errors and per-model concurrency, plus /_sim/* test controls.
// Only web APIs are used so the same code runs under node (sim/server.ts) and inside workerd.

import { chaosControls, hasFault, parseControls, type Controls } from "./controls.ts";
import {
  DEFAULT_CONFIG,
  MODELS,
  MODELS_CREATED,
  concurrencyLimit,
  contextLimit,
  mergeConfig,
  type SimConfig,
  type SimOptions,
} from "./config.ts";
import { errorMessage, glmError, jsonResponse, type ErrorOptions } from "./errors.ts";
import { buildPlan, validateChat, type Plan } from "./plan.ts";
import { Ledger, type RequestRecord, type SimStats, type Ticket } from "./stats.ts";
import { lastUserText } from "./text.ts";
import { completionBody, eventStream, sleep, sseEvents, type StreamFault } from "./wire.ts";

export type { SimConfig, SimOptions, ChaosConfig, Tier } from "./config.ts";
export type { SimStats, RequestRecord, Ended } from "./stats.ts";
export { simTokenCount, simPromptTokens, simDigest, fnv1a } from "./text.ts";

export type Simulator = {
  fetch(req: Request): Promise<Response>;
  stats(): SimStats;
  reset(): void;
  configure(c: Partial<SimConfig>): void;
};

const SSE_HEADERS = { "Content-Type": "text/event-stream;charset=UTF-8", "Cache-Control": "no-cache" };
const MAX_TASKS = 1000;

type Task = { plan: Plan; readyAt: number; ticket: Ticket; reported: boolean };

function configOrThrow(result: SimConfig | string): SimConfig {
  if (typeof result === "string") throw new Error(`GLM simulator: ${result}`);
  return result;
}

const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a over bytes, continuing from h (pass FNV_OFFSET to start). */
function fnv1aBytes(bytes: Uint8Array, h: number): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h;
}

/** Records the running hash and length of the bytes a stream hands out, in the request's log entry. */
function tapBytes(body: ReadableStream<Uint8Array>, record: RequestRecord): ReadableStream<Uint8Array> {
  let h = FNV_OFFSET;
  let n = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        h = fnv1aBytes(chunk, h);
        n += chunk.byteLength;
        record.body_fnv = h.toString(16).padStart(8, "0");
        record.body_bytes = n;
        controller.enqueue(chunk);
      },
    }),
  );
}

export function createSimulator(options: SimOptions = {}): Simulator {
  const initial = configOrThrow(mergeConfig(DEFAULT_CONFIG, options));
  let config = initial;
  let seq = 0;
  const ledger = new Ledger();
  const tasks = new Map<string, Task>();

  function authError(req: Request): string | undefined {
    const auth = req.headers.get("authorization")?.trim() ?? "";
    if (auth === "" || /^bearer$/i.test(auth)) return "1001";
    if (config.apiKey !== undefined && auth !== `Bearer ${config.apiKey}`) return "1000";
    return undefined;
  }

  async function chat(req: Request, isAsync: boolean, en: boolean): Promise<Response> {
    const record: RequestRecord = {
      seq: ++seq,
      model: null,
      stream: false,
      request_id: null,
      ended: null,
      status: 0,
      prompt_tokens: 0,
      completion_tokens: 0,
      last_user_excerpt: "",
      received_at: Date.now(),
    };
    const ticket = ledger.open(record);
    const fail = (code: string, opts: ErrorOptions = {}): Response => {
      const res = glmError(code, { en, ...opts });
      ticket.end("error", res.status);
      return res;
    };

    const denied = authError(req);
    if (denied) return fail(denied);
    const body = validateChat(await req.text(), en);
    if ("code" in body) return fail(body.code, { message: body.message });
    const stream = body.stream === true && !isAsync;
    const lastUser = lastUserText(body.messages);
    record.model = body.model;
    record.stream = stream;
    record.request_id = body.request_id ?? null;
    record.last_user_excerpt = lastUser.slice(0, 200);
    if (!Object.hasOwn(MODELS, body.model)) return fail("1211");
    ticket.setModel(body.model);

    let c: Controls = parseControls(lastUser, req.headers.get("x-sim"));
    if (!hasFault(c) && config.fault && (!config.fault.models || config.fault.models.includes(body.model))) {
      c = { ...parseControls("", config.fault.controls), ...c };
    }
    if (!hasFault(c)) c = { ...chaosControls(config.chaos, record.seq, c.tokens ?? config.defaultTokens), ...c };
    const plan = buildPlan(body, c, record.seq, config.defaultTokens);
    Object.assign(record, { request_id: plan.request_id, prompt_tokens: plan.usage.prompt_tokens });
    if (plan.documentDigest) record.document_digest = plan.documentDigest;

    if (plan.usage.prompt_tokens + (body.max_tokens ?? 0) > contextLimit(body.model, config)) return fail("1261");
    const errorCode = c.error ?? (c.error_after !== undefined ? "500" : undefined);
    const inBandError = stream && c.error_after !== undefined;
    if (errorCode && !inBandError) {
      const res = fail(errorCode, c.status ? { status: c.status } : {});
      if (c.retry_after !== undefined) res.headers.set("Retry-After", String(c.retry_after));
      return res;
    }

    const ttft = c.ttft ?? config.ttftMs;
    const delay = c.delay ?? config.tokenDelayMs;
    if (isAsync) return submitTask(plan, Date.now() + ttft + Math.max(0, plan.tokens.length - 1) * delay, ticket);

    // The account-wide in-flight limit, checked like the upstream does: at arrival, per model.
    if (ledger.inFlight(body.model) >= concurrencyLimit(body.model, config)) return fail("1302");
    ticket.hold();

    // From here the request is in flight until it ends or the client disconnects (signal / cancel).
    const abort = new AbortController();
    let hanging = false;
    abort.signal.addEventListener("abort", () => ticket.end(hanging ? "hang" : "cancelled"), { once: true });
    if (req.signal?.aborted) abort.abort();
    req.signal?.addEventListener("abort", () => abort.abort(), { once: true });

    try {
      if (c.hang || (!stream && c.hang_after !== undefined)) {
        hanging = true;
        await sleep(Infinity, abort.signal);
      }
      if (c.break || (!stream && c.break_after !== undefined)) {
        ticket.end("break");
        return Response.error(); // a network error: the server resets the connection
      }
      if (!stream) await sleep(ttft + Math.max(0, plan.tokens.length - 1) * delay, abort.signal);
    } catch {
      return Response.error(); // aborted: the client is gone and will never read this
    }

    if (!stream) {
      ticket.report(plan.usage.prompt_tokens, plan.usage.completion_tokens);
      record.completion_tokens = plan.usage.completion_tokens;
      ticket.end("completed", 200);
      const bytes = new TextEncoder().encode(JSON.stringify(completionBody(plan)));
      Object.assign(record, {
        body_fnv: fnv1aBytes(bytes, FNV_OFFSET).toString(16).padStart(8, "0"),
        body_bytes: bytes.byteLength,
      });
      return jsonResponse(completionBody(plan));
    }

    let fault: StreamFault | undefined;
    if (c.break_after !== undefined) fault = { kind: "break", after: c.break_after };
    else if (c.hang_after !== undefined) fault = { kind: "hang", after: c.hang_after };
    else if (inBandError) {
      fault = { kind: "error", after: c.error_after!, code: errorCode!, message: errorMessage(errorCode!, en) };
    }
    const events = sseEvents(plan, ttft, delay, fault, abort.signal, {
      chunk: () => void record.completion_tokens++,
      hanging: () => void (hanging = true),
      delivered: () => {
        ticket.report(plan.usage.prompt_tokens, plan.usage.completion_tokens);
        record.completion_tokens = plan.usage.completion_tokens;
      },
      end: (ended) => ticket.end(ended),
    });
    record.status = 200;
    return new Response(
      tapBytes(
        eventStream(events, abort, () => ticket.end("error")),
        record,
      ),
      { headers: SSE_HEADERS },
    );
  }

  function submitTask(plan: Plan, readyAt: number, ticket: Ticket): Response {
    tasks.set(plan.id, { plan, readyAt, ticket, reported: false });
    if (tasks.size > MAX_TASKS) tasks.delete(tasks.keys().next().value!);
    ticket.end("completed", 200);
    return jsonResponse({ id: plan.id, request_id: plan.request_id, model: plan.model, task_status: "PROCESSING" });
  }

  function taskResult(id: string, en: boolean): Response {
    const task = tasks.get(id);
    if (!task) {
      return glmError("404", { status: 404, message: en ? `Async task ${id} not found` : `异步任务 ${id} 不存在` });
    }
    const { plan } = task;
    if (Date.now() < task.readyAt) {
      return jsonResponse({ id, request_id: plan.request_id, model: null, task_status: "PROCESSING" });
    }
    if (!task.reported) task.ticket.report(plan.usage.prompt_tokens, plan.usage.completion_tokens);
    task.reported = true;
    const { id: _id, request_id, model, ...rest } = completionBody(plan);
    return jsonResponse({ id, request_id, model, task_status: "SUCCESS", ...rest });
  }

  async function admin(req: Request, path: string, url: URL): Promise<Response> {
    const route = `${req.method} ${path}`;
    if (route === "GET /_sim/stats") return jsonResponse(ledger.stats());
    if (route === "GET /_sim/requests") {
      return jsonResponse(ledger.requests(Number(url.searchParams.get("limit") ?? 100)));
    }
    if (route === "GET /_sim/config") return jsonResponse(config);
    if (route === "POST /_sim/reset") {
      sim.reset();
      return jsonResponse({ ok: true });
    }
    if (route === "POST /_sim/config") {
      const patch: unknown = await req.json().catch(() => undefined);
      const next =
        patch && typeof patch === "object" && !Array.isArray(patch)
          ? mergeConfig(config, patch as Record<string, unknown>)
          : "body must be a JSON object";
      if (typeof next === "string") return glmError("1214", { message: next });
      config = next;
      return jsonResponse(config);
    }
    return glmError("404", { status: 404, message: `unknown simulator route ${route}` });
  }

  const sim: Simulator = {
    async fetch(req) {
      const url = new URL(req.url);
      // Accept the real base path and the OpenAI-style /v1 alias; trailing slashes are forgiven.
      const path = url.pathname.replace(/^\/(?:api\/paas\/v4|v1)(?=\/)/, "").replace(/(.)\/+$/, "$1");
      if (path.startsWith("/_sim/")) return admin(req, path, url);
      const en = /^en/i.test(req.headers.get("accept-language") ?? "");
      if (req.method === "POST" && path === "/chat/completions") return chat(req, false, en);
      if (req.method === "POST" && path === "/async/chat/completions") return chat(req, true, en);
      const isResult = req.method === "GET" && path.startsWith("/async-result/");
      if (isResult || (req.method === "GET" && path === "/models")) {
        const denied = authError(req);
        if (denied) return glmError(denied, { en });
        if (isResult) return taskResult(decodeURIComponent(path.slice("/async-result/".length)), en);
        const data = Object.keys(MODELS).map((id) => ({
          id,
          object: "model",
          created: MODELS_CREATED,
          owned_by: "zhipuai",
        }));
        return jsonResponse({ object: "list", data });
      }
      return glmError("404", { status: 404, message: `${req.method} ${url.pathname} not found` });
    },
    stats: () => ledger.stats(),
    reset() {
      config = initial;
      seq = 0;
      ledger.reset();
      tasks.clear();
    },
    configure(c) {
      config = configOrThrow(mergeConfig(config, c as Record<string, unknown>));
    },
  };
  return sim;
}
