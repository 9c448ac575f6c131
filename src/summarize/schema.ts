// The summarize API's shapes: the JSON body, the query options of a text/plain body, the answer and the
// streamed progress chunk. One definition validates requests, types the code and documents /openapi.json; each
// is built on first use (see src/lazy.ts).
import * as z from "../shared/zod.ts";
import { once } from "../lazy.ts";

/** Longest text accepted, in UTF-16 code units (a CJK character counts 1); longer texts get 413. */
export const MAX_TEXT_CHARS = 2_000_000;
/** Free-form guidance is capped so that it cannot crowd the document out of the context window. */
export const MAX_INSTRUCTIONS_CHARS = 4_000;

export const STYLES = ["paragraph", "bullets", "tldr"] as const;
export type Style = (typeof STYLES)[number];

/** "auto", or a BCP 47-style language tag: zh, en, ja, zh-TW, pt-BR … */
const LANGUAGE_RE = /^(?:auto|[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,2})$/;

/** Fields the JSON body and the query options share. */
const fields = once(() => {
  const language = z
    .string()
    .regex(LANGUAGE_RE, 'expected "auto" or a language tag such as zh, en, ja, zh-TW')
    .openapi({
      description: 'Language of the summary; "auto" (default) answers in the language of the text',
      example: "auto",
    });
  const style = z.enum(STYLES).openapi({
    description: "paragraph: flowing prose (default); bullets: a list of key points; tldr: one or two sentences",
  });
  const instructions = z
    .string()
    .max(MAX_INSTRUCTIONS_CHARS)
    .openapi({ description: 'Extra guidance, e.g. "focus on the financial figures"' });
  const model = z.string().min(1).openapi({
    description: "Catalog model; default: the cheapest active model (ties: the largest context window)",
    example: "glm-4-flash-250414",
  });
  return { language, style, instructions, model };
});

export const summarizeRequestSchema = once(() => {
  const { language, style, instructions, model } = fields();
  return z
    .strictObject({
      text: z
        .string()
        .openapi({ description: `The text to summarize, 1 to ${MAX_TEXT_CHARS.toLocaleString("en-US")} characters` }),
      model: model.optional(),
      style: style.optional(),
      language: language.optional(),
      max_tokens: z
        .number()
        .int()
        .min(1)
        .optional()
        .openapi({ description: "Upper bound on the summary's length (default by style)" }),
      instructions: instructions.optional(),
      stream: z.boolean().optional().openapi({ description: "Stream the summary as SSE chat-completion chunks" }),
    })
    .openapi("SummarizeRequest");
});

export type SummarizeRequest = z.infer<ReturnType<typeof summarizeRequestSchema>>;

/** What the summarize service accepts: the request without `stream`; not strict, since a caller inside the gateway
 * (async jobs) may hand over a wider object. */
export const summarizeInputSchema = once(() => z.object(summarizeRequestSchema().shape).omit({ stream: true }));

/** Options for a text/plain (or text/markdown) body, as query parameters. */
export const summarizeQuerySchema = once(() => {
  const { language, style, instructions, model } = fields();
  return z.object({
    model: model.optional(),
    style: style.optional(),
    language: language.optional(),
    max_tokens: z
      .string()
      .regex(/^[1-9]\d{0,6}$/, "expected a positive whole number")
      .transform(Number)
      .optional()
      .openapi({ type: "integer", description: "Upper bound on the summary's length" }),
    instructions: instructions.optional(),
    stream: z
      .enum(["true", "false", "1", "0"])
      .transform((v) => v === "true" || v === "1")
      .optional()
      .openapi({ type: "boolean", description: "Stream the summary as SSE" }),
  });
});

export const summarySchema = once(() =>
  z
    .object({
      id: z.string().openapi({ example: "sum_3f7c0c4e9b2a4d6f8e1a2b3c4d5e6f70" }),
      object: z.literal("summary"),
      model: z.string(),
      summary: z.string(),
      usage: z
        .object({ prompt_tokens: z.number(), completion_tokens: z.number(), total_tokens: z.number() })
        .openapi({ description: "Summed over every upstream call the summary took" }),
      cost_cny: z
        .number()
        .openapi({ description: "Cost of all upstream calls in CNY, at the prices when the request started" }),
      chunks: z.number().int().openapi({ description: "Pieces the text was summarized in (1 = a single pass)" }),
      truncated: z
        .boolean()
        .openapi({ description: "true when the summary was cut by max_tokens (it ends where the limit was reached)" }),
    })
    .openapi("Summary"),
);
