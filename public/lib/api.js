// Talks to the gateway from the page: JSON and streamed (SSE) calls with the pasted key or token, and the
// gateway's errors kept exactly as sent (status, GLM code, message, body, headers) for the page to show.
import { readSse } from "./sse.js";

/** An HTTP error from the API, or an error event inside a stream (inBand). Nothing is reworded here. */
export class ApiError extends Error {
  constructor({ status, code, message, raw, headers, requestId, inBand = false, url = "" }) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.raw = raw;
    this.headers = headers;
    this.requestId = requestId;
    this.inBand = inBand;
    this.url = url;
  }
}

/** Headers worth showing next to an error: limits, retry hint, request id. */
const SHOWN = ["retry-after", "x-concurrency-limit", "x-concurrency-in-flight", "x-request-id"];

function pickHeaders(res) {
  const out = {};
  for (const name of SHOWN) {
    const v = res.headers.get(name);
    if (v !== null) out[name] = v;
  }
  return out;
}

async function toApiError(res, url) {
  const raw = await res.text().catch(() => "");
  let code = String(res.status);
  let message = raw || res.statusText || `HTTP ${res.status}`;
  try {
    const body = JSON.parse(raw);
    if (body && typeof body.error === "object" && body.error) {
      code = String(body.error.code ?? code);
      message = String(body.error.message ?? message);
    }
  } catch {
    // Not JSON (a proxy's HTML page, say): the raw text is the message.
  }
  return new ApiError({
    status: res.status,
    code,
    message,
    raw,
    headers: pickHeaders(res),
    requestId: res.headers.get("x-request-id"),
    url,
  });
}

function authHeaders(credential) {
  return credential ? { authorization: `Bearer ${credential}` } : {};
}

/** A call with an optional JSON body; throws ApiError for a non-2xx answer, else returns the response. */
export async function request(path, { method = "GET", body, credential, signal } = {}) {
  const headers = { ...authHeaders(credential), ...(body !== undefined ? { "content-type": "application/json" } : {}) };
  const res = await fetch(path, {
    method,
    headers,
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal,
  });
  if (!res.ok) throw await toApiError(res, path);
  return res;
}

/** GET (or another method with a JSON body) returning parsed JSON; throws ApiError for a non-2xx answer. */
export async function getJson(path, options = {}) {
  return (await request(path, options)).json();
}

/**
 * POSTs a JSON body with stream: true and calls onEvent(chunk) for every parsed chunk, onComment(text) for
 * SSE comments. Returns the response's headers once the stream has ended with [DONE].
 * Throws ApiError for an HTTP error or an in-band {"error":…} event, and Error when the stream stops early.
 */
export async function postStream(path, body, { credential, signal, headers = {}, onOpen, onEvent, onComment }) {
  const res = await fetch(path, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "text/event-stream",
      ...authHeaders(credential),
      ...headers,
    },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await toApiError(res, path);
  const info = {
    requestId: res.headers.get("x-request-id"),
    headers: pickHeaders(res),
    costHeader: res.headers.get("x-cost-cny"),
  };
  onOpen?.(info);
  if (!(res.headers.get("content-type") ?? "").includes("text/event-stream")) {
    // A gateway or proxy that ignored stream: true: hand the whole JSON answer over as one event.
    onEvent?.(await res.json());
    return info;
  }
  for await (const ev of readSse(res.body)) {
    if (ev.comment !== undefined) {
      onComment?.(ev.comment);
      continue;
    }
    if (ev.data === "[DONE]") return info;
    let chunk;
    try {
      chunk = JSON.parse(ev.data);
    } catch {
      continue; // not JSON: nothing a client can use
    }
    if (chunk && typeof chunk === "object" && chunk.error && typeof chunk.error === "object") {
      throw new ApiError({
        status: res.status,
        code: String(chunk.error.code ?? "stream"),
        message: String(chunk.error.message ?? "the stream failed"),
        raw: ev.data,
        headers: info.headers,
        requestId: info.requestId,
        inBand: true,
        url: path,
      });
    }
    onEvent?.(chunk);
  }
  throw new ApiError({
    status: res.status,
    code: "stream",
    message: "the stream ended before [DONE]: the connection was cut",
    raw: "",
    headers: info.headers,
    requestId: info.requestId,
    inBand: true,
    url: path,
  });
}

/** Decodes a JWT's payload without verifying it (the gateway verifies); null when it is not one. */
export function peekJwt(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(window.atob(b64 + "===".slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload && typeof payload === "object" ? payload : null;
  } catch {
    return null;
  }
}
