// Decides WHAT a chat request answers — text, a digest of a <document>, or a tool call — before any
// byte is sent, so the sync, SSE and async paths all serve exactly the same answer and usage.

import type { Controls } from "./controls.ts";
import {
  jsonText,
  digestAnswer,
  findDocument,
  fnv1a,
  lastUserText,
  numericId,
  prng,
  randomTokens,
  simDigest,
  simPromptTokens,
  simTokenCount,
  splitTokens,
  toolArguments,
  webSearchResults,
  type WebResult,
} from "./text.ts";

export type ChatBody = {
  model: string;
  messages: { role?: unknown; content?: unknown; tool_calls?: unknown }[];
  max_tokens?: number;
  request_id?: string;
  tools?: unknown[];
};

export type ToolCall = {
  id: string;
  type: "function";
  index: number;
  function: { name: string; arguments: string };
};

export type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

export type Plan = {
  id: string;
  created: number;
  model: string;
  request_id: string;
  tokens: string[]; // content tokens, one per SSE chunk; empty for a tool call
  toolCalls?: ToolCall[];
  finish: string;
  webSearch?: WebResult[];
  usage: Usage;
  documentDigest?: string;
};

type FunctionTool = { type: "function"; function: { name: string; parameters?: Parameters<typeof toolArguments>[0] } };
type WebSearchTool = { type: "web_search"; web_search?: { enable?: unknown; search_query?: unknown } };

function functionTools(tools: unknown[] | undefined): FunctionTool[] {
  return (tools ?? []).filter(
    (t): t is FunctionTool =>
      (t as FunctionTool)?.type === "function" && typeof (t as FunctionTool).function?.name === "string",
  );
}

function webSearchTool(tools: unknown[] | undefined): WebSearchTool | undefined {
  const t = (tools ?? []).find((t) => (t as WebSearchTool)?.type === "web_search") as WebSearchTool | undefined;
  const enable = t?.web_search?.enable;
  return enable === true || String(enable).toLowerCase() === "true" ? t : undefined;
}

export function buildPlan(body: ChatBody, c: Controls, seq: number, defaultTokens: number): Plan {
  const messagesKey = jsonText(body.messages);
  const seed = fnv1a(messagesKey);
  const rand = prng(seed ^ 0x9e3779b9); // a separate stream from the words, for tool arguments
  const id = numericId(`${seq}:${messagesKey}`);
  const lastUser = lastUserText(body.messages);
  const prompt = simPromptTokens(body.messages);
  const plan: Plan = {
    id,
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    request_id: body.request_id ?? id,
    tokens: [],
    finish: "stop",
    usage: { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt },
  };

  const search = webSearchTool(body.tools);
  if (search) {
    const q = search.web_search?.search_query;
    plan.webSearch = webSearchResults(typeof q === "string" && q ? q : lastUser);
  }
  const doc = findDocument(lastUser);
  if (doc !== undefined) plan.documentDigest = simDigest(doc);

  const functions = functionTools(body.tools);
  let completion: number;
  if (c.tool && functions.length > 0) {
    // tool=NAME may name a function the request did not declare: the test asked for it, so call it.
    const name = c.tool === true ? functions[0]!.function.name : c.tool;
    const params = functions.find((f) => f.function.name === name)?.function.parameters;
    const args = JSON.stringify(toolArguments(params, rand));
    plan.toolCalls = [
      { id: `call_${numericId(`tool:${id}`)}`, type: "function", index: 0, function: { name, arguments: args } },
    ];
    plan.finish = "tool_calls";
    completion = Math.max(1, simTokenCount(name + args));
  } else {
    plan.tokens = doc !== undefined ? splitTokens(digestAnswer(doc)) : randomTokens(seed, c.tokens ?? defaultTokens);
    if (body.max_tokens !== undefined && plan.tokens.length > body.max_tokens) {
      plan.tokens = plan.tokens.slice(0, body.max_tokens);
      plan.finish = "length";
    }
    if (c.finish) plan.finish = c.finish;
    completion = plan.tokens.length;
  }
  plan.usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  return plan;
}

export type ChatRequest = ChatBody & { stream?: boolean };
export type Invalid = { code: string; message: string };

const OPTIONAL = ["stream", "max_tokens", "temperature", "top_p", "request_id", "tools"];

/** Parse and check a chat body like the upstream: 1210 for a broken body, 1214 naming the bad field. */
export function validateChat(text: string, en: boolean): ChatRequest | Invalid {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) {
    const message = en
      ? "Invalid request body: expected a JSON object"
      : "请求体 body 不是合法的 JSON 对象，请检查文档。";
    return { code: "1210", message };
  }
  const b = json as Record<string, unknown>;
  const bad = (field: string): Invalid => ({
    code: "1214",
    message: en ? `Invalid parameter: ${field}` : `参数 ${field} 非法，请检查文档。`,
  });
  for (const f of OPTIONAL) if (b[f] === null) delete b[f]; // some clients send null for "unset"
  if (typeof b.model !== "string" || b.model === "") return bad("model");
  const isMessage = (m: unknown) => typeof (m as { role?: unknown } | null)?.role === "string";
  if (!Array.isArray(b.messages) || b.messages.length === 0 || !b.messages.every(isMessage)) return bad("messages");
  if (b.stream !== undefined && typeof b.stream !== "boolean") return bad("stream");
  const positive = Number.isInteger(b.max_tokens) && (b.max_tokens as number) > 0;
  if (b.max_tokens !== undefined && !positive) return bad("max_tokens");
  for (const f of ["temperature", "top_p"]) {
    if (b[f] !== undefined && !(typeof b[f] === "number" && b[f] >= 0 && b[f] <= 1)) return bad(f);
  }
  if (b.request_id !== undefined && typeof b.request_id !== "string") return bad("request_id");
  if (b.tools !== undefined && !Array.isArray(b.tools)) return bad("tools");
  return b as ChatRequest;
}
