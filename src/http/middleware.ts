// Cross-cutting middleware: request ids and the one-line request log, CORS for the client API,
// content-type checks for JSON routes, and the two kinds of authentication (client keys, admin token).
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { parseCredential, bearerValue } from "../auth/credentials.ts";
import { constantTimeEqual } from "../auth/crypto.ts";
import { readConfig, requireSecret } from "../config.ts";
import { Codes, GatewayError } from "../errors.ts";
import { REQUEST_ID_RE } from "../request-id.ts";
import type { AppEnv } from "./context.ts";
import { log } from "./log.ts";


/**
 * Request id, start time and the request's one log line, written when the answer has ended: at once for
 * an answer the handler returned whole, when the stream has ended (and been settled) for a streamed one.
 */
export function requestContext(): MiddlewareHandler<AppEnv> {
  return async function requestContext(c, next) {
    const given = c.req.header("x-request-id");
    if (given !== undefined && given !== "" && !REQUEST_ID_RE.test(given)) {
      throw new GatewayError(400, Codes.illegalField, "invalid header x-request-id: use at most 128 printable ASCII characters");
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

const EXPOSED = ["x-request-id", "x-concurrency-limit", "x-concurrency-in-flight", "x-cost-cny", "retry-after", "x-summarize-chunks"];

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
          allowHeaders: ["authorization", "content-type", "x-request-id", "x-queue-timeout-ms", "accept-language"],
          exposeHeaders: EXPOSED,
          maxAge: 600,
        }),
      };
    }
    return built.handler(c, next);
  };
}

/** JSON routes: 415 for a body that is not JSON (before any parsing). */
export function requireJson(): MiddlewareHandler<AppEnv> {
  return async function requireJson(c, next) {
    if (c.req.method !== "POST" && c.req.method !== "PUT" && c.req.method !== "PATCH") return next();
    const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/json" && !/^application\/[\w.-]+\+json$/.test(type)) {
      throw new GatewayError(415, Codes.badParams, `unsupported content type ${JSON.stringify(type || "(none)")}: send application/json`);
    }
    await next();
  };
}

/** Client routes: a gateway key (or GLM JWT, or browser token). The admin token is not a client key. */
export function clientAuth(): MiddlewareHandler<AppEnv> {
  return async function clientAuth(c, next) {
    if (c.req.method === "OPTIONS") return next();
    const cred = await parseCredential(c.req.header("authorization"));
    c.set("cred", cred);
    c.get("logLine")["key_id"] = cred.keyId;
    await next();
  };
}

/** Admin routes: exactly `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
export function adminAuth(): MiddlewareHandler<AppEnv> {
  return async function adminAuth(c, next) {
    const token = requireSecret(c.env, "ADMIN_TOKEN");
    const given = bearerValue(c.req.header("authorization"));
    if (!given) throw new GatewayError(401, Codes.noAuth, "missing Authorization header: admin routes need 'Bearer <ADMIN_TOKEN>'");
    if (!constantTimeEqual(given, token)) throw new GatewayError(401, Codes.authFailed, "authentication failed: admin routes need the admin token");
    c.get("logLine")["admin"] = true;
    await next();
  };
}
