// The numbers behind a summary: which model by default, how many tokens each step may put in the model's
// context, how many pieces a long text is cut into, and how partial summaries are grouped for merging.
//
// Token counts are estimates (there is no GLM tokenizer in JavaScript): src/usage/estimate.ts over-estimates
// GLM by about 15–20 % (0.75 token per CJK character, 1 per 3.5 other characters), and every budget here is
// divided by SAFETY on top, for texts the estimator reads badly (digits, code, rare scripts). When the
// upstream still answers 1261 (prompt too long), the piece is split again (orchestrator.ts).
import type { CatalogView } from "../catalog/store.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { Codes, GatewayError } from "../errors.ts";
import { estimateTokens } from "../usage/estimate.ts";
import {
  combineDocument,
  combinePrompt,
  mapPrompt,
  singlePassPrompt,
  type ChatMessage,
  type PartialSummary,
  type PromptOptions,
} from "./prompts.ts";
import type { Style } from "./schema.ts";

export const SAFETY = 1.1;
/** Workers allow 6 simultaneous outgoing connections per request: never more upstream calls at once. */
export const MAX_PARALLEL = 6;
/** Pieces are made smaller than the context allows (down to this) as long as that adds no wave of calls. */
export const QUALITY_PIECE_TOKENS = 32_000;
/** A partial summary of one piece: detailed, but small enough that many fit in one merge. */
const MAP_OUTPUT_TOKENS = 1_024;
const STYLE_OUTPUT_TOKENS: Record<Style, number> = { paragraph: 1_024, bullets: 1_024, tldr: 256 };
/** Smallest context that is still useful for the default model. */
const MIN_DEFAULT_CONTEXT = 16_000;
/** Deepest chain of merges before giving up (each level divides the partials by at least 2). */
export const MAX_COMBINE_LEVELS = 8;
/*
 * Upstream calls one summary may plan (SUMMARIZE_MAX_UPSTREAM_CALLS, default 150, in src/config.ts): a Worker
 * invocation may make 1000 subrequests on the paid plan (50 on the free plan), and each upstream call also
 * costs Durable Object calls around it (admission, release, lease renewals), so about five subrequests per
 * call; a transient failure may be retried once. 150 calls stay well inside 1000; on the free plan set 8.
 */

/**
 * The merge calls a summary of `pieces` partial summaries will make, planned as the orchestrator merges:
 * each partial counted at its largest (mapOut tokens, with the estimator's margin), grouped to fit an
 * intermediate merge until everything fits the final one.
 */
export function plannedMerges(pieces: number, b: Budgets): number {
  const size = Math.ceil(b.mapOut * 1.25) + 8;
  let n = pieces;
  let merges = 0;
  for (let depth = 0; depth <= MAX_COMBINE_LEVELS; depth++) {
    if (n * size <= b.combineFinal) return merges + 1;
    const groups = Math.max(2, Math.ceil((n * size) / b.combineMid));
    if (groups >= n) return merges + 1; // cannot shrink: the run itself will say so, after no more calls
    merges += groups;
    n = groups;
  }
  return merges + 1;
}

/**
 * The default model: among active models with streaming and a context of at least 16K tokens, the cheapest
 * (input + output price), then the largest context window, then the highest V0 concurrency, then by id.
 * With the bundled catalog that is glm-4-flash-250414 (free, 128K context, 200 in flight at V0).
 */
export function defaultModel(view: CatalogView): ModelEntry {
  const usable = view.catalog.models.filter((m) => m.status === "active" && m.capabilities.streaming);
  const large = usable.filter((m) => m.context_window >= MIN_DEFAULT_CONTEXT);
  const pool = large.length > 0 ? large : usable;
  const sorted = [...pool].sort(
    (a, b) =>
      a.pricing.input + a.pricing.output - (b.pricing.input + b.pricing.output) ||
      b.context_window - a.context_window ||
      b.concurrency.V0 - a.concurrency.V0 ||
      a.id.localeCompare(b.id),
  );
  const pick = sorted[0];
  if (!pick)
    throw new GatewayError(
      503,
      Codes.unavailable,
      'no active model in the catalog can summarize; name one with "model"',
    );
  return pick;
}

export interface Budgets {
  /** max_tokens of the final step (the summary the caller gets). */
  finalOut: number;
  /** max_tokens of a partial summary (map and intermediate merges). */
  mapOut: number;
  /** Largest text (estimated tokens) summarized in a single pass. */
  single: number;
  /** Largest piece in the map step. */
  piece: number;
  /** Largest combine document for the final merge, and for an intermediate one. */
  combineFinal: number;
  combineMid: number;
}

function promptTokens(messages: ChatMessage[]): number {
  // 4 tokens of framing per message, as GLM counts, and a little slack for the labels of the parts.
  return messages.reduce((n, m) => n + estimateTokens(m.content) + 4, 0) + 16;
}

const room = (context: number, out: number, prompt: number) => Math.floor((context - out - prompt) / SAFETY);

export function budgets(model: ModelEntry, o: PromptOptions, maxTokens: number | undefined): Budgets {
  const ctx = model.context_window;
  const finalOut =
    maxTokens ?? Math.max(16, Math.min(STYLE_OUTPUT_TOKENS[o.style], model.max_output_tokens, Math.floor(ctx / 4)));
  const mapOut = Math.max(16, Math.min(MAP_OUTPUT_TOKENS, model.max_output_tokens, Math.floor(ctx / 8)));
  const one: PartialSummary[] = [{ text: "", from: 1, to: 1 }];
  const b: Budgets = {
    finalOut,
    mapOut,
    single: room(ctx, finalOut, promptTokens(singlePassPrompt(o, "", finalOut))),
    piece: room(ctx, mapOut, promptTokens(mapPrompt(o, "", 9_999, 9_999, mapOut))),
    combineFinal: room(ctx, finalOut, promptTokens(combinePrompt(o, one, 9_999, finalOut, true))),
    combineMid: room(ctx, mapOut, promptTokens(combinePrompt(o, one, 9_999, mapOut, false))),
  };
  // A merge must fit at least two partial summaries (each up to mapOut tokens, estimated with margin),
  // or merging would never shrink the list.
  const twoPartials = Math.ceil(2 * mapOut * 1.25);
  if (b.piece < 128 || b.combineMid < twoPartials || b.combineFinal < twoPartials) {
    throw new GatewayError(
      400,
      Codes.illegalField,
      maxTokens !== undefined
        ? `invalid field max_tokens: ${maxTokens} leaves too little of ${model.id}'s ${ctx}-token context for the ` +
            `text; lower it or choose a model with a larger context`
        : `model ${model.id} has too small a context window (${ctx} tokens) to summarize; choose a larger model`,
    );
  }
  return b;
}

/**
 * How many pieces a text of `total` estimated tokens is cut into: as few as the context allows, in as few
 * waves of `parallel` calls as possible; within those waves, smaller pieces (down to QUALITY_PIECE_TOKENS)
 * because a model summarizes a shorter piece in more detail — and it costs no extra wall time.
 */
export function pieceCount(total: number, pieceBudget: number, parallel: number): number {
  // Pieces end on sentence or paragraph boundaries, so they come out below the budget: plan for 90 % of it.
  const fewest = Math.max(2, Math.ceil(total / (pieceBudget * 0.9)));
  const waves = Math.ceil(fewest / parallel);
  return Math.max(fewest, Math.min(waves * parallel, Math.ceil(total / QUALITY_PIECE_TOKENS)));
}

/** Estimated tokens of a partial summary inside a combine document (its label included). */
export function partialTokens(p: PartialSummary, total: number, zh: boolean): number {
  return estimateTokens(combineDocument([p], total, zh)) + 2;
}

/**
 * Groups consecutive partial summaries so that each group's document fits `budget`, with groups of similar
 * size. A group of one needs no merge and passes through to the next level unchanged.
 */
export function groupPartials(
  partials: readonly PartialSummary[],
  sizes: readonly number[],
  budget: number,
): PartialSummary[][] {
  const total = sizes.reduce((a, b) => a + b, 0);
  const count = Math.max(2, Math.ceil(total / budget));
  const groups: PartialSummary[][] = [];
  let left = total;
  let i = 0;
  while (i < partials.length) {
    const target = left / Math.max(1, count - groups.length);
    const group: PartialSummary[] = [partials[i]!];
    let acc = sizes[i]!;
    i++;
    while (i < partials.length && acc + sizes[i]! <= budget && acc + sizes[i]! / 2 <= target) {
      acc += sizes[i]!;
      group.push(partials[i]!);
      i++;
    }
    left -= acc;
    groups.push(group);
  }
  return groups;
}
