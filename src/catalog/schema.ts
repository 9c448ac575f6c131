// Catalog schema: one definition validates admin writes, types the code and documents the API.
import { z } from "@hono/zod-openapi";

const nonNeg = z.number().finite().nonnegative();
const limit = z.number().int().min(0).max(1_000_000);

export const PricingSchema = z
  .object({
    input: nonNeg.describe("CNY per million input tokens"),
    output: nonNeg.describe("CNY per million output tokens"),
    cached_input: nonNeg.nullable().describe("CNY per million cached input tokens; null when not offered"),
  })
  .strict();

export const ConcurrencySchema = z.object({ V0: limit, V1: limit, V2: limit, V3: limit }).strict();

export const CapabilitiesSchema = z
  .object({ tools: z.boolean(), web_search: z.boolean(), json_mode: z.boolean(), streaming: z.boolean() })
  .strict();

export const ModelEntrySchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "model ids are lower-case letters, digits, . _ -"),
    context_window: z.number().int().positive(),
    max_output_tokens: z.number().int().positive(),
    pricing: PricingSchema,
    concurrency: ConcurrencySchema,
    capabilities: CapabilitiesSchema,
    status: z.enum(["active", "deprecated", "disabled"]),
    created: z.number().int().nonnegative(),
  })
  .strict()
  .openapi("CatalogModel");

export const CatalogSchema = z
  .object({
    version: z.number().int().nonnegative(),
    updated_at: z.string(),
    models: z
      .array(ModelEntrySchema)
      .min(1)
      .max(200)
      .refine((ms) => new Set(ms.map((m) => m.id)).size === ms.length, "model ids must be unique"),
  })
  .strict()
  .openapi("Catalog");

/** PATCH body: any subset of a model's fields, nested objects merged field by field. */
export const ModelPatchSchema = z
  .object({
    context_window: z.number().int().positive(),
    max_output_tokens: z.number().int().positive(),
    pricing: PricingSchema.partial(),
    concurrency: ConcurrencySchema.partial(),
    capabilities: CapabilitiesSchema.partial(),
    status: z.enum(["active", "deprecated", "disabled"]),
  })
  .partial()
  .strict()
  .openapi("CatalogModelPatch");

export type Catalog = z.infer<typeof CatalogSchema>;
export type ModelEntry = z.infer<typeof ModelEntrySchema>;
export type ModelPatch = z.infer<typeof ModelPatchSchema>;
