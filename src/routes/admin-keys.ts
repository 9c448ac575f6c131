// Admin API for gateway keys. A key's Durable Object is the source of truth (a revoked key is refused on
// its next request); KV holds a listing index that may lag by up to a minute and is only used for lists.
import { newKeyId } from "../auth/key-id.ts";
import { indexPage, writeIndex } from "../keys/key-index.ts";
import * as z from "../shared/zod.ts";
import { getCatalog } from "../catalog/store.ts";
import { resolveModel } from "../catalog/rules.ts";
import type { WaitUntil } from "../shared/wait-until.ts";
import { randomB64url, seal, sha256Hex, toB64 } from "../auth/crypto.ts";
import { keySealingSecret, TIERS } from "../config.ts";
import { Codes, GatewayError } from "../errors.ts";
import { adminSecurity, commonErrors, createRoute, newRouter, notFound } from "../http/openapi.ts";
import { keyStub } from "../keys/stub.ts";
import { createdKeySchema, keyDetailSchema, publicKeySchema } from "../keys/schema.ts";
import { toPublic, type KeyRecord } from "../keys/types.ts";
import { KEY_ID_RE } from "../auth/credentials.ts";
import { once } from "../lazy.ts";

const settings = once(() => ({
  name: z.string().trim().min(1).max(100),
  tier: z.enum(TIERS),
  max_concurrency: z.number().int().min(1).max(100_000).nullable(),
  daily_budget_cny: z.number().finite().min(0).nullable(),
  daily_token_limit: z.number().int().min(0).nullable(),
  fallback_models: z.array(z.string().min(1).max(64)).max(5).nullable().openapi({
    description:
      "models tried in order when the requested one fails for good before its first byte (x-fallback-models overrides)",
  }),
  webhook_urls: z
    .array(
      z
        .string()
        .url()
        .max(2048)
        .refine((u) => /^https?:\/\//.test(u), "an http(s) URL"),
    )
    .max(20)
    .nullable()
    .openapi({
      description:
        "URL prefixes an async job's callback_url must start with (same scheme, host and port; a path prefix at a " +
        "'/' boundary)",
    }),
  max_upstream_share: z
    .number()
    .positive()
    .max(1)
    .nullable()
    .openapi({
      description:
        "fraction (0 < x ≤ 1) of an upstream account's limit for a model this key holds at most while other keys " +
        "wait for it " +
        "(at least one slot); alone, the key may use whatever is free. null: no cap",
      example: 0.5,
    }),
}));

/** Fallback models must be in the catalog when they are set (a model removed later is skipped at request time). */
async function checkFallbacks(
  c: { env: Env; executionCtx: WaitUntil },
  models: string[] | null | undefined,
): Promise<void> {
  if (!models?.length) return;
  const view = await getCatalog(c.env, c.executionCtx);
  for (const id of models) resolveModel(view, id);
}

const createKeySchema = once(() => {
  const s = settings();
  return z
    .object({
      name: s.name.openapi({ example: "my-frontend" }),
      tier: s.tier.default("V0"),
      max_concurrency: s.max_concurrency.optional(),
      daily_budget_cny: s.daily_budget_cny.optional(),
      daily_token_limit: s.daily_token_limit.optional(),
      fallback_models: s.fallback_models.optional(),
      webhook_urls: s.webhook_urls.optional(),
      max_upstream_share: s.max_upstream_share.optional(),
    })
    .strict()
    .openapi("CreateKey");
});

const patchKeySchema = once(() => z.object(settings()).partial().strict().openapi("PatchKey"));

const idParam = once(() =>
  z.object({
    id: z.string().openapi({ param: { name: "id", in: "path" }, example: "0123456789abcdef0123456789abcdef" }),
  }),
);

function json<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}

function checkId(id: string): string {
  if (!KEY_ID_RE.test(id)) throw new GatewayError(404, Codes.notFound, "no such key");
  return id;
}

export function newWebhookSecret(): string {
  return "whsec_" + toB64(crypto.getRandomValues(new Uint8Array(24)));
}

export const adminKeys = newRouter();

adminKeys.openapi(
  createRoute({ method: "post", path: "/keys" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Create a key",
    request: { body: { required: true, content: { "application/json": { schema: createKeySchema() } } } },
    responses: () => ({
      201: json(createdKeySchema(), "The new key; `key` and `webhook_secret` are shown only here"),
      ...commonErrors(),
    }),
  })),
  async (c) => {
    const body = c.req.valid("json");
    await checkFallbacks(c, body.fallback_models);
    // The id carries its own tag, so the Worker can refuse a made-up id without calling any object.
    const id = await newKeyId(c.env);
    const secret = randomB64url(24);
    const webhookSecret = newWebhookSecret();
    const material = keySealingSecret(c.env);
    const now = new Date().toISOString();
    const record: KeyRecord = {
      id,
      name: body.name,
      tier: body.tier,
      max_concurrency: body.max_concurrency ?? null,
      daily_budget_cny: body.daily_budget_cny ?? null,
      daily_token_limit: body.daily_token_limit ?? null,
      fallback_models: body.fallback_models ?? null,
      webhook_urls: body.webhook_urls ?? null,
      max_upstream_share: body.max_upstream_share ?? null,
      created_at: now,
      updated_at: now,
      revoked_at: null,
      secret_hash: await sha256Hex(secret),
      secret_sealed: await seal(material, secret),
      webhook_secret_sealed: await seal(material, webhookSecret),
    };
    await keyStub(c.env, id).init(record);
    const pub = toPublic(record);
    await writeIndex(c.env, pub);
    return c.json({ ...pub, key: `${id}.${secret}`, webhook_secret: webhookSecret }, 201);
  },
);

adminKeys.openapi(
  createRoute({ method: "get", path: "/keys" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "List keys",
    request: {
      query: z.object({ cursor: z.string().optional(), limit: z.coerce.number().int().min(1).max(1000).optional() }),
    },
    responses: () => ({
      200: json(
        z.object({ data: z.array(publicKeySchema()), cursor: z.string().nullable() }),
        "Keys, newest index entries first",
      ),
      ...commonErrors(),
    }),
  })),
  async (c) => {
    const q = c.req.valid("query");
    const page = await indexPage(c.env, q.limit ?? 100, q.cursor);
    return c.json({ data: page.keys, cursor: page.cursor }, 200);
  },
);

adminKeys.openapi(
  createRoute({ method: "get", path: "/keys/{id}" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "A key, with its in-flight count per model",
    request: { params: idParam() },
    responses: () => ({ 200: json(keyDetailSchema(), "The key"), ...commonErrors(), ...notFound() }),
  })),
  async (c) => {
    const info = await keyStub(c.env, checkId(c.req.valid("param").id)).info();
    if (!info) throw new GatewayError(404, Codes.notFound, "no such key");
    return c.json(info, 200);
  },
);

adminKeys.openapi(
  createRoute({ method: "patch", path: "/keys/{id}" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Change a key's name, tier, limits, budgets, fallback models, webhook URLs or upstream share",
    request: {
      params: idParam(),
      body: { required: true, content: { "application/json": { schema: patchKeySchema() } } },
    },
    responses: () => ({ 200: json(publicKeySchema(), "The updated key"), ...commonErrors(), ...notFound() }),
  })),
  async (c) => {
    await checkFallbacks(c, c.req.valid("json").fallback_models);
    const updated = await keyStub(c.env, checkId(c.req.valid("param").id)).update(c.req.valid("json"));
    if (!updated) throw new GatewayError(404, Codes.notFound, "no such key (or it was revoked)");
    await writeIndex(c.env, updated);
    return c.json(updated, 200);
  },
);

adminKeys.openapi(
  createRoute({ method: "post", path: "/keys/{id}/revoke-tokens" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Revoke every browser token of a key (the key itself keeps working; tokens minted from now on work)",
    request: { params: idParam() },
    responses: () => ({
      200: json(publicKeySchema(), "The key, with tokens_valid_after set"),
      ...commonErrors(),
      ...notFound(),
    }),
  })),
  async (c) => {
    const key = await keyStub(c.env, checkId(c.req.valid("param").id)).revokeTokens();
    if (!key) throw new GatewayError(404, Codes.notFound, "no such key (or it was revoked)");
    return c.json(key, 200);
  },
);

adminKeys.openapi(
  createRoute({ method: "delete", path: "/keys/{id}" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Revoke a key (refused on its next request)",
    request: { params: idParam() },
    responses: () => ({ 200: json(publicKeySchema(), "The revoked key"), ...commonErrors(), ...notFound() }),
  })),
  async (c) => {
    const revoked = await keyStub(c.env, checkId(c.req.valid("param").id)).revoke();
    if (!revoked) throw new GatewayError(404, Codes.notFound, "no such key");
    await writeIndex(c.env, revoked);
    return c.json(revoked, 200);
  },
);

adminKeys.openapi(
  createRoute({ method: "post", path: "/keys/{id}/webhook-secret" }, () => ({
    tags: ["admin"],
    security: adminSecurity,
    summary: "Rotate the key's webhook signing secret",
    request: { params: idParam() },
    responses: () => ({
      200: json(z.object({ id: z.string(), webhook_secret: z.string() }), "The new secret, shown only here"),
      ...commonErrors(),
      ...notFound(),
    }),
  })),
  async (c) => {
    const id = checkId(c.req.valid("param").id);
    const secret = newWebhookSecret();
    const ok = await keyStub(c.env, id).setWebhookSecret(await seal(keySealingSecret(c.env), secret));
    if (!ok) throw new GatewayError(404, Codes.notFound, "no such key (or it was revoked)");
    return c.json({ id, webhook_secret: secret }, 200);
  },
);
