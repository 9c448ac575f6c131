// Catalog schema: one definition validates admin writes, types the code and documents the API. Each schema is
// built on first use (see src/lazy.ts).
import * as z from "../shared/zod.ts";
import { once } from "../lazy.ts";

const parts = once(() => {
  const nonNeg = z.number().finite().nonnegative();
  const limit = z.number().int().min(0).max(1_000_000);
  const pricing = z
    .object({
      input: nonNeg.describe("CNY per million input tokens"),
      output: nonNeg.describe("CNY per million output tokens"),
      cached_input: nonNeg.nullable().describe("CNY per million cached input tokens; null when not offered"),
    })
    .strict();
  const concurrency = z.object({ V0: limit, V1: limit, V2: limit, V3: limit }).strict();
  const capabilities = z
    .object({ tools: z.boolean(), web_search: z.boolean(), json_mode: z.boolean(), streaming: z.boolean() })
    .strict();
  return { pricing, concurrency, capabilities };
});

export const concurrencySchema = () => parts().concurrency;
export const capabilitiesSchema = () => parts().capabilities;

export const modelEntrySchema = once(() =>
  z
    .object({
      id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "model ids are lower-case letters, digits, . _ -"),
      context_window: z.number().int().positive(),
      max_output_tokens: z.number().int().positive(),
      pricing: parts().pricing,
      concurrency: parts().concurrency,
      capabilities: parts().capabilities,
      status: z.enum(["active", "deprecated", "disabled"]),
      created: z.number().int().nonnegative(),
    })
    .strict()
    .openapi("CatalogModel"),
);

export const catalogSchema = once(() =>
  z
    .object({
      version: z.number().int().nonnegative(),
      updated_at: z.string(),
      models: z
        .array(modelEntrySchema())
        .min(1)
        .max(200)
        .refine((ms) => new Set(ms.map((m) => m.id)).size === ms.length, "model ids must be unique"),
    })
    .strict()
    .openapi("Catalog"),
);

/** PATCH body: any subset of a model's fields, nested objects merged field by field. */
export const modelPatchSchema = once(() =>
  z
    .object({
      context_window: z.number().int().positive(),
      max_output_tokens: z.number().int().positive(),
      pricing: parts().pricing.partial(),
      concurrency: parts().concurrency.partial(),
      capabilities: parts().capabilities.partial(),
      status: z.enum(["active", "deprecated", "disabled"]),
    })
    .partial()
    .strict()
    .openapi("CatalogModelPatch"),
);

export type Catalog = z.infer<ReturnType<typeof catalogSchema>>;
export type ModelEntry = z.infer<ReturnType<typeof modelEntrySchema>>;
