// What an upstream failure means for a summary: split the input again (1261, TooLong), try once more
// (Transient: GLM's code table says which; cut-off answers), or give up with a GLM-style error naming the step.
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { Codes, GatewayError } from "../errors.ts";
import { clientStatus, codeRule } from "../pipeline/glm-codes.ts";

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

/**
 * What a refused call (or an in-band error) means for a summary, by GLM's code table: 1261 splits the
 * input, a transient code earns one more try, anything else ends the summary. `status` is the HTTP status
 * the error came with, when it came as an HTTP answer.
 */
export function classify(status: number | undefined, code: string, text: string, what: string): Error {
  if (code === Codes.promptTooLong) return new TooLong(what);
  let message = text.slice(0, 300);
  try {
    const m = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    if (typeof m === "string") message = m;
  } catch {
    // keep the raw text
  }
  const rule = codeRule(code, status);
  const httpStatus = clientStatus(code, status ?? rule.status);
  const err = new GatewayError(
    (httpStatus >= 500 ? 502 : httpStatus) as ContentfulStatusCode,
    code,
    `${what}: upstream error ${code}: ${message}`,
    httpStatus === 429 ? { "retry-after": "1" } : {},
  );
  return rule.transient ? new Transient(err) : err;
}

/** A finished answer can still be unusable: blocked, over the context, cut off or empty. */
export function checkFinish(
  finishReason: string,
  content: string,
  what: string,
): { content: string; finishReason: string } {
  if (finishReason === "sensitive") {
    throw new GatewayError(
      400,
      "1301",
      `${what}: the upstream's content filter blocked the text (finish_reason "sensitive")`,
    );
  }
  if (finishReason === "model_context_window_exceeded") throw new TooLong(what);
  if (finishReason === "network_error" || content.trim() === "") {
    const why =
      content.trim() === "" ? "returned an empty answer" : 'failed while generating (finish_reason "network_error")';
    throw new Transient(new GatewayError(502, Codes.network, `${what}: the upstream ${why}`));
  }
  return { content, finishReason };
}
