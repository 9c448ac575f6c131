// What an API error means for the person at the page, by HTTP status and GLM code, and when to retry.
// The gateway's own status, code and message are always shown verbatim next to this (see app.js).
import { until } from "./format.js";

/**
 * @param {import("./api.js").ApiError} err
 * @param {{ model?: string }} ctx
 * @returns {{ title: string, kind: "limit" | "error", lines: string[], retryAfterS: number | null }}
 */
export function explain(err, ctx = {}) {
  const retry = Number(err.headers?.["retry-after"]);
  const retryAfterS = Number.isFinite(retry) && retry >= 0 ? retry : null;
  const limit = err.headers?.["x-concurrency-limit"];
  const inFlight = err.headers?.["x-concurrency-in-flight"];
  const model = ctx.model ? ` for ${ctx.model}` : "";
  const when =
    retryAfterS !== null ? ` The gateway says to retry after ${until(retryAfterS * 1000)} (Retry-After).` : "";

  if (err.inBand) {
    return {
      kind: "error",
      title: "The answer stopped midway",
      lines: [
        "The request was accepted and started, then the stream ended with an error. What arrived is kept above; usage so far is recorded on the key.",
      ],
      retryAfterS,
    };
  }
  if (err.status === 0) {
    return {
      kind: "error",
      title: "Could not reach the gateway",
      lines: ["The browser could not complete the request (network down, or the gateway is not running)."],
      retryAfterS: null,
    };
  }
  if (err.status === 429) {
    if (err.code === "1302") {
      const numbers = limit
        ? ` This key may have ${limit} request${limit === "1" ? "" : "s"} in flight at once${model}${inFlight ? `, and ${inFlight} ${inFlight === "1" ? "is" : "are"} running now` : ""}.`
        : "";
      return {
        kind: "limit",
        title: "Limit reached: too many requests at once",
        lines: [
          `429 means a limit, not a mistake in your request: it was not started, so it used no tokens and cost nothing.${numbers}`,
          `Retry when a running request finishes.${when} Or set “Wait for a free slot” in Parameters to queue instead of failing.`,
        ],
        retryAfterS,
      };
    }
    if (err.code === "1308") {
      return {
        kind: "limit",
        title: "Daily limit reached",
        lines: [
          `This key's daily budget or token limit is used up. It resets at midnight UTC${retryAfterS !== null ? `, in ${until(retryAfterS * 1000)}` : ""}.`,
          "An operator can raise the limit with PATCH /admin/keys/{id}.",
        ],
        retryAfterS,
      };
    }
    if (err.code === "1305") {
      return {
        kind: "limit",
        title: "GLM is overloaded",
        lines: [`Zhipu's platform is busy right now; this is not your key's limit. Retry in a few seconds.${when}`],
        retryAfterS,
      };
    }
    return {
      kind: "limit",
      title: "Rate limited",
      lines: [`A limit refused the request (code ${err.code}).${when || " Wait a little and retry."}`],
      retryAfterS,
    };
  }
  if (err.status === 401) {
    const why = {
      1000: "The key was refused: unknown, wrong secret, or revoked.",
      1001: "No key was sent: paste a key or a browser token in Settings.",
      1002: "That is not a valid key (<id>.<secret>) or token.",
      1003: "The browser token has expired: have your back end mint a new one (POST /v1/tokens).",
      1004: "The token's signature does not match its key: it was altered, or belongs to another key.",
    }[err.code];
    return {
      kind: "error",
      title: "Not authenticated",
      lines: [why ?? "The gateway did not accept these credentials."],
      retryAfterS: null,
    };
  }
  if (err.status === 403) {
    return {
      kind: "error",
      title: "Not allowed for this token",
      lines: ["The browser token is restricted (to an origin or to some models) and this request is outside it."],
      retryAfterS: null,
    };
  }
  if (err.status === 400 || err.status === 413 || err.status === 415) {
    const why = {
      1211: "The model is not in the gateway's catalog (or is disabled).",
      1261: "The prompt is longer than the model's context window.",
      1213: "A required field is missing.",
      1214: "A field has a value the API does not accept.",
    }[err.code];
    return {
      kind: "error",
      title: "The request was refused",
      lines: [why ?? "The API could not accept this request as sent."],
      retryAfterS: null,
    };
  }
  if (err.status === 404) {
    return {
      kind: "error",
      title: "Not found",
      lines: ["The gateway has no such route or resource. Is this deployment up to date?"],
      retryAfterS: null,
    };
  }
  if (err.status >= 500) {
    const why = {
      502: "GLM could not be reached from the gateway.",
      503: "The gateway is unavailable or misconfigured.",
      504: "GLM did not answer in time.",
    }[err.status];
    return {
      kind: "error",
      title: "Server error",
      lines: [`${why ?? "The gateway or GLM failed."} Retrying later usually helps.${when}`],
      retryAfterS,
    };
  }
  return { kind: "error", title: `HTTP ${err.status}`, lines: [], retryAfterS };
}
