// POST /v1/tokens: a back end holding a gateway key mints a short-lived browser token, optionally limited
// to some models and to one web origin. The key's Durable Object signs it with the key's secret, so the
// token dies at its expiry and with the key; a browser uses it like a key on the client API only.
import * as z from "../shared/zod.ts";
import { TOKEN_TTL_DEFAULT_S, TOKEN_TTL_MAX_S } from "../auth/browser-token.ts";
import { getCatalog } from "../catalog/store.ts";
import { resolveModel } from "../catalog/rules.ts";
import { readConfig } from "../config.ts";
import { refusal } from "../auth/refusal.ts";
import { Codes, GatewayError } from "../errors.ts";
import { requireJson } from "../http/middleware.ts";
import { bearerSecurity, commonErrors, createRoute, errorSchema, newRouter } from "../http/openapi.ts";
import { log } from "../shared/log.ts";
import { once } from "../lazy.ts";
import { keyStub } from "../keys/stub.ts";

const MAX_MODELS = 64;

const tokenRequestSchema = once(() =>
  z
    .object({
      ttl_seconds: z
        .number()
        .int()
        .min(1)
        .max(TOKEN_TTL_MAX_S)
        .optional()
        .openapi({
          description:
            `Lifetime in seconds; default ${TOKEN_TTL_DEFAULT_S} (10 minutes), at most ${TOKEN_TTL_MAX_S} ` +
            `(24 hours)`,
          example: 600,
        }),
      models: z
        .array(z.string().min(1).max(128))
        .min(1)
        .max(MAX_MODELS)
        .optional()
        .openapi({
          description: "Only these catalog models may be used with the token (403 otherwise); omitted: every model",
          example: ["glm-4-flash-250414"],
        }),
      origin: z.string().max(2048).optional().openapi({
        description: "The only web origin allowed to use the token (its Origin header must match, 403 otherwise)",
        example: "https://app.example.com",
      }),
    })
    .strict()
    .openapi("TokenRequest"),
);

const tokenSchema = once(() =>
  z
    .object({
      token: z.string().openapi({ description: "Send as `Authorization: Bearer <token>` from the browser" }),
      expires_at: z.string().openapi({
        description: "ISO 8601 time after which the token is refused (401, code 1003)",
        example: "2026-11-25T12:10:00.000Z",
      }),
      models: z.array(z.string()).nullable().openapi({ description: "Models the token may use; null: all" }),
      origin: z.string().nullable().openapi({ description: "Origin the token is bound to; null: any" }),
    })
    .openapi("BrowserToken"),
);

/** Accepts only a full http(s) origin ("https://app.example.com[:port]") and returns it normalised. */
export function parseOrigin(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new GatewayError(
      400,
      Codes.illegalField,
      "invalid field origin: expected an origin such as https://app.example.com",
    );
  }
  const bare =
    url.pathname === "/" &&
    !url.search &&
    !url.hash &&
    !url.username &&
    !url.password &&
    !raw.trim().endsWith("?") &&
    !raw.trim().endsWith("#");
  if ((url.protocol !== "https:" && url.protocol !== "http:") || !bare) {
    throw new GatewayError(
      400,
      Codes.illegalField,
      "invalid field origin: expected scheme, host and optional port only, such as https://app.example.com",
    );
  }
  return url.origin;
}

const route = createRoute({ method: "post", path: "/tokens", middleware: [requireJson({ optional: true })] }, () => ({
  tags: ["tokens"],
  security: bearerSecurity,
  summary: "Mint a short-lived browser token",
  description:
    "Call this from your back end with a gateway key (never from a browser). The token works like the key on " +
    "`/chat/completions`, `/summarize` and `/models`, counts against the key's concurrency, budget and usage, " +
    "and stops working at `expires_at` or when the key is revoked. It cannot mint tokens, read `/usage`, submit or " +
    "read async jobs (403), or use `/admin`.",
  request: { body: { required: false, content: { "application/json": { schema: tokenRequestSchema() } } } },
  responses: () => ({
    201: {
      description: "The token; not cacheable",
      headers: z.object({ "cache-control": z.string().openapi({ example: "no-store" }) }),
      content: { "application/json": { schema: tokenSchema() } },
    },
    ...commonErrors(),
    403: {
      description: "The caller is itself a browser token (1000)",
      content: { "application/json": { schema: errorSchema() } },
    },
  }),
}));

export const tokens = newRouter();

tokens.openapi(route, async (c) => {
  const body = c.req.valid("json");
  const cred = c.get("cred");
  if (cred.kind === "token")
    throw new GatewayError(
      403,
      Codes.authFailed,
      "a browser token cannot mint tokens: call POST /v1/tokens with a key",
    );

  const ttlSeconds = body.ttl_seconds ?? TOKEN_TTL_DEFAULT_S;
  let models: string[] | null = null;
  if (body.models) {
    const view = await getCatalog(c.env, c.executionCtx);
    models = [...new Set(body.models.map((id) => resolveModel(view, id).id))];
  }
  let origin: string | null = null;
  if (body.origin !== undefined) {
    origin = parseOrigin(body.origin);
    const allowed = readConfig(c.env).corsOrigins;
    // A token for an origin that CORS refuses would fail in every browser: say so now, not at first use.
    if (allowed !== "*" && !allowed.includes(origin)) {
      throw new GatewayError(
        400,
        Codes.illegalField,
        `invalid field origin: ${origin} is not in the gateway's CORS_ORIGINS, so browsers there cannot call it`,
      );
    }
  }

  let minted;
  try {
    minted = await keyStub(c.env, cred.keyId).mintToken(cred, { ttlSeconds, models, origin });
  } catch (err) {
    log({
      level: "error",
      msg: "token mint failed: key object unreachable",
      request_id: c.get("requestId"),
      error: String(err),
    });
    throw new GatewayError(
      503,
      Codes.unavailable,
      "could not reach the key's state to mint a token; retry in a few seconds",
      { "retry-after": "2" },
    );
  }
  if (!minted.ok) throw refusal(cred, minted);

  Object.assign(c.get("logLine"), {
    token_ttl_s: ttlSeconds,
    token_models: models?.length ?? null,
    token_origin: origin,
  });
  c.header("cache-control", "no-store");
  return c.json({ token: minted.token, expires_at: minted.expires_at, models, origin }, 201);
});
