// A gateway key as the admin API shows it: one definition documents /openapi.json and types the code (the stored
// record and the caller in src/keys/types.ts are built from it). The bounds an admin's input must meet are the
// request schemas' (src/routes/admin-keys.ts); an answer shows what is stored. Each is built on first use
// (src/lazy.ts).
import * as z from "../shared/zod.ts";
import { TIERS } from "../config.ts";
import { once } from "../lazy.ts";

export const publicKeySchema = once(() =>
  z
    .object({
      id: z.string(),
      name: z.string(),
      tier: z.enum(TIERS),
      max_concurrency: z.number().nullable(),
      daily_budget_cny: z.number().nullable(),
      daily_token_limit: z.number().nullable(),
      fallback_models: z.array(z.string()).nullable(),
      webhook_urls: z.array(z.string()).nullable(),
      max_upstream_share: z.number().nullable(),
      tokens_valid_after: z
        .number()
        .nullable()
        .optional()
        .openapi({ description: "browser tokens issued at or before this time (Unix seconds) are refused" }),
      created_at: z.string(),
      updated_at: z.string(),
      revoked_at: z.string().nullable(),
    })
    .openapi("Key"),
);

/** GET /admin/keys/{id}: the key with its requests in flight. */
export const keyDetailSchema = once(() =>
  publicKeySchema()
    .extend({
      in_flight: z.record(z.string(), z.number()).openapi({ description: "requests in flight per model" }),
    })
    .openapi("KeyDetail"),
);

/** POST /admin/keys: the key with its two secrets, the only time they are shown. */
export const createdKeySchema = once(() =>
  publicKeySchema()
    .extend({
      key: z.string().openapi({ description: "the full key <id>.<secret>, shown only once" }),
      webhook_secret: z.string().openapi({ description: "signing secret for this key's webhooks (whsec_…)" }),
    })
    .openapi("CreatedKey"),
);

/** What the operator console learns of a key besides its settings: its last use and today's spend (GET /admin/load). */
export const keyActivitySchema = once(() =>
  z.object({
    last_used_at: z.string().nullable().openapi({ description: "when the key's last request reached upstream" }),
    today: z
      .object({ cost_cny: z.number(), tokens: z.number() })
      .openapi({ description: "spent since UTC midnight (what the daily budget counts)" }),
  }),
);

/** What the admin API shows: never a secret; every setting, null when unset. */
export type PublicKey = z.infer<ReturnType<typeof publicKeySchema>>;
export type KeyDetail = z.infer<ReturnType<typeof keyDetailSchema>>;
/** A key as the operator console sees it (its object's status()): settings, in flight per model, activity. */
export type KeyStatus = KeyDetail & z.infer<ReturnType<typeof keyActivitySchema>>;
