// Token estimator. There is no GLM tokenizer for JavaScript, so counts are estimated from characters:
// GLM-4's tokenizer averages about 1.6 CJK characters and about 4 Latin characters per token; we count
// 0.75 tokens per CJK character and one per 3.5 other characters, which over-estimates both by roughly
// 15–20 %, a safety margin for context-window decisions. Used where GLM did not report usage.

const CJK = /[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\uac00-\ud7af]/g;

export function estimateTokens(text: string): number {
  if (text.length === 0) return 0;
  const cjk = text.match(CJK)?.length ?? 0;
  const other = text.length - cjk;
  return Math.ceil(cjk * 0.75 + other / 3.5);
}

/** Prompt tokens of a chat request: every message's text plus a small per-message overhead. */
export function estimatePromptTokens(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let total = 0;
  for (const m of messages) {
    total += 4;
    if (m && typeof m === "object") {
      const content = (m as { content?: unknown }).content;
      if (typeof content === "string") total += estimateTokens(content);
      else if (content !== undefined && content !== null) total += estimateTokens(JSON.stringify(content));
      const calls = (m as { tool_calls?: unknown }).tool_calls;
      if (calls) total += estimateTokens(JSON.stringify(calls));
    }
  }
  return total;
}
