// Deterministic text machinery for the GLM simulator: hashing, a seeded PRNG, the fake tokenizer,
// canned answer words, document digests, tool arguments and web-search results.
// Everything here is pure so the same request always yields the same bytes.

const utf8 = new TextEncoder();

/** 32-bit FNV-1a over the UTF-8 bytes of `text`. */
/**
 * JSON of a request part, or a stand-in when it cannot be serialised (nesting deeper than the stack):
 * GLM accepts such a body, so the simulator must not fail on it either.
 */
export function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value) ?? "";
  } catch {
    return "[unserialisable]";
  }
}

export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of utf8.encode(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

export const hex8 = (n: number): string => (n >>> 0).toString(16).padStart(8, "0");

/** mulberry32: tiny, fast and good enough to pick words and faults reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 19-digit decimal id shaped like the upstream's ("8313807536837492492"), derived from `key`. */
export function numericId(key: string): string {
  const hi = BigInt(fnv1a(key) & 0x7fffffff);
  const lo = BigInt(fnv1a(`${key}#`));
  return ((hi << 32n) | lo).toString().padStart(19, "1");
}

// Han characters plus CJK and full-width punctuation count as "CJK" for the fake tokenizer.
const CJK = /[\p{Script=Han}\u3000-\u303f\uff00-\uffef]/u;

/** Fake tokenizer: ceil(CJK chars × 0.7 + other chars / 4), in integer math to dodge float drift. */
export function simTokenCount(text: string): number {
  let cjk = 0;
  let other = 0;
  for (const ch of text) {
    if (CJK.test(ch)) cjk++;
    else other++;
  }
  return Math.ceil((cjk * 14 + other * 5) / 20);
}

type Message = { role?: unknown; content?: unknown; tool_calls?: unknown };

/** The text of one message: string content, the text parts of array content, and any tool_calls JSON. */
export function messageText(m: Message): string {
  let text = "";
  if (typeof m.content === "string") text = m.content;
  else if (Array.isArray(m.content)) {
    text = m.content.map((p) => (typeof p?.text === "string" ? p.text : "")).join("");
  }
  if (m.tool_calls !== undefined) text += jsonText(m.tool_calls);
  return text;
}

/** prompt_tokens: every message's simTokenCount plus 4 for its framing. */
export function simPromptTokens(messages: readonly Message[]): number {
  return messages.reduce((sum, m) => sum + simTokenCount(messageText(m)) + 4, 0);
}

export function lastUserText(messages: readonly Message[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]?.role === "user") return messageText(messages[i]!);
  }
  return "";
}

// Mixed Chinese and English so gateways see multi-byte UTF-8 split across chunks.
const WORDS = [
  "你好",
  "世界",
  "模型",
  "边缘",
  "网关",
  "数据",
  "智能",
  "流式",
  "测试",
  "我们",
  "今天",
  "问题",
  "，",
  "。",
  " the",
  " quick",
  " edge",
  " gateway",
  " model",
  " stream",
  " token",
  " cloud",
  " worker",
  " answer",
  " GLM",
  " is",
  " fast",
  " and",
];

/** `n` answer tokens picked by a PRNG seeded with `seed`. */
export function randomTokens(seed: number, n: number): string[] {
  const rand = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = WORDS[Math.floor(rand() * WORDS.length)]!;
    out.push(i === 0 ? w.trimStart() : w);
  }
  return out;
}

// A document is the text between a line "<document>" and a line "</document>" (first one wins).
const DOCUMENT = /(?:^|\n)<document>\n([\s\S]*?)\n?(?<=\n)<\/document>(?=\n|$)/;
const DIGEST = /⟦digest [0-9a-f]{8} len=\d+⟧/g;

export function findDocument(text: string): string | undefined {
  return DOCUMENT.exec(text)?.[1];
}

/** `⟦digest <FNV-1a hex> len=<doc.length>⟧` — len counts UTF-16 code units (JS string length). */
export function simDigest(doc: string): string {
  return `⟦digest ${hex8(fnv1a(doc))} len=${doc.length}⟧`;
}

/** The summary answer: the document's own digest, then every digest quoted inside it, in order. */
export function digestAnswer(doc: string): string {
  return [simDigest(doc), ...(doc.match(DIGEST) ?? [])].join(" ");
}

/** Split text into stream tokens at spaces, keeping the space on the following token. */
export function splitTokens(text: string): string[] {
  return text.split(/(?= )/).filter((t) => t !== "");
}

type Schema = { type?: unknown; enum?: unknown; properties?: Record<string, Schema> };

/** Plausible arguments for a function's JSON-schema parameters, picked reproducibly. */
export function toolArguments(parameters: Schema | undefined, rand: () => number): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(parameters?.properties ?? {})) {
    if (Array.isArray(s.enum) && s.enum.length > 0) args[name] = s.enum[0];
    else if (s.type === "number" || s.type === "integer") args[name] = 1 + Math.floor(rand() * 100);
    else if (s.type === "boolean") args[name] = true;
    else if (s.type === "array") args[name] = [];
    else if (s.type === "object") args[name] = {};
    else args[name] = WORDS[Math.floor(rand() * 12)]; // a Chinese word: exercises UTF-8 in JSON strings
  }
  return args;
}

export type WebResult = { icon: string; title: string; link: string; media: string; content: string };

export function webSearchResults(query: string): WebResult[] {
  const h = hex8(fnv1a(query));
  return [1, 2].map((i) => ({
    icon: "https://sim.invalid/favicon.ico",
    title: `模拟搜索结果 ${i}: ${query.slice(0, 40)}`,
    link: `https://sim.invalid/search/${h}/${i}`,
    media: "模拟媒体",
    content: `Simulated search result ${i} for query ${h}.`,
  }));
}
