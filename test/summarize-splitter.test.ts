// Unit tests for the summarize splitter, planner and language detection: pure functions, no upstream.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_CATALOG } from "../src/catalog/default.ts";
import { makeView } from "../src/catalog/store.ts";
import { estimateTokens } from "../src/usage/estimate.ts";
import { detectLanguage, resolveTarget } from "../src/summarize/language.ts";
import { budgets, defaultModel, groupPartials, pieceCount } from "../src/summarize/planner.ts";
import { documentBlock } from "../src/summarize/prompts.ts";
import { splitAgain, splitText } from "../src/summarize/splitter.ts";

const EN = [
  "The gateway holds the upstream key and streams answers straight through.",
  "It enforces per-tier in-flight limits with Durable Objects!",
  "Why does this matter for long documents?",
  "Costs are recorded per request; budgets are checked before each call.",
  "Dr. Smith measured 3.14 seconds at example.com, which was fast.",
  '"Quoted sentences end here."',
];
const ZH = [
  "网关持有上游密钥，并把模型的回答直接流式转发给客户端。",
  "它用持久对象执行每个等级的在途请求上限！",
  "为什么这对长文档很重要？",
  "每个请求都会记录费用；每次调用前都会检查预算。",
  "他说：“这段引文到这里结束。”",
  "模型的上下文窗口有限……",
];

/** Offsets in `text` where each (trimmed) piece starts and ends, found in order. */
function locate(text: string, pieces: string[]): [number, number][] {
  let from = 0;
  return pieces.map((p) => {
    const at = text.indexOf(p, from);
    expect(at).toBeGreaterThanOrEqual(from);
    from = at + p.length;
    return [at, at + p.length];
  });
}

/** The text, and every offset where a cut is allowed: sentence ends, and semicolons (clause ends count too). */
function build(sentences: string[], joiner: (i: number) => string): { text: string; ends: Set<number> } {
  let text = "";
  const ends = new Set<number>();
  sentences.forEach((s, i) => {
    for (const m of s.matchAll(/[;；]/g)) ends.add(text.length + m.index + 1);
    text += s;
    ends.add(text.length);
    if (i < sentences.length - 1) text += joiner(i);
  });
  return { text, ends };
}

const squash = (s: string) => s.replace(/\s+/g, "");

describe("splitter", () => {
  it("cuts English text only at sentence ends, in order, under the budget", () => {
    const sentences = Array.from({ length: 400 }, (_, i) => EN[i % EN.length]!);
    const { text, ends } = build(sentences, (i) => (i % 7 === 6 ? "\n\n" : " "));
    const pieces = splitText(text, { maxTokens: 600 }).map((p) => p.text);
    expect(pieces.length).toBeGreaterThan(3);
    for (const [, end] of locate(text, pieces)) expect(ends.has(end)).toBe(true);
    for (const p of pieces) expect(estimateTokens(p)).toBeLessThanOrEqual(600);
    expect(squash(pieces.join(""))).toBe(squash(text));
  });

  it("cuts Chinese text (no spaces) only after 。！？；… and closing quotes", () => {
    const sentences = Array.from({ length: 500 }, (_, i) => ZH[i % ZH.length]!);
    const { text, ends } = build(sentences, (i) => (i % 9 === 8 ? "\n\n" : ""));
    const pieces = splitText(text, { maxTokens: 500 }).map((p) => p.text);
    expect(pieces.length).toBeGreaterThan(5);
    for (const [, end] of locate(text, pieces)) expect(ends.has(end)).toBe(true);
    for (const p of pieces) {
      expect(estimateTokens(p)).toBeLessThanOrEqual(500);
      expect(p).toMatch(/[。！？；…”]$/);
    }
    expect(squash(pieces.join(""))).toBe(squash(text));
  });

  it("prefers paragraph breaks near the target size, and keeps pieces balanced", () => {
    // 12 paragraphs of 10 sentences; 4 pieces of 3 paragraphs each is the natural split.
    const para = Array.from({ length: 10 }, (_, i) => EN[i % EN.length]).join(" ");
    const text = Array.from({ length: 12 }, () => para).join("\n\n");
    const total = estimateTokens(text);
    const pieces = splitText(text, { maxTokens: Math.ceil(total / 3.2), count: 4 }).map((p) => p.text);
    expect(pieces).toHaveLength(4);
    for (const p of pieces) expect(p.split("\n\n")).toHaveLength(3);
  });

  it("balances piece sizes (largest within 1.6x of the smallest)", () => {
    const sentences = Array.from({ length: 999 }, (_, i) => (i % 2 ? EN : ZH)[(i * 7) % 6]!);
    const { text } = build(sentences, (i) => (i % 13 === 0 ? "\n" : " "));
    const sizes = splitText(text, { maxTokens: 2_000 }).map((p) => estimateTokens(p.text));
    expect(Math.max(...sizes) / Math.min(...sizes)).toBeLessThan(1.6);
  });

  it("hard-cuts only a sentence longer than a piece, never inside a surrogate pair", () => {
    const sentence = "😀漢字abc ".repeat(3_000); // one sentence, no end punctuation at all
    const text = `${EN[0]} ${sentence}. ${EN[1]}`;
    const pieces = splitText(text, { maxTokens: 800 }).map((p) => p.text);
    expect(pieces.length).toBeGreaterThan(5);
    for (const p of pieces) {
      expect(estimateTokens(p)).toBeLessThanOrEqual(800);
      expect(p).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
    }
    // The short sentence before the long one is not glued to a cut: the first piece ends at its end.
    expect(pieces[0]).toBe(EN[0]);
    expect(squash(pieces.join(""))).toBe(squash(text));
  });

  it("does not cut after abbreviations, initials, decimals or domain names", () => {
    const tricky =
      "Dr. Smith and J. Doe met Mr. Li at 3.14 p.m. near example.com, e.g. the U.S. office, said Prof. Chen of Acme Inc. and friends.";
    const text = Array.from({ length: 60 }, () => tricky).join(" ");
    const pieces = splitText(text, { maxTokens: 120 }).map((p) => p.text);
    expect(pieces.length).toBeGreaterThan(5);
    for (const p of pieces) {
      expect(p.startsWith("Dr. Smith")).toBe(true);
      expect(p.endsWith("and friends.")).toBe(true);
    }
  });

  it("splits a piece again in two at a sentence boundary", () => {
    const text = ZH.join("") + EN.join(" ");
    const halves = splitAgain({ text, tokens: estimateTokens(text) }).map((p) => p.text);
    expect(halves).toHaveLength(2);
    expect(squash(halves.join(""))).toBe(squash(text));
    expect(halves[0]).toMatch(/[。！？；…”.!?;"]$/);
  });

  it("property: any mix of sentences splits in order, within budget, at sentence ends", () => {
    const sentence = fc.oneof(
      fc.constantFrom(...EN, ...ZH),
      fc.constantFrom("Short one.", "短句。", "Ends with a question?"),
    );
    fc.assert(
      fc.property(
        fc.array(sentence, { minLength: 1, maxLength: 300 }),
        fc.array(fc.constantFrom(" ", "\n", "\n\n", ""), { minLength: 300, maxLength: 300 }),
        fc.integer({ min: 64, max: 1_500 }),
        (sentences, joins, maxTokens) => {
          // Latin sentences are followed by whitespace, as in real text ("end.Next" is one word to the splitter).
          const { text, ends } = build(sentences, (i) =>
            joins[i] === "" && /[.!?"]$/.test(sentences[i]!) ? " " : joins[i]!,
          );
          const pieces = splitText(text, { maxTokens }).map((p) => p.text);
          for (const p of pieces) expect(estimateTokens(p)).toBeLessThanOrEqual(maxTokens);
          for (const [, end] of locate(text, pieces)) expect(ends.has(end)).toBe(true);
          expect(squash(pieces.join(""))).toBe(squash(text));
        },
      ),
      { numRuns: 300, seed: 20_261_125 }, // fixed: the suite must be deterministic
    );
  });

  it("neutralises document delimiters inside the text", () => {
    expect(documentBlock("a\n</document>\nb")).toBe("<document>\na\n[/document]\nb\n</document>");
  });
});

describe("planner", () => {
  const view = makeView(DEFAULT_CATALOG, "default");

  it("defaults to the cheapest active model, ties broken by the larger context", () => {
    expect(defaultModel(view).id).toBe("glm-4-flash-250414");
    const paid = { ...DEFAULT_CATALOG, models: DEFAULT_CATALOG.models.filter((m) => m.id !== "glm-4-flash-250414") };
    expect(defaultModel(makeView(paid, "default")).id).toBe("glm-4-flashx-250414");
  });

  it("uses as few waves as the context allows, with smaller pieces inside them", () => {
    expect(pieceCount(286_000, 115_000, 6)).toBe(6); // 3 needed, one wave of 6 → 6 pieces of ~48K
    expect(pieceCount(750_000, 115_000, 6)).toBe(12); // 7 needed → two waves → 12 pieces
    expect(pieceCount(750_000, 115_000, 2)).toBe(8); // 2 free slots: 7 needed → 4 waves of 2
    expect(pieceCount(150_000, 115_000, 1)).toBe(2);
  });

  it("keeps room for the output and the prompt inside the context", () => {
    const flash = view.byId.get("glm-4-flash-250414")!;
    const b = budgets(flash, { target: resolveTarget("auto", "hello"), style: "paragraph" }, undefined);
    expect(b.finalOut).toBe(1_024);
    expect(b.single).toBeLessThan((128_000 - 1_024) / 1.1);
    expect(b.single).toBeGreaterThan(110_000);
    expect(b.piece).toBeGreaterThanOrEqual(b.single - 300);
  });

  it("refuses a max_tokens that leaves no room for the text", () => {
    const small = { ...view.byId.get("glm-4-airx")!, context_window: 6_000 };
    expect(() => budgets(small, { target: resolveTarget("en", ""), style: "paragraph" }, 4_096)).toThrow(/max_tokens/);
    expect(() =>
      budgets({ ...small, context_window: 400 }, { target: resolveTarget("en", ""), style: "paragraph" }, undefined),
    ).toThrow(/too small/);
  });

  it("groups partial summaries in order, each group within budget", () => {
    const partials = Array.from({ length: 10 }, (_, i) => ({ text: `p${i}`, from: i + 1, to: i + 1 }));
    const groups = groupPartials(
      partials,
      partials.map(() => 100),
      350,
    );
    expect(groups.flat().map((p) => p.text)).toEqual(partials.map((p) => p.text));
    for (const g of groups) expect(g.length * 100).toBeLessThanOrEqual(350);
    expect(groups.length).toBeLessThan(partials.length);
  });
});

describe("language", () => {
  it("detects Chinese, Japanese, Korean and English; leaves other Latin languages unnamed", () => {
    expect(detectLanguage(ZH.join("") + " GLM-4 API")).toBe("zh");
    expect(
      detectLanguage(
        "これは日本語の文章です。東京は大きい都市です。ひらがなとカタカナ、漢字を使います。これは日本語の文章です。",
      ),
    ).toBe("ja");
    expect(detectLanguage("이것은 한국어 문장입니다. 서울은 큰 도시입니다.")).toBe("ko");
    expect(detectLanguage(EN.join(" "))).toBe("en");
    expect(detectLanguage("Le chat dort sur le canapé pendant que les enfants jouent dehors.")).toBeNull();
  });

  it("resolves explicit tags to names, and Chinese targets to Chinese prompts", () => {
    expect(resolveTarget("zh-TW", "hello")).toMatchObject({ chinese: true, traditional: true, auto: false });
    expect(resolveTarget("fr", ZH.join(""))).toMatchObject({ english: "French", chinese: false });
    expect(resolveTarget("auto", ZH.join(""))).toMatchObject({ code: "zh", chinese: true, auto: true });
  });
});
