// The chat request as GLM defines it (docs.bigmodel.cn, the chat completions request body). Unknown fields pass through
// untouched, so newer upstream options keep working. Model-dependent rules (known model, max_tokens within
// the model's output limit) need the catalog and are checked in src/catalog/rules.ts. Each schema is built on first use
// (see src/lazy.ts).
import * as z from "../shared/zod.ts";
import { once } from "../lazy.ts";
import { REQUEST_ID_RE } from "../request-id.ts";

export const chatRequestSchema = once(() => {
  const ToolCall = z.looseObject({
    id: z.string().optional(),
    type: z.string().optional(),
    function: z.looseObject({ name: z.string(), arguments: z.string() }),
  });

  const Content = z.union([z.string(), z.array(z.looseObject({ type: z.string() })), z.null()]);

  const message = z
    .looseObject({
      role: z.enum(["system", "user", "assistant", "tool"]),
      content: Content.optional(),
      tool_calls: z.array(ToolCall).optional(),
      tool_call_id: z.string().optional(),
    })
    .superRefine((m, ctx) => {
      const hasContent = typeof m.content === "string" || Array.isArray(m.content);
      if (m.role === "assistant" && !hasContent && !(m.tool_calls && m.tool_calls.length > 0)) {
        ctx.addIssue({
          code: "custom",
          message: "an assistant message needs content or tool_calls",
          path: ["content"],
        });
      } else if (m.role !== "assistant" && !hasContent) {
        ctx.addIssue({ code: "custom", message: `a ${m.role} message needs content`, path: ["content"] });
      }
      if (m.role === "tool" && !m.tool_call_id) {
        ctx.addIssue({ code: "custom", message: "a tool message needs tool_call_id", path: ["tool_call_id"] });
      }
    })
    .openapi("ChatMessage");

  const FunctionTool = z.looseObject({
    type: z.literal("function"),
    function: z.looseObject({
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "function names are 1-64 of a-z A-Z 0-9 _ -"),
      description: z.string().optional(),
      parameters: z.record(z.string(), z.unknown()).optional(),
    }),
  });
  const WebSearchTool = z.looseObject({ type: z.literal("web_search"), web_search: z.looseObject({}).optional() });
  const RetrievalTool = z.looseObject({
    type: z.literal("retrieval"),
    retrieval: z.looseObject({ knowledge_id: z.string() }),
  });

  const unit = z.number().min(0).max(1);

  return z
    .looseObject({
      model: z.string().min(1).openapi({ example: "glm-4-flash-250414" }),
      messages: z
        .array(message)
        .min(1)
        .refine((ms) => ms.some((m) => m.role === "user" || m.role === "tool"), {
          message: "at least one message must be a user (or tool) message",
        }),
      stream: z.boolean().optional(),
      temperature: unit.optional(),
      top_p: unit.optional(),
      do_sample: z.boolean().optional(),
      max_tokens: z.number().int().min(1).optional(),
      stop: z.union([z.string(), z.array(z.string()).max(1, "GLM accepts at most one stop word")]).optional(),
      tools: z
        .array(z.discriminatedUnion("type", [FunctionTool, WebSearchTool, RetrievalTool]))
        .max(128)
        .optional(),
      tool_choice: z.literal("auto").optional(),
      response_format: z.looseObject({ type: z.enum(["text", "json_object"]) }).optional(),
      // Sent back as the x-request-id header: it must be a valid header value.
      request_id: z.string().regex(REQUEST_ID_RE, "must be 1 to 128 printable ASCII characters").optional(),
      user_id: z.string().min(6).max(128).optional(),
    })
    .openapi("ChatCompletionRequest");
});

export type ChatRequest = z.infer<ReturnType<typeof chatRequestSchema>>;

export const usageSchema = once(() =>
  z.object({ prompt_tokens: z.number(), completion_tokens: z.number(), total_tokens: z.number() }).openapi("Usage"),
);

export const chatResponseSchema = once(() =>
  z
    .looseObject({
      id: z.string(),
      created: z.number(),
      model: z.string(),
      request_id: z.string().optional(),
      choices: z.array(
        z.looseObject({
          index: z.number(),
          finish_reason: z.string(),
          message: z.looseObject({ role: z.literal("assistant"), content: z.string().nullable() }),
        }),
      ),
      usage: usageSchema(),
    })
    .openapi("ChatCompletion"),
);
