// Cross-cutting middleware: request ids and the one-line request log, CORS for the client API,
// content-type checks for JSON routes, the client's credential (read here, verified by the key's object) and
// the admin token; and requireCaller(c), the one way a route verifies its caller itself.
import { mayBeKey } from "../auth/key-id.ts";
import { isIndexed } from "../keys/key-index.ts";
import { keyStub } from "../keys/stub.ts";
import type { Caller } from "../keys/types.ts";
import type { Context, MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { parseCredential, type Credential } from "../auth/credentials.ts";
import { blockedFor, clientIp, isKnownGood, recordFailure, rememberGood } from "../auth/failure-limit.ts";
import { CredentialRefused, refusal } from "../auth/refusal.ts";
import { readConfig, requireSecret } from "../config.ts";
import { Codes, GatewayError } from "../errors.ts";
import { REQUEST_ID_RE } from "../request-id.ts";
import type { AppEnv } from "./context.ts";
import { log } from "../shared/log.ts";

/**
 * Request id, start time and the request's one log line, written when the answer has ended: at once for
 * an answer the handler returned whole, when the stream has ended (and been settled) for a streamed one.
 */
export function requestContext(): MiddlewareHandler<AppEnv> {
  return async function requestContext(c, next) {
    const given = c.req.header("x-request-id");
    if (given !== undefined && given !== "" && !REQUEST_ID_RE.test(given)) {
      throw new GatewayError(
        400,
        Codes.illegalField,
        "invalid header x-request-id: use at most 128 printable ASCII characters",
      );
    }
    const requestId = given || crypto.randomUUID();
    c.set("requestId", requestId);
    c.set("startedAt", Date.now());
    c.set("logLine", { request_id: requestId, method: c.req.method, path: c.req.path });
    await next();
    c.header("x-request-id", c.get("requestId"));
    const line = c.get("logLine");
    line["request_id"] = c.get("requestId");
    line["status"] = c.res.status;
    const settled = c.get("settled");
    const started = c.get("startedAt");
    if (!settled) {
      line["total_ms"] = Date.now() - started;
      log(line);
      return;
    }
    c.executionCtx.waitUntil(
      settled.then(
        (fields) => log({ ...line, ...fields, total_ms: Date.now() - started }),
        (err: unknown) => log({ ...line, level: "error", error: String(err), total_ms: Date.now() - started }),
      ),
    );
  };
}

/** Request headers any browser page may send to the client API. */
const ALLOWED_HEADERS = [
  "authorization",
  "content-type",
  "x-request-id",
  "x-queue-timeout-ms",
  "x-fallback-models",
  "accept-language",
];
/**
 * The `openai` SDK's own headers (x-stainless-os, -lang, -arch, -runtime, -retry-count, -timeout, …). Their
 * set changes between SDK versions, so the family is allowed: they carry client facts, never authority.
 */
const SDK_HEADER = /^x-stainless-[a-z0-9-]{1,64}$/;

/** The Access-Control-Allow-Headers answer to a preflight: the fixed list plus the SDK headers it asks for. */
export function allowedRequestHeaders(requested: string | undefined): string {
  const sdk = new Set(
    (requested ?? "")
      .split(",")
      .map((h) => h.trim().toLowerCase())
      .filter((h) => SDK_HEADER.test(h)),
  );
  return [...ALLOWED_HEADERS, ...sdk].join(",");
}

const EXPOSED = [
  "x-request-id",
  "x-concurrency-limit",
  "x-concurrency-in-flight",
  "x-cost-cny",
  "retry-after",
  "x-summarize-chunks",
  "x-upstream-model",
  "x-upstream-attempts",
];

/** CORS for the client API from CORS_ORIGINS ("*" or a comma-separated list). Never mounted on /admin. */
export function clientCors(): MiddlewareHandler<AppEnv> {
  // Built once per CORS_ORIGINS value, not on every request (the value is fixed per deployment).
  let built: { origins: string; handler: MiddlewareHandler } | undefined;
  return async function clientCors(c, next) {
    const origins = c.env.CORS_ORIGINS ?? "*";
    if (built?.origins !== origins) {
      const { corsOrigins } = readConfig(c.env);
      built = {
        origins,
        handler: cors({
          origin: corsOrigins === "*" ? "*" : (origin) => (corsOrigins.includes(origin) ? origin : null),
          allowMethods: ["GET", "POST", "OPTIONS"],
          allowHeaders: ALLOWED_HEADERS,
          exposeHeaders: EXPOSED,
          maxAge: 600,
        }),
      };
    }
    const res = await built.handler(c, next);
    if (res instanceof Response && c.req.method === "OPTIONS") {
      // Both: Hono copies the context's headers onto the preflight response it is handed.
      const allow = allowedRequestHeaders(c.req.header("access-control-request-headers"));
      res.headers.set("access-control-allow-headers", allow);
      c.res.headers.set("access-control-allow-headers", allow);
    }
    return res;
  };
}

/**
 * Whether the request comes with a body: a non-zero content-length, or no length at all and a body streamed
 * (transfer-encoding) or typed (content-type). A declared length of 0 is no body, whatever its type says.
 */
function hasBody(c: Context<AppEnv>): boolean {
  const length = c.req.header("content-length");
  if (length !== undefined) return length !== "0";
  return c.req.header("transfer-encoding") !== undefined || c.req.header("content-type") !== undefined;
}

/**
 * JSON routes: 415 for a body that is not JSON (before any parsing). With `optional`, a request without a
 * body passes (routes whose fields all have defaults, the admin actions that take none).
 */
export function requireJson(opts: { optional?: boolean } = {}): MiddlewareHandler<AppEnv> {
  return async function requireJson(c, next) {
    if (c.req.method !== "POST" && c.req.method !== "PUT" && c.req.method !== "PATCH") return next();
    if (opts.optional && !hasBody(c)) return next();
    const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/json" && !/^application\/[\w.-]+\+json$/.test(type)) {
      throw new GatewayError(
        415,
        Codes.badParams,
        `unsupported content type ${JSON.stringify(type || "(none)")}: send application/json`,
      );
    }
    await next();
  };
}

/**
 * A body larger than this is not read until the caller's key's object has accepted the credential: parsing
 * and validating up to 8 MiB for anyone who sends a header costs far more than one object call. Smaller
 * bodies are parsed first and authenticated by admission (the same object call, so nothing extra); 64 KiB
 * holds any ordinary chat request and parses in well under a millisecond.
 */
export const AUTH_FIRST_BODY_BYTES = 64 * 1024;

function bodyNeedsAuthFirst(req: Request): boolean {
  if (req.body === null) return false;
  const length = req.headers.get("content-length");
  // No length (chunked): the size is unknown until it is read, so authenticate first.
  return length === null || !/^\d+$/.test(length) || Number(length) > AUTH_FIRST_BODY_BYTES;
}

/** What identifies a credential in the isolate's memory of good ones (never the secret itself). */
function fingerprint(cred: Credential): string {
  return cred.kind === "key" ? `${cred.keyId}.${cred.secretHash}` : cred.kind === "internal" ? cred.keyId : cred.token;
}

export interface ClientCredentialOptions {
  /**
   * Set on routes that act with the key's full authority or show the whole key's data (async jobs, usage,
   * minting tokens): a browser token gets 403 there, before anything else. Says what the token may not do.
   */
  refuseBrowserTokens?: string;
}

/**
 * Client routes: reads the caller's credential — a gateway key, GLM JWT or browser token; the admin token is
 * not a client key — into c.var.cred. It checks the credential's form and its key id's tag, not its secret:
 * the key's object verifies that, at admission or in requireCaller(c) (and here first for a large body).
 * Failed authentication is limited per client IP and key id (auth/failure-limit.ts): a blocked source is
 * answered 429 before its credential reaches any object, and every refused credential is counted.
 */
export function clientCredential(opts: ClientCredentialOptions = {}): MiddlewareHandler<AppEnv> {
  return async function clientCredential(c, next) {
    if (c.req.method === "OPTIONS") return next();
    const ip = clientIp(c.req.raw.headers);
    const line = c.get("logLine");
    const onLimiterError = (err: unknown) =>
      log({
        level: "warn",
        msg: "auth failure limiter unavailable",
        request_id: c.get("requestId"),
        error: String(err),
      });
    const header = c.req.header("authorization");
    let cred: Credential;
    try {
      cred = await parseCredential(header);
    } catch (err) {
      // A malformed credential counts against its IP (there is no key id to count); a missing one does not.
      if (header !== undefined && header.trim() !== "" && err instanceof GatewayError && err.status === 401) {
        const wait = blockedFor(ip, null) || (await recordFailure(c.env, ip, null, onLimiterError));
        if (wait > 0) throw tooManyFailures(wait);
      }
      throw err;
    }
    c.set("cred", cred);
    line["key_id"] = cred.keyId;
    if (cred.kind === "token" && opts.refuseBrowserTokens) {
      throw new GatewayError(
        403,
        Codes.authFailed,
        `a browser token cannot ${opts.refuseBrowserTokens}: call it from your back end with the key`,
      );
    }
    const known = isKnownGood(fingerprint(cred));
    if (!known) {
      const wait = blockedFor(ip, cred.keyId);
      if (wait > 0) {
        line["auth_blocked"] = true;
        throw tooManyFailures(wait);
      }
    }

    let refused: CredentialRefused | undefined;
    try {
      // A key id must carry its tag (or be an indexed key from before tags): a made-up id is refused like
      // a wrong secret, and costs no object call.
      if (!(await mayBeKey(c.env, cred.keyId, (id) => isIndexed(c.env, id)))) {
        throw refusal(cred, {
          status: 401,
          code: Codes.authFailed,
          message: "unknown API key (its id's tag does not verify)",
        });
      }
      if (bodyNeedsAuthFirst(c.req.raw)) await requireCaller(c);
      await next();
    } catch (err) {
      if (!(err instanceof CredentialRefused)) throw err;
      refused = err;
    }
    refused ??= c.error instanceof CredentialRefused ? c.error : undefined;
    if (refused) {
      line["auth_refused"] = refused.detail ?? refused.message;
      const wait = await recordFailure(c.env, ip, cred.keyId, onLimiterError);
      if (wait > 0) throw tooManyFailures(wait);
      if (c.error !== refused) throw refused;
      return;
    }
    // Every 2xx on a client route comes after the key's object accepted the credential.
    if (!known && c.res.status >= 200 && c.res.status < 300) rememberGood(fingerprint(cred));
  };
}

/**
 * Verifies the caller behind c.var.cred with one call to its key's object (set by clientCredential): its
 * caller record, or the refusal. For routes that act without an admission (job results, usage), and for a
 * body too large to read before the caller is known.
 */
export async function requireCaller(c: Context<AppEnv>): Promise<Caller> {
  const cred = c.get("cred");
  let auth;
  try {
    auth = await keyStub(c.env, cred.keyId).authenticate(cred, c.req.header("origin") ?? null);
  } catch (err) {
    log({
      level: "error",
      msg: "key object unreachable for authentication",
      request_id: c.get("requestId"),
      error: String(err),
    });
    throw new GatewayError(
      503,
      Codes.unavailable,
      "could not reach the key's state to authenticate; retry in a few seconds",
      { "retry-after": "2" },
    );
  }
  if (!auth.ok) throw refusal(cred, auth);
  return auth.caller;
}

function tooManyFailures(retryAfter: number): GatewayError {
  return new GatewayError(
    429,
    Codes.authRateLimited,
    `too many failed authentication attempts from this client or for this key; retry after ${retryAfter} s`,
    { "retry-after": String(retryAfter) },
  );
}

const enc = new TextEncoder();

/**
 * Admin routes: exactly `Authorization: Bearer <ADMIN_TOKEN>`. Both sides are hashed before a constant-time
 * compare, so neither the time taken nor an early length mismatch tells anything about the token.
 */
export function adminAuth(): MiddlewareHandler<AppEnv> {
  return async function adminAuth(c, next) {
    const token = requireSecret(c.env, "ADMIN_TOKEN");
    const header = c.req.header("authorization")?.trim();
    if (!header)
      throw new GatewayError(
        401,
        Codes.noAuth,
        "missing Authorization header: admin routes need 'Bearer <ADMIN_TOKEN>'",
      );
    const given = /^Bearer +(\S+)$/i.exec(header)?.[1];
    if (given === undefined)
      throw new GatewayError(
        401,
        Codes.authFailed,
        "authentication failed: admin routes need 'Authorization: Bearer <ADMIN_TOKEN>'",
      );
    const [a, b] = await Promise.all([sha256(given), sha256(token)]);
    if (!crypto.subtle.timingSafeEqual(a, b))
      throw new GatewayError(401, Codes.authFailed, "authentication failed: admin routes need the admin token");
    c.get("logLine")["admin"] = true;
    await next();
  };
}

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", enc.encode(text));
}
