// Calls GLM. Each call has its own AbortController: it enforces the header timeout, and the relay and the
// client's disconnect use it to stop upstream generation (and upstream billing) when nobody is listening.
import { Codes, GatewayError } from "../errors.ts";

export interface UpstreamCall {
  baseUrl: string;
  apiKey: string;
  path: string;
  body: string;
  stream: boolean;
  timeoutMs: number;
  /** Forwarded because GLM picks the language of its error messages from it. */
  acceptLanguage?: string | null;
  /** The client's request signal: when it aborts, so does the upstream call. */
  clientSignal?: AbortSignal | null;
  /** Receives the call's abort at once, before GLM answers (the gateway stops a call whose slot was lost). */
  onStart?: (abort: (why: AbortWhy) => void) => void;
}

export type AbortWhy = "timeout" | "client" | "gateway";

export interface UpstreamResponse {
  response: Response;
  /** Stops the upstream request (idempotent); the first reason sticks. */
  abort(why: AbortWhy): void;
  /** Why the controller aborted, once it has. */
  abortReason(): AbortWhy | undefined;
}

export async function callUpstream(call: UpstreamCall): Promise<UpstreamResponse> {
  const controller = new AbortController();
  let reason: AbortWhy | undefined;
  const abort = (why: AbortWhy) => {
    reason ??= why;
    controller.abort(why);
  };
  const onClientAbort = () => abort("client");
  if (call.clientSignal?.aborted) abort("client");
  call.clientSignal?.addEventListener("abort", onClientAbort, { once: true });
  call.onStart?.(abort);
  const timer = setTimeout(() => abort("timeout"), call.timeoutMs);
  const headers: Record<string, string> = {
    authorization: `Bearer ${call.apiKey}`,
    "content-type": "application/json",
    accept: call.stream ? "text/event-stream" : "application/json",
  };
  if (call.acceptLanguage) headers["accept-language"] = call.acceptLanguage;
  try {
    const response = await fetch(`${call.baseUrl}${call.path}`, {
      method: "POST",
      headers,
      body: call.body,
      signal: controller.signal,
    });
    return { response, abort, abortReason: () => reason };
  } catch (err) {
    if (reason === "timeout") {
      throw new GatewayError(504, Codes.network, `upstream did not answer within ${call.timeoutMs} ms`);
    }
    // Nobody reads this answer; the status only shows in the log line.
    if (reason === "client") throw new GatewayError(408, Codes.network, "client closed the request");
    if (reason === "gateway") {
      throw new GatewayError(
        503,
        Codes.unavailable,
        "the request lost its concurrency slot and could not retake it; retry",
      );
    }
    throw new GatewayError(
      502,
      Codes.network,
      `upstream unreachable: ${err instanceof Error ? err.message : String(err)}`,
    );
  } finally {
    clearTimeout(timer);
  }
}

/** An error body longer than this is not GLM's; it is cut (and wrapped) rather than read whole. */
export const ERROR_BODY_MAX_BYTES = 64 * 1024;
/** An error body still arriving after this long is given up on. */
export const ERROR_BODY_TIMEOUT_MS = 5_000;

/** Reads at most maxBytes of a body within timeoutMs; the rest is cancelled. Never throws. */
async function readCapped(res: Response, maxBytes: number, timeoutMs: number): Promise<string> {
  const body = res.body;
  if (!body) return "";
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  const timer = setTimeout(() => void reader.cancel("timeout").catch(() => undefined), timeoutMs);
  try {
    while (size < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.byteLength;
    }
  } catch {
    // a broken or timed-out body: keep what arrived
  } finally {
    clearTimeout(timer);
    if (size >= maxBytes) reader.cancel("too large").catch(() => undefined);
  }
  const all = new Uint8Array(Math.min(size, maxBytes));
  let off = 0;
  for (const p of parts) {
    const take = Math.min(p.byteLength, all.byteLength - off);
    all.set(p.subarray(0, take), off);
    off += take;
  }
  return new TextDecoder().decode(all);
}

/** Upstream error bodies pass through; a body that is not GLM's shape is wrapped in it. Never throws. */
export async function upstreamErrorBody(
  res: Response,
  maxBytes = ERROR_BODY_MAX_BYTES,
  timeoutMs = ERROR_BODY_TIMEOUT_MS,
): Promise<{ text: string; code: string }> {
  const text = await readCapped(res, maxBytes, timeoutMs);
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (parsed.error && parsed.error.code !== undefined) return { text, code: String(parsed.error.code) };
  } catch {
    // fall through to wrapping
  }
  const code = String(res.status);
  return {
    text: JSON.stringify({ error: { code, message: `upstream answered ${res.status}: ${text.slice(0, 200)}` } }),
    code,
  };
}
