// What an upstream failure means for a summary: split the input again (1261, TooLong), try once more
// (Transient: 1305, 5xx, network, cut-off answers), or give up with a GLM-style error naming the step.
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { Codes, GatewayError } from "../errors.ts";

/** The upstream said the prompt is too long (1261): the caller splits the input and tries again. */
export class TooLong extends Error {
  constructor(readonly what: string) {
    super(`${what}: the upstream found the prompt too long (1261)`);
    this.name = "TooLong";
  }
}

/** A failure worth one more try. Carries the error to report if the retry fails too. */
export class Transient extends Error {
  constructor(readonly error: GatewayError) {
    super(error.message);
    this.name = "Transient";
  }
}

/** The HTTP status GLM gives an error code, for an error that arrived in-band. */
export function inBandStatus(code: string): number {
  if (code === Codes.overloaded || code === Codes.concurrency || code === "1303" || code === Codes.usageCap || code === "1113") return 429;
  if (/^5\d\d$/.test(code) || code === "1230" || code === Codes.network) return 500;
  return 400;
}

/** What a non-200 upstream answer (or an in-band error) means for a summary. */
export function classify(status: number, code: string, text: string, what: string): Error {
  if (code === Codes.promptTooLong) return new TooLong(what);
  let message = text.slice(0, 300);
  try {
    const m = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    if (typeof m === "string") message = m;
  } catch {
    // keep the raw text
  }
  // GLM's own concurrency and overload answers are 429s to the caller, as in the chat path.
  const overloaded = code === Codes.overloaded || code === Codes.concurrency;
  const httpStatus = overloaded ? 429 : status >= 500 ? 502 : status;
  const err = new GatewayError(
    httpStatus as ContentfulStatusCode,
    code,
    `${what}: upstream error ${code}: ${message}`,
    httpStatus === 429 ? { "retry-after": "1" } : {},
  );
  return code === Codes.overloaded || status >= 500 ? new Transient(err) : err;
}

/** A finished answer can still be unusable: blocked, over the context, cut off or empty. */
export function checkFinish(finishReason: string, content: string, what: string): { content: string; finishReason: string } {
  if (finishReason === "sensitive") {
    throw new GatewayError(400, "1301", `${what}: the upstream's content filter blocked the text (finish_reason "sensitive")`);
  }
  if (finishReason === "model_context_window_exceeded") throw new TooLong(what);
  if (finishReason === "network_error" || content.trim() === "") {
    const why = content.trim() === "" ? "returned an empty answer" : "failed while generating (finish_reason \"network_error\")";
    throw new Transient(new GatewayError(502, Codes.network, `${what}: the upstream ${why}`));
  }
  return { content, finishReason };
}
