// POST /v1/summarize against the simulator, which answers a <document> with its digest followed by every
// digest quoted inside it — so the final summary shows exactly which pieces reached the combining step,
// and in which order. Small context windows (catalog patches, or the simulator's contextTokens) force
// the long-text paths without megabytes of test text.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { Stream } from "openai/streaming";
import { APIError } from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import { DEFAULT_CATALOG } from "../src/catalog/default.ts";
import type { ModelEntry } from "../src/catalog/schema.ts";
import { resolveTarget } from "../src/summarize/language.ts";
import { budgets, pieceCount } from "../src/summarize/planner.ts";
import { packSegments, piecesOf, segmentText, splitAgain, totalTokens } from "../src/summarize/splitter.ts";
import type { Style } from "../src/summarize/schema.ts";
import { summarizeText } from "../src/summarize/service.ts";
import { chaosControls } from "../sim/controls.ts";
import { simDigest } from "../sim/text.ts";
import {
  admin,
  chat,
  chatBody,
  createKey,
  gw,
  simRequests,
  simReset,
  simStats,
  sseData,
  waitFor,
  type CreatedKey,
} from "./helpers.ts";

const SPLIT_MODEL = "glm-4-flashx-250414"; // patched to a 3,000-token context below
// Patched to 1,000 tokens: with max_tokens 200, ~50 one-digest partial summaries (each under a "[Part i of n]"
// label) overflow one merge, while two merged groups (no labels per piece) fit: two merge levels.
const DEEP_MODEL = "glm-4-air-250414";
const DIGEST = /⟦digest [0-9a-f]{8} len=\d+⟧/g;

interface Summary {
  id: string;
  object: string;
  model: string;
  summary: string;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  cost_cny: number;
  chunks: number;
}

interface Chunk {
  choices: { delta?: { content?: string }; finish_reason?: string }[];
  progress?: { done: number; total: number; stage: string };
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  cost_cny?: number;
  chunks?: number;
}

let k: CreatedKey;
beforeAll(async () => {
  k = await createKey({ tier: "V3" });
  for (const [id, context_window] of [
    [SPLIT_MODEL, 3_000],
    [DEEP_MODEL, 1_000],
  ] as const) {
    const res = await admin("PATCH", `/catalog/models/${id}`, { context_window });
    expect(res.status).toBe(200);
  }
});
beforeEach(() => simReset());
afterAll(async () => {
  // Leave the catalog and the shared simulator as other test files expect them.
  for (const id of [SPLIT_MODEL, DEEP_MODEL])
    await admin("PATCH", `/catalog/models/${id}`, { context_window: model(id).context_window });
  await simReset();
});

function summarize(key: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return gw("/v1/summarize", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Numbered sentences in paragraphs of five, so every piece's position is visible in its text. */
function english(n: number, extra = ""): string {
  const out: string[] = [];
  for (let i = 0; i < n; i += 5) {
    const para: string[] = [];
    for (let j = i; j < Math.min(n, i + 5); j++)
      para.push(`Sentence ${j} explains how the gateway handles request number ${j} with care${extra}.`);
    out.push(para.join(" "));
  }
  return out.join("\n\n");
}

function chinese(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i += 6) {
    let para = "";
    for (let j = i; j < Math.min(n, i + 6); j++) para += `第${j}句说明网关如何谨慎地处理第${j}个请求，并记录它的用量！`;
    out.push(para);
  }
  return out.join("\n\n");
}

function model(id: string, context_window?: number): ModelEntry {
  const m = DEFAULT_CATALOG.models.find((x) => x.id === id)!;
  return context_window ? { ...m, context_window } : m;
}

/** The pieces the gateway is expected to cut `text` into (same planner, parallelism 6). */
function plannedPieces(
  text: string,
  m: ModelEntry,
  opts: { style?: Style; maxTokens?: number; parallel?: number } = {},
): string[] {
  const b = budgets(m, { target: resolveTarget("auto", text), style: opts.style ?? "paragraph" }, opts.maxTokens);
  const segs = segmentText(text, b.piece);
  const total = totalTokens(segs);
  if (total <= b.single) return [text];
  return piecesOf(text, segs, packSegments(segs, b.piece, pieceCount(total, b.piece, opts.parallel ?? 6))).map(
    (p) => p.text,
  );
}

async function callsOf(rid: string, n: number): Promise<Record<string, unknown>[]> {
  const rows = await waitFor(
    () => simRequests(1000),
    (rs) => rs.filter((r) => String(r["request_id"]).startsWith(`${rid}-`) && r["ended"] !== null).length >= n,
  );
  return rows
    .filter((r) => String(r["request_id"]).startsWith(`${rid}-`))
    .sort((a, b) => Number(a["seq"]) - Number(b["seq"]));
}

const isCombine = (r: Record<string, unknown>) => /^<document>\n(\[Parts? |【第)/.test(String(r["last_user_excerpt"]));

async function inFlight(id: string): Promise<Record<string, number>> {
  return ((await (await admin("GET", `/keys/${id}`)).json()) as { in_flight: Record<string, number> }).in_flight;
}

async function usageTotals(
  key: string,
): Promise<{ requests: number; prompt_tokens: number; completion_tokens: number; cost_cny: number }> {
  const res = await gw("/v1/usage", { headers: { authorization: `Bearer ${key}` } });
  return (
    (await res.json()) as {
      totals: { requests: number; prompt_tokens: number; completion_tokens: number; cost_cny: number };
    }
  ).totals;
}

describe("single pass", () => {
  it("summarizes a text that fits the context in one call, with the default model", async () => {
    const text = english(40);
    const rid = `single-${crypto.randomUUID()}`;
    const res = await summarize(k.key, { text }, { "x-request-id": rid });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-summarize-chunks")).toBe("1");
    expect(res.headers.get("x-request-id")).toBe(rid);
    const body = (await res.json()) as Summary;
    expect(body).toMatchObject({ object: "summary", model: "glm-4-flash-250414", chunks: 1, summary: simDigest(text) });
    expect(body.id).toMatch(/^sum_[0-9a-f]{32}$/);
    const calls = await callsOf(rid, 1);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      request_id: `${rid}-1`,
      document_digest: simDigest(text),
      stream: true,
      status: 200,
    });
    expect(body.usage.prompt_tokens).toBe(calls[0]!["prompt_tokens"]);
  });

  it("prices the calls at the catalog price and records them in the key's usage", async () => {
    const key = await createKey({ tier: "V3" });
    const res = await summarize(key.key, { text: english(30), model: "glm-4-plus", style: "bullets" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Summary;
    // glm-4-plus: 5 CNY per million tokens, in and out.
    expect(body.cost_cny).toBeCloseTo((body.usage.total_tokens * 5) / 1e6, 9);
    expect(Number(res.headers.get("x-cost-cny"))).toBeCloseTo(body.cost_cny, 9);
    const totals = await waitFor(
      () => usageTotals(key.key),
      (t) => t.requests === 1,
    );
    expect(totals).toMatchObject({
      requests: 1,
      prompt_tokens: body.usage.prompt_tokens,
      completion_tokens: body.usage.completion_tokens,
    });
    expect(totals.cost_cny).toBeCloseTo(body.cost_cny, 9);
  });
});

describe("for the gateway's own work", () => {
  it("summarizes for an internal credential through summarizeText (the async jobs' entry point)", async () => {
    const text = english(30);
    const ctx = createExecutionContext();
    const result = await summarizeText(
      env,
      ctx,
      { kind: "internal", keyId: k.id },
      { text, style: "tldr" },
      { requestId: `job-${crypto.randomUUID()}` },
    );
    await waitOnExecutionContext(ctx);
    expect(result).toMatchObject({
      object: "summary",
      model: "glm-4-flash-250414",
      summary: simDigest(text),
      chunks: 1,
    });
    await expect(
      summarizeText(env, ctx, { kind: "internal", keyId: k.id }, { text: "" }, { requestId: "job-empty" }),
    ).rejects.toMatchObject({ status: 400 });
  });
});

describe("long texts: split, map, combine", () => {
  it.each([
    ["English", english(300)],
    ["Chinese", chinese(400)],
  ])("summarizes the pieces of a long %s text in parallel and combines them in order", async (_, text) => {
    const pieces = plannedPieces(text, model(SPLIT_MODEL, 3_000));
    expect(pieces.length).toBeGreaterThanOrEqual(4);
    await simReset({ tokenDelayMs: 20 }); // long enough for the pieces to overlap
    const key = await createKey({ tier: "V3" });
    const rid = `split-${crypto.randomUUID()}`;
    const res = await summarize(key.key, { text, model: SPLIT_MODEL }, { "x-request-id": rid });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Summary;
    expect(body.chunks).toBe(pieces.length);
    const calls = await callsOf(rid, pieces.length + 1);
    expect(calls).toHaveLength(pieces.length + 1);
    const maps = calls.filter((c) => !isCombine(c));
    const combines = calls.filter(isCombine);
    expect(maps).toHaveLength(pieces.length);
    expect(combines).toHaveLength(1);
    // Every piece was sent whole, and its digest reaches the final summary in the text's order.
    expect(new Set(maps.map((c) => c["document_digest"]))).toEqual(new Set(pieces.map(simDigest)));
    const digests = body.summary.match(DIGEST)!;
    expect(digests[0]).toBe(combines[0]!["document_digest"]);
    expect(digests.slice(1)).toEqual(pieces.map(simDigest));
    // The combine step starts only after the last piece.
    expect(Math.max(...calls.map((c) => Number(c["seq"])))).toBe(combines[0]!["seq"]);
    expect((await simStats()).by_model[SPLIT_MODEL]!.max_in_flight).toBeGreaterThan(1);
    // Usage is the sum over every call the simulator answered.
    const sim = await simStats();
    expect(body.usage).toEqual({
      prompt_tokens: sim.usage.prompt_tokens,
      completion_tokens: sim.usage.completion_tokens,
      total_tokens: sim.usage.prompt_tokens + sim.usage.completion_tokens,
    });
    // …and recorded like any request: one record per upstream call, priced at flashx's 0.1 CNY per million.
    const totals = await waitFor(
      () => usageTotals(key.key),
      (t) => t.requests === calls.length,
    );
    expect(totals).toMatchObject({
      requests: calls.length,
      prompt_tokens: sim.usage.prompt_tokens,
      completion_tokens: sim.usage.completion_tokens,
    });
    expect(totals.cost_cny).toBeCloseTo((body.usage.total_tokens * 0.1) / 1e6, 9);
    expect(body.cost_cny).toBeCloseTo(totals.cost_cny, 9);
  });

  it("merges in two levels when the partial summaries do not fit one merge", async () => {
    const text = english(1_000);
    const pieces = plannedPieces(text, model(DEEP_MODEL, 1_000), { maxTokens: 200 });
    const rid = `deep-${crypto.randomUUID()}`;
    // Streamed, so the merge progress is visible too.
    const res = await summarize(
      k.key,
      { text, model: DEEP_MODEL, max_tokens: 200, stream: true },
      { "x-request-id": rid },
    );
    expect(res.status).toBe(200);
    const events = sseData(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((d) => JSON.parse(d) as Chunk);
    const summary = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    expect(chunks.at(-1)!.chunks).toBe(pieces.length);
    const calls = await callsOf(rid, pieces.length + 2);
    const combines = calls.filter(isCombine);
    const finalDigest = combines.at(-1)!["document_digest"];
    const groups = combines.slice(0, -1);
    expect(groups.length).toBeGreaterThanOrEqual(2);
    expect(calls).toHaveLength(pieces.length + groups.length + 1);
    const merges = chunks.filter((c) => c.progress?.stage === "combine").map((c) => c.progress!);
    expect(merges.at(-1)).toEqual({ stage: "combine", done: groups.length, total: groups.length });
    // The final document holds the merged groups, which hold the pieces: all in order.
    const digests = summary.match(DIGEST)!;
    expect(digests[0]).toBe(finalDigest);
    expect(digests.filter((d) => groups.some((g) => g["document_digest"] === d))).toHaveLength(groups.length);
    expect(digests.filter((d) => !groups.some((g) => g["document_digest"] === d)).slice(1)).toEqual(
      pieces.map(simDigest),
    );
  });

  it("splits a piece again when the upstream answers 1261, and carries on", async () => {
    const text = english(160);
    await simReset({ contextTokens: 3_500 });
    const rid = `resplit-${crypto.randomUUID()}`;
    const res = await summarize(k.key, { text }, { "x-request-id": rid });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Summary;
    const halves = splitAgain({ text, tokens: totalTokens(segmentText(text, 100_000)) }).map((p) => p.text);
    expect(body.chunks).toBe(2);
    const calls = await callsOf(rid, 4);
    expect(calls.map((c) => c["status"])).toEqual([400, 200, 200, 200]);
    expect(body.summary.match(DIGEST)!.slice(1)).toEqual(halves.map(simDigest));
    // The refused call used nothing; the rest is recorded as the simulator reported it.
    const sim = await simStats();
    expect(body.usage.prompt_tokens).toBe(sim.usage.prompt_tokens);
  });

  it("keeps splitting while pieces are still too long, in order", async () => {
    const text = english(400);
    await simReset({ contextTokens: 2_400 });
    const res = await summarize(k.key, { text, max_tokens: 300 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Summary;
    expect(body.chunks).toBeGreaterThan(4);
    const rows = (await simRequests(1000)).filter((r) => r["status"] === 200 && !isCombine(r));
    const bySeq = new Map(rows.map((r) => [r["document_digest"], String(r["last_user_excerpt"])]));
    const firstSentence = (d: string) => Number(/Sentence (\d+)/.exec(bySeq.get(d) ?? "")?.[1] ?? NaN);
    const pieceDigests = body.summary.match(DIGEST)!.filter((d) => bySeq.has(d));
    expect(pieceDigests).toHaveLength(body.chunks);
    const starts = pieceDigests.map(firstSentence);
    expect(starts[0]).toBe(0);
    expect(starts).toEqual([...starts].sort((a, b) => a - b));
  });
});

describe("limits", () => {
  it("never has more calls in flight than the key's free slots", async () => {
    const key = await createKey({ tier: "V3", max_concurrency: 2 });
    await simReset({ tokenDelayMs: 20 });
    const text = english(300);
    const res = await summarize(key.key, { text, model: SPLIT_MODEL });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-concurrency-limit")).toBe("2");
    const body = (await res.json()) as Summary;
    expect(body.chunks).toBeGreaterThanOrEqual(4);
    expect((await simStats()).by_model[SPLIT_MODEL]!.max_in_flight).toBe(2);
    await waitFor(
      () => inFlight(key.id),
      (f) => Object.values(f).every((n) => n === 0),
    );
  });

  it("uses only the slots left by the caller's other requests", async () => {
    const key = await createKey({ tier: "V3", max_concurrency: 2 });
    await simReset({ tokenDelayMs: 20 });
    // One slot is taken by a streaming chat that stays open while the summary runs.
    const busy = await chat(
      key.key,
      chatBody("busy [[sim: tokens=400 delay=10]]", { model: SPLIT_MODEL, stream: true }),
    );
    expect(busy.status).toBe(200);
    const reader = busy.body!.getReader();
    const res = await summarize(key.key, { text: english(300), model: SPLIT_MODEL });
    expect(res.status).toBe(200);
    expect(((await res.json()) as Summary).chunks).toBeGreaterThanOrEqual(4);
    expect((await simStats()).by_model[SPLIT_MODEL]!.max_in_flight).toBe(2);
    await reader.cancel();
    await waitFor(
      () => inFlight(key.id),
      (f) => Object.values(f).every((n) => n === 0),
    );
  });

  it("answers 429 at admission when the key has no free slot", async () => {
    const key = await createKey({ tier: "V3", max_concurrency: 1 });
    const busy = await chat(key.key, chatBody("busy [[sim: tokens=400 delay=10]]", { stream: true }));
    const reader = busy.body!.getReader();
    const res = await summarize(key.key, { text: english(10) });
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("1302");
    await reader.cancel();
  });
});

describe("failures", () => {
  it("retries a transient upstream error once and succeeds", async () => {
    // A chaos seed whose first request fails (1305 or 500) and whose second succeeds.
    let seed = 0;
    while (!(
      chaosControls({ seed, errorRate: 0.5 }, 1, 20).error && !chaosControls({ seed, errorRate: 0.5 }, 2, 20).error
    ))
      seed++;
    await simReset({ chaos: { seed, errorRate: 0.5 } });
    const rid = `retry-${crypto.randomUUID()}`;
    const res = await summarize(k.key, { text: english(20) }, { "x-request-id": rid });
    expect(res.status).toBe(200);
    const calls = await callsOf(rid, 2);
    expect(calls.map((c) => c["ended"])).toEqual(["error", "completed"]);
  });

  it("fails clearly once the pipeline's attempts are spent, naming the step, without a second layer of retries", async () => {
    const rid = `fail-${crypto.randomUUID()}`;
    const res = await summarize(k.key, { text: `${english(20)} [[sim: error=1305]]` }, { "x-request-id": rid });
    expect(res.status).toBe(429);
    const err = ((await res.json()) as { error: { code: string; message: string } }).error;
    expect(err.code).toBe("1305");
    expect(err.message).toMatch(/summarizing the text failed after 3 attempts/);
    // UPSTREAM_MAX_ATTEMPTS (3) in the pipeline, and no retry of the summary's own on top.
    expect(await callsOf(rid, 3)).toHaveLength(3);
  });

  it("fails the whole summary when one piece fails twice, and frees every slot", async () => {
    const key = await createKey({ tier: "V3" });
    const text = english(150) + "\n\n" + english(150, " [[sim: error=500]]").split("\n\n")[20] + "\n\n" + english(150);
    const res = await summarize(key.key, { text, model: SPLIT_MODEL });
    expect(res.status).toBe(502);
    const err = ((await res.json()) as { error: { code: string; message: string } }).error;
    expect(err.code).toBe("500");
    expect(err.message).toMatch(/^summarizing piece \d+ of \d+ failed after 3 attempts/);
    const sim = await simStats();
    expect(sim.by_model[SPLIT_MODEL]!.total).toBeGreaterThanOrEqual(2);
    await waitFor(
      () => inFlight(key.id),
      (f) => Object.values(f).every((n) => n === 0),
    );
    expect(Object.values(await inFlight(key.id)).every((n) => n === 0)).toBe(true);
  });

  it.each([
    [
      "an in-band error mid-answer",
      "[[sim: error=500 error_after=1]]",
      /summarizing the text failed twice.*upstream error 500/,
    ],
    [
      "a connection that breaks mid-answer",
      "[[sim: break_after=1]]",
      /summarizing the text failed twice.*(broke|ended the answer)/,
    ],
  ])("retries %s once, then fails clearly", async (_, marker, message) => {
    const rid = `midway-${crypto.randomUUID()}`;
    const res = await summarize(k.key, { text: `${english(10)} ${marker}` }, { "x-request-id": rid });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    expect(await callsOf(rid, 2)).toHaveLength(2);
  });

  it("does not retry an error that is not transient", async () => {
    const rid = `fatal-${crypto.randomUUID()}`;
    const res = await summarize(k.key, { text: `${english(10)} [[sim: error=1301]]` }, { "x-request-id": rid });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("1301");
    expect(await callsOf(rid, 1)).toHaveLength(1);
  });
});

describe("limits said up front", () => {
  it("refuses with 413, naming the numbers, a plan that needs more upstream calls than one request may make", async () => {
    const text = english(300);
    const pieces = plannedPieces(text, model(SPLIT_MODEL, 3_000)).length;
    expect(pieces).toBeGreaterThan(2);
    const before = (await simStats()).total;
    const ask = async (vars: Partial<Env>, stream: boolean) => {
      const ctx = createExecutionContext();
      const res = await createApp().fetch(
        new Request("http://gw/v1/summarize", {
          method: "POST",
          headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
          body: JSON.stringify({ text, model: SPLIT_MODEL, stream }),
        }),
        { ...env, ...vars },
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return res;
    };
    for (const stream of [false, true]) {
      const res = await ask({ SUMMARIZE_MAX_UPSTREAM_CALLS: String(pieces) }, stream);
      expect(res.status).toBe(413);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe("1261");
      expect(error.message).toMatch(
        new RegExp(
          `needs about \\d+ upstream calls \\(${pieces} pieces and \\d+ merges?\\).*more than the ${pieces} one request may make`,
        ),
      );
    }
    // Nothing was sent upstream, and the admission slot was given back.
    expect((await simStats()).total).toBe(before);
    expect(Object.values(await inFlight(k.id)).every((n) => n === 0)).toBe(true);
    // With room for the plan it runs.
    expect((await ask({ SUMMARIZE_MAX_UPSTREAM_CALLS: String(pieces + 5) }, false)).status).toBe(200);
  });

  it("says when max_tokens cut the summary: truncated in the result and in the closing chunk", async () => {
    const text = english(40);
    const whole = (await (await summarize(k.key, { text })).json()) as Summary & { truncated: boolean };
    expect(whole.truncated).toBe(false);
    const cut = (await (await summarize(k.key, { text, max_tokens: 2 })).json()) as Summary & { truncated: boolean };
    expect(cut.truncated).toBe(true);
    const streamed = sseData(await (await summarize(k.key, { text, max_tokens: 2, stream: true })).text());
    expect(streamed.at(-1)).toBe("[DONE]");
    expect(JSON.parse(streamed.at(-2)!)).toMatchObject({ truncated: true, progress: { stage: "done" } });
    const full = sseData(await (await summarize(k.key, { text, stream: true })).text());
    expect(JSON.parse(full.at(-2)!)).toMatchObject({ truncated: false });
  });
});

describe("streaming", () => {
  it("streams a single pass as chat chunks that the openai SDK parser reads, closing with the totals", async () => {
    const text = english(30);
    const res = await summarize(k.key, { text, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream;charset=UTF-8");
    let content = "";
    const chunks: Chunk[] = [];
    for await (const chunk of Stream.fromSSEResponse<Chunk>(res, new AbortController())) {
      chunks.push(chunk);
      content += chunk.choices[0]?.delta?.content ?? "";
    }
    expect(content).toBe(simDigest(text));
    const closing = chunks.at(-1)!;
    expect(closing.choices).toEqual([]);
    expect(closing).toMatchObject({ chunks: 1, progress: { stage: "done", done: 1, total: 1 } });
    const sim = await simStats();
    expect(closing.usage).toEqual({
      prompt_tokens: sim.usage.prompt_tokens,
      completion_tokens: sim.usage.completion_tokens,
      total_tokens: sim.usage.prompt_tokens + sim.usage.completion_tokens,
    });
    expect(chunks.some((c) => c.progress && c.progress.stage !== "done")).toBe(false);
  });

  it("streams progress for a long text, then the combined summary, then [DONE]", async () => {
    const text = english(300);
    const pieces = plannedPieces(text, model(SPLIT_MODEL, 3_000));
    const res = await summarize(k.key, { text, model: SPLIT_MODEL, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-summarize-chunks")).toBe(String(pieces.length));
    // The same bytes through the openai SDK's parser (progress chunks included) and as raw events.
    const [forSdk, forRaw] = res.body!.tee();
    const viaSdk: Chunk[] = [];
    for await (const chunk of Stream.fromSSEResponse<Chunk>(new Response(forSdk), new AbortController()))
      viaSdk.push(chunk);
    const data = sseData(await new Response(forRaw).text());
    expect(viaSdk).toHaveLength(data.length - 1);
    expect(data.at(-1)).toBe("[DONE]");
    const events = data.slice(0, -1).map((d) => JSON.parse(d) as Chunk);
    const progress = events.filter((e) => e.progress).map((e) => e.progress!);
    const maps = progress.filter((p) => p.stage === "map");
    expect(maps.map((p) => p.done)).toEqual(Array.from({ length: pieces.length + 1 }, (_, i) => i));
    expect(maps.every((p) => p.total === pieces.length)).toBe(true);
    const finalAt = progress.findIndex((p) => p.stage === "final");
    expect(finalAt).toBe(progress.length - 2);
    expect(progress.at(-1)).toEqual({ stage: "done", done: pieces.length, total: pieces.length });
    // Every progress chunk comes before the first content chunk.
    const firstContent = events.findIndex((e) => e.choices[0]?.delta?.content);
    expect(events.findIndex((e) => e.progress?.stage === "final")).toBeLessThan(firstContent);
    const content = events.map((e) => e.choices[0]?.delta?.content ?? "").join("");
    expect(content.match(DIGEST)!.slice(1)).toEqual(pieces.map(simDigest));
  });

  it("ends with an in-band error and no [DONE] when a piece fails after the stream opened", async () => {
    const text = english(150) + "\n\n" + english(150, " [[sim: error=500]]").split("\n\n")[10] + "\n\n" + english(150);
    const res = await summarize(k.key, { text, model: SPLIT_MODEL, stream: true });
    expect(res.status).toBe(200);
    const err = await (async () => {
      try {
        for await (const _ of Stream.fromSSEResponse<Chunk>(res, new AbortController())) void _;
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).message).toMatch(/summarizing piece \d+ of \d+ failed after 3 attempts/);
  });

  it("stops every upstream call and frees every slot when the client goes away", async () => {
    const key = await createKey({ tier: "V3" });
    const text = english(400, " [[sim: hang]]");
    const running = Math.min(6, plannedPieces(text, model(SPLIT_MODEL, 3_000)).length);
    expect(running).toBe(6);
    const res = await summarize(key.key, { text, model: SPLIT_MODEL, stream: true });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(JSON.parse(sseData(first)[0]!)).toMatchObject({ choices: [], progress: { stage: "map", done: 0 } });
    await waitFor(simStats, (s) => s.in_flight >= running);
    await reader.cancel();
    const after = await waitFor(simStats, (s) => s.in_flight === 0);
    expect(after.in_flight).toBe(0);
    expect(after.cancelled).toBe(running);
    expect(after.total).toBe(running); // the pieces still waiting for a permit never started
    const flights = await waitFor(
      () => inFlight(key.id),
      (f) => Object.values(f).every((n) => n === 0),
    );
    expect(Object.values(flights).every((n) => n === 0)).toBe(true);
  });
});

describe("requests", () => {
  async function error(res: Response): Promise<{ status: number; code: string; message: string }> {
    const body = (await res.json()) as { error: { code: string; message: string } };
    return { status: res.status, ...body.error };
  }

  it("rejects empty and whitespace-only text with 400", async () => {
    expect(await error(await summarize(k.key, { text: "" }))).toMatchObject({ status: 400, code: "1214" });
    expect(await error(await summarize(k.key, { text: " \n\t " }))).toMatchObject({ status: 400, code: "1214" });
    expect(await error(await summarize(k.key, {}))).toMatchObject({
      status: 400,
      code: "1213",
      message: "missing required field: text",
    });
  });

  it("rejects text over 2,000,000 characters with 413", async () => {
    const res = await summarize(k.key, { text: "a".repeat(2_000_001) });
    expect(await error(res)).toMatchObject({
      status: 413,
      code: "1261",
      message: "text is 2,000,001 characters; the maximum is 2,000,000",
    });
  });

  it("rejects an unknown style, model or field, and a bad max_tokens or language, with 400", async () => {
    expect(await error(await summarize(k.key, { text: "hi", style: "haiku" }))).toMatchObject({
      status: 400,
      code: "1214",
    });
    expect(await error(await summarize(k.key, { text: "hi", model: "glm-9" }))).toMatchObject({
      status: 400,
      code: "1211",
    });
    expect(await error(await summarize(k.key, { text: "hi", styel: "bullets" }))).toMatchObject({
      status: 400,
      code: "1214",
    });
    expect(await error(await summarize(k.key, { text: "hi", max_tokens: 999_999 }))).toMatchObject({
      status: 400,
      code: "1214",
    });
    expect(await error(await summarize(k.key, { text: "hi", language: "not a language" }))).toMatchObject({
      status: 400,
      code: "1214",
    });
    expect(await error(await summarize(k.key, "{not json"))).toMatchObject({ status: 400, code: "1210" });
    expect((await simStats()).total).toBe(0);
  });

  it("answers 415 for other content types and 401 without a key", async () => {
    const form = await gw("/v1/summarize", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/x-www-form-urlencoded" },
      body: "text=hi",
    });
    expect(await error(form)).toMatchObject({ status: 415, code: "1210" });
    const none = await gw("/v1/summarize", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}` },
      body: new Blob(["hi"]),
    });
    expect(none.status).toBe(415);
    const latin1 = await gw("/v1/summarize", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "text/plain; charset=iso-8859-1" },
      body: "hi",
    });
    expect(latin1.status).toBe(415);
    const anon = await gw("/v1/summarize", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(anon.status).toBe(401);
  });

  it("takes a raw text/plain body with the options as query parameters, on both base paths", async () => {
    const text = chinese(30);
    for (const base of ["/v1", "/api/paas/v4"]) {
      const res = await gw(`${base}/summarize?style=bullets&model=glm-4-plus&language=zh&max_tokens=300`, {
        method: "POST",
        headers: { authorization: `Bearer ${k.key}`, "content-type": "text/plain; charset=utf-8" },
        body: text,
      });
      expect(res.status).toBe(200);
      expect((await res.json()) as Summary).toMatchObject({ model: "glm-4-plus", summary: simDigest(text), chunks: 1 });
    }
    const streamed = await gw("/v1/summarize?stream=true", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "text/markdown" },
      body: "# Title\n\nSome text.",
    });
    expect(sseData(await streamed.text()).at(-1)).toBe("[DONE]");
    const bad = await gw("/v1/summarize?style=haiku", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "text/plain" },
      body: "x",
    });
    expect(await error(bad)).toMatchObject({ status: 400, code: "1214" });
    const mixed = await gw("/v1/summarize?style=bullets", {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
      body: JSON.stringify({ text: "x" }),
    });
    expect(await error(mixed)).toMatchObject({ status: 400, code: "1214" });
  });

  it("is documented in /openapi.json with JSON and text bodies and the event stream", async () => {
    const doc = (await (await gw("/openapi.json")).json()) as {
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: { content: Record<string, unknown> };
            responses: Record<string, { content?: Record<string, unknown> }>;
          }
        >
      >;
    };
    const op = doc.paths["/v1/summarize"]?.post;
    expect(op).toBeDefined();
    expect(Object.keys(op!.requestBody!.content)).toEqual(["application/json", "text/plain", "text/markdown"]);
    expect(Object.keys(op!.responses["200"]!.content!)).toEqual(["application/json", "text/event-stream"]);
    expect(Object.keys(op!.responses)).toEqual(expect.arrayContaining(["400", "401", "413", "415", "429", "502"]));
  });
});
