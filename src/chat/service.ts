// Chat completions: admit the request and send it through the pipeline, which passes GLM's answer through
// unchanged — streamed byte for byte or as the same JSON — and settles it (usage record, release) once.
// Returns facts (the admission's numbers and what was sent); the route turns them into a Response.
import type { Credential } from "../auth/credentials.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import type { WaitUntil } from "../shared/wait-until.ts";
import { admit, send, type Sent } from "../pipeline/index.ts";
import { estimatePromptTokens } from "../usage/estimate.ts";
import type { UsageRecord } from "../usage/ledger.ts";

export interface ChatCall {
  env: Env;
  ctx: WaitUntil;
  cred: Credential;
  model: ModelEntry;
  /** The request body as received (request_id already set), forwarded byte for byte. */
  body: string;
  messages: unknown;
  /**
   * The request's max_tokens, if it set one (the worst case held against a budget uses the model's maximum otherwise).
   */
  maxTokens: number | undefined;
  stream: boolean;
  requestId: string;
  queueTimeoutMs: number;
  origin: string | null;
  acceptLanguage: string | null;
  signal: AbortSignal | null;
  startedAt: number;
  kind: UsageRecord["kind"];
  /** x-fallback-models, resolved; undefined: the key's default list. */
  fallbacks?: ModelEntry[];
}

export interface ChatResult {
  keyId: string;
  /** The caller's in-flight limit for the model, and its requests in flight including this one. */
  limit: number;
  inFlight: number;
  sent: Sent;
}

/** Adds request_id to a JSON object text without re-serialising the rest of it. */
export function withRequestId(body: string, requestId: string): string {
  const i = body.indexOf("{");
  const rest = body.slice(i + 1).trimStart();
  const sep = rest.startsWith("}") ? "" : ",";
  return `${body.slice(0, i)}{"request_id":${JSON.stringify(requestId)}${sep}${body.slice(i + 1)}`;
}

/** Throws a GatewayError when the request is not admitted; after admission it never throws. */
export async function runChat(call: ChatCall): Promise<ChatResult> {
  const slot = await admit({
    env: call.env,
    cred: call.cred,
    model: call.model,
    queueTimeoutMs: call.queueTimeoutMs,
    origin: call.origin,
    signal: call.signal,
    worstCase: { promptTokens: estimatePromptTokens(call.messages), maxOutputTokens: call.maxTokens },
  });
  const sent = await send(slot, {
    env: call.env,
    ctx: call.ctx,
    model: call.model,
    body: call.body,
    messages: call.messages,
    stream: call.stream,
    requestId: call.requestId,
    kind: call.kind,
    acceptLanguage: call.acceptLanguage,
    signal: call.signal,
    startedAt: call.startedAt,
    ...(call.fallbacks ? { fallbacks: call.fallbacks } : {}),
  });
  return { keyId: slot.caller.id, limit: slot.limit, inFlight: slot.inFlight, sent };
}
