// Benchmark of POST /v1/summarize: the wall time to summarize a generated 1,000,000-character text
// (streamed, to the last byte) against its critical path — the slowest piece plus the combine steps, as
// the simulator timed them — with a realistic per-token delay and time to first token on the simulator.
// A ratio near 1 means the gateway adds little beyond the upstream work that cannot run in parallel; each
// extra wave of pieces (more pieces than parallel calls) adds about one piece's time.
//
//   node bench/summarize.ts [--chars N] [--language zh|en|both] [--runs N]   (starts its own simulator and gateway)
//
// benchSummarize() is also called by `npm run bench` against an already running pair.
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

export interface BenchSummarizeOptions {
  gatewayUrl: string;
  key: string;
  simUrl: string;
  chars?: number;
  language?: "zh" | "en";
  /** Simulator pacing: about 65 tokens/s and a prefill of a long piece, as GLM-4-Flash shows. */
  tokenDelayMs?: number;
  ttftMs?: number;
  /** Runs to make; the result is the run with the median wall time (the machine may be busy). */
  runs?: number;
}

export interface BenchSummarizeResult {
  chars: number;
  pieces: number;
  wallMs: number;
  criticalPathMs: number;
  ratio: number;
}

interface SimRequest {
  seq: number;
  stream: boolean;
  request_id: string | null;
  ended: string | null;
  status: number;
  completion_tokens: number;
  last_user_excerpt: string;
}

const EN_WORDS = [
  "gateway",
  "model",
  "request",
  "stream",
  "token",
  "limit",
  "edge",
  "worker",
  "summary",
  "context",
  "piece",
  "usage",
  "budget",
  "latency",
  "answer",
  "upstream",
];
const ZH_WORDS = [
  "网关",
  "模型",
  "请求",
  "流式",
  "令牌",
  "上限",
  "边缘",
  "摘要",
  "上下文",
  "用量",
  "预算",
  "延迟",
  "回答",
  "上游",
  "数据",
  "智能",
];

/** A deterministic text of exactly `chars` characters: sentences of 8–20 words in paragraphs of 4–9 sentences. */
export function generateText(chars: number, language: "zh" | "en"): string {
  let seed = 0x2545f491;
  const rand = (n: number) => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed % n;
  };
  const words = language === "zh" ? ZH_WORDS : EN_WORDS;
  const parts: string[] = [];
  let length = 0;
  let sentence = 0;
  while (length < chars) {
    const n = 8 + rand(13);
    const picked = Array.from({ length: n }, () => words[rand(words.length)]!);
    let s = language === "zh" ? `${picked.join("")}${["。", "！", "？", "；"][rand(4)]}` : `${picked.join(" ")}.`;
    if (language === "en") s = s[0]!.toUpperCase() + s.slice(1);
    const sep = ++sentence % (4 + rand(6)) === 0 ? "\n\n" : language === "zh" ? "" : " ";
    parts.push(s + sep);
    length += s.length + sep.length;
  }
  return parts.join("").slice(0, chars);
}

async function simPost(simUrl: string, path: string, body?: unknown): Promise<void> {
  const res = await fetch(`${simUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Error(`simulator ${path}: ${res.status} ${await res.text()}`);
}

/**
 * The critical path from the simulator's own pacing: a sync answer takes ttft + (tokens − 1) × delay, a
 * streamed one ttft + tokens × delay. Map calls run in parallel (the slowest counts); merges of the same
 * level run in parallel (single-part labels, then multi-part ones); the final step (the last call) follows.
 */
function criticalPath(calls: SimRequest[], ttft: number, delay: number): number {
  const took = (r: SimRequest) =>
    ttft + (r.stream ? r.completion_tokens : Math.max(0, r.completion_tokens - 1)) * delay;
  const done = calls.filter((r) => r.ended === "completed").sort((a, b) => a.seq - b.seq);
  const final = done.at(-1);
  if (!final) return 0;
  const rest = done.slice(0, -1);
  const isMerge = (r: SimRequest) => /^<document>\n(\[Parts? |【第)/.test(r.last_user_excerpt);
  const multi = (r: SimRequest) => /^<document>\n(\[Parts |【第 \d+–)/.test(r.last_user_excerpt);
  const slowest = (rs: SimRequest[]) => rs.reduce((m, r) => Math.max(m, took(r)), 0);
  const maps = rest.filter((r) => !isMerge(r));
  const merges = rest.filter(isMerge);
  return slowest(maps) + slowest(merges.filter((r) => !multi(r))) + slowest(merges.filter(multi)) + took(final);
}

export async function benchSummarize(opts: BenchSummarizeOptions): Promise<BenchSummarizeResult> {
  const results: BenchSummarizeResult[] = [];
  for (let i = 0; i < Math.max(1, opts.runs ?? 1); i++) results.push(await runOnce(opts, i === 0));
  results.sort((a, b) => a.wallMs - b.wallMs);
  return results[Math.floor((results.length - 1) / 2)]!;
}

async function runOnce(opts: BenchSummarizeOptions, warmUp: boolean): Promise<BenchSummarizeResult> {
  const chars = opts.chars ?? 1_000_000;
  const language = opts.language ?? "zh";
  const tokenDelayMs = opts.tokenDelayMs ?? 15;
  const ttftMs = opts.ttftMs ?? 800;
  const text = generateText(chars, language);
  // Warm-up: the first request of a fresh gateway also pays for module compilation, Durable Object
  // creation and the catalog's first read, which is not what this benchmark measures.
  if (warmUp) {
    await simPost(opts.simUrl, "/_sim/reset");
    const warm = await fetch(`${opts.gatewayUrl}/v1/summarize`, {
      method: "POST",
      headers: { authorization: `Bearer ${opts.key}`, "content-type": "application/json" },
      body: JSON.stringify({ text: text.slice(0, 20_000) }),
    });
    if (warm.status !== 200)
      throw new Error(`warm-up summarize answered ${warm.status}: ${(await warm.text()).slice(0, 300)}`);
  }
  await simPost(opts.simUrl, "/_sim/reset");
  await simPost(opts.simUrl, "/_sim/config", { tokenDelayMs, ttftMs });
  const rid = `bench-summarize-${Date.now().toString(36)}`;
  try {
    const started = performance.now();
    const res = await fetch(`${opts.gatewayUrl}/v1/summarize`, {
      method: "POST",
      headers: { authorization: `Bearer ${opts.key}`, "content-type": "application/json", "x-request-id": rid },
      body: JSON.stringify({ text, stream: true }),
      signal: AbortSignal.timeout(600_000),
    });
    if (res.status !== 200) throw new Error(`summarize answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    const body = await res.text();
    const wallMs = performance.now() - started;
    const events = body
      .split("\n\n")
      .filter((e) => e.startsWith("data: "))
      .map((e) => e.slice(6));
    if (events.at(-1) !== "[DONE]") throw new Error(`the stream did not complete: ${events.at(-1)?.slice(0, 300)}`);
    const closing = JSON.parse(events.at(-2)!) as { chunks?: number };
    const log = (await (await fetch(`${opts.simUrl}/_sim/requests?limit=1000`)).json()) as SimRequest[];
    const calls = log.filter((r) => r.request_id?.startsWith(`${rid}-`));
    const criticalPathMs = criticalPath(calls, ttftMs, tokenDelayMs);
    return {
      chars,
      pieces: closing.chunks ?? 0,
      wallMs: Math.round(wallMs),
      criticalPathMs,
      ratio: Math.round((wallMs / criticalPathMs) * 100) / 100,
    };
  } finally {
    await simPost(opts.simUrl, "/_sim/config", { tokenDelayMs: null, ttftMs: null });
  }
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { startE2E } = await import("../test-support/harness.ts");
  const chars = Number(arg("chars") ?? 1_000_000);
  const runs = Number(arg("runs") ?? 3);
  const which = arg("language") ?? "both";
  const languages: ("zh" | "en")[] = which === "both" ? ["zh", "en"] : [which as "zh" | "en"];
  const e2e = await startE2E();
  try {
    const { key } = await e2e.createKey({ tier: "V0" });
    for (const language of languages) {
      const r = await benchSummarize({ gatewayUrl: e2e.url, key, simUrl: e2e.sim.url, chars, language, runs });
      console.log(
        `summarize ${language} ${r.chars.toLocaleString("en-US")} chars: ${r.pieces} pieces, wall ${r.wallMs} ms, ` +
          `critical path ${r.criticalPathMs} ms, ratio ${r.ratio} (median of ${runs})`,
      );
    }
  } finally {
    await e2e.close();
  }
}
