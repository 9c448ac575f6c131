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
    throw new GatewayError(502, Codes.network, `upstream unreachable: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Upstream error bodies pass through; a body that is not GLM's shape is wrapped in it. */
export async function upstreamErrorBody(res: Response): Promise<{ text: string; code: string }> {
  const text = await res.text();
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
