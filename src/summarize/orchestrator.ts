// Runs one summary: a single pass when the text fits the model's context; otherwise split → summarize the
// pieces in parallel (map) → merge the partial summaries in order (combine), merging in groups first when
// they do not fit at once. Only the final step streams. A 1261 (prompt too long) splits that piece or group
// in two and carries on; any other failure aborts every call still running and fails the whole summary.
import { Codes, GatewayError } from "../errors.ts";
import type { Calls } from "./calls.ts";
import { TooLong } from "./failures.ts";
import {
  groupPartials,
  MAX_COMBINE_LEVELS,
  partialTokens,
  pieceCount,
  plannedMerges,
  type Budgets,
} from "./planner.ts";
import {
  combineDocument,
  combinePrompt,
  mapPrompt,
  singlePassPrompt,
  type ChatMessage,
  type PartialSummary,
  type PromptOptions,
} from "./prompts.ts";
import { packSegments, piecesOf, segmentText, splitAgain, totalTokens, type Piece } from "./splitter.ts";
import { quietSink, type Sink } from "./stream.ts";
import { estimateTokens } from "../usage/estimate.ts";

export interface Job {
  text: string;
  prompt: PromptOptions;
  budgets: Budgets;
  /** Upstream calls the summary may plan (SUMMARIZE_MAX_UPSTREAM_CALLS): more is refused before the first. */
  maxCalls: number;
}

/** Waits for every task; on the first failure aborts the rest, waits for them to settle, and throws it. */
async function allOrAbort<T>(tasks: Promise<T>[], abort: (reason: unknown) => void): Promise<T[]> {
  let failed = false;
  let first: unknown;
  const settled = await Promise.allSettled(
    tasks.map((t) =>
      t.catch((err: unknown) => {
        if (!failed) {
          failed = true;
          first = err;
          abort(err);
        }
        throw err;
      }),
    ),
  );
  if (failed) throw first;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

export class Summarizer {
  /** Pieces the text was summarized in (1 = single pass); grows when a piece is split again. */
  chunks = 0;
  /** The summary was cut by its max_tokens (the final step ended with finish_reason "length"). */
  truncated = false;
  private mapDone = 0;
  private combineDone = 0;
  private combineTotal = 0;
  private sink: Sink = quietSink;

  constructor(
    private readonly calls: Calls,
    private readonly job: Job,
  ) {}

  /** The summary text, or undefined when the sink streamed it. */
  async run(sink: Sink): Promise<string | undefined> {
    this.sink = sink;
    const { text, budgets } = this.job;
    const segs = segmentText(text, budgets.piece);
    const total = totalTokens(segs);
    let pieces: Piece[];
    if (total <= budgets.single) {
      this.chunks = 1;
      try {
        return await this.finalStep(singlePassPrompt(this.job.prompt, text, budgets.finalOut), "summarizing the text");
      } catch (err) {
        if (!(err instanceof TooLong)) throw err;
        // Our estimate was too low for this text: go the long way.
        pieces = splitAgain({ text, tokens: total });
      }
    } else {
      pieces = piecesOf(
        text,
        segs,
        packSegments(segs, budgets.piece, pieceCount(total, budgets.piece, this.calls.parallel)),
      );
    }
    this.checkPlan(pieces.length);
    this.chunks = pieces.length;
    this.sink.progress({ stage: "map", done: 0, total: this.chunks });
    const partials = (
      await allOrAbort(
        pieces.map((p, i) => this.mapPiece(p, i + 1, pieces.length)),
        (e) => this.calls.abort(e),
      )
    ).flat();
    // Renumber: pieces split again became several consecutive parts.
    const numbered = partials.map((text, i) => ({ text, from: i + 1, to: i + 1 }));
    return this.reduce(numbered);
  }

  /**
   * Refuses, before any call, a plan that needs more upstream calls than one invocation may make: failing
   * half way would waste what the first calls cost and still return nothing.
   */
  private checkPlan(pieces: number): void {
    const merges = plannedMerges(pieces, this.job.budgets);
    const planned = pieces + merges;
    if (planned > this.job.maxCalls) {
      throw new GatewayError(
        413,
        Codes.promptTooLong,
        `this text needs about ${planned} upstream calls (${pieces} pieces and ${merges} merges) with ` +
          `${this.calls.modelId}, more than the ${this.job.maxCalls} one request may make; send a shorter text or ` +
          `choose a model with a larger context`,
      );
    }
  }

  /** One piece's partial summaries, in order (more than one if it had to be split again). */
  private async mapPiece(piece: Piece, index: number, total: number): Promise<string[]> {
    const what = `summarizing piece ${index} of ${total}`;
    try {
      const a = await this.calls.complete(
        mapPrompt(this.job.prompt, piece.text, index, total, this.job.budgets.mapOut),
        this.job.budgets.mapOut,
        what,
      );
      this.mapDone++;
      this.sink.progress({ stage: "map", done: this.mapDone, total: this.chunks });
      return [a.content];
    } catch (err) {
      if (!(err instanceof TooLong)) throw err;
      const halves = splitAgain(piece);
      if (halves.length < 2) throw tooLongError(what, piece.text.length);
      this.chunks += halves.length - 1;
      const parts = await allOrAbort(
        halves.map((h) => this.mapPiece(h, index, total)),
        (e) => this.calls.abort(e),
      );
      return parts.flat();
    }
  }

  private sizes(partials: readonly PartialSummary[], total: number): number[] {
    return partials.map((p) => partialTokens(p, total, this.job.prompt.target.chinese));
  }

  /** Merges partial summaries level by level until one final merge writes the summary. */
  private async reduce(partials: PartialSummary[]): Promise<string | undefined> {
    const total = partials.length;
    const { budgets } = this.job;
    let level = partials;
    for (let depth = 0; depth <= MAX_COMBINE_LEVELS; depth++) {
      const fits =
        estimateTokens(combineDocument(level, total, this.job.prompt.target.chinese)) <= budgets.combineFinal;
      let groups: PartialSummary[][];
      if (fits) {
        try {
          return await this.finalStep(
            combinePrompt(this.job.prompt, level, total, budgets.finalOut, true),
            "combining the partial summaries",
          );
        } catch (err) {
          if (!(err instanceof TooLong)) throw err;
          if (level.length < 2) throw tooLongError("combining the partial summaries", level[0]?.text.length ?? 0);
          const half = Math.ceil(level.length / 2);
          groups = [level.slice(0, half), level.slice(half)];
        }
      } else {
        groups = groupPartials(level, this.sizes(level, total), budgets.combineMid);
      }
      if (groups.length >= level.length) {
        throw new GatewayError(
          400,
          Codes.promptTooLong,
          `the partial summaries cannot be merged within ${this.calls.modelId}'s context window; choose a model with ` +
            `a larger context`,
        );
      }
      this.combineTotal += groups.filter((g) => g.length > 1).length;
      this.sink.progress({ stage: "combine", done: this.combineDone, total: this.combineTotal });
      level = (
        await allOrAbort(
          groups.map((g) => this.combineGroup(g, total)),
          (e) => this.calls.abort(e),
        )
      ).flat();
    }
    throw new GatewayError(
      400,
      Codes.promptTooLong,
      `the partial summaries did not fit ${this.calls.modelId}'s context after ${MAX_COMBINE_LEVELS} levels of merging`,
    );
  }

  /** An intermediate merge of consecutive partials into one (or, after a 1261, into two or more). */
  private async combineGroup(group: PartialSummary[], total: number): Promise<PartialSummary[]> {
    if (group.length === 1) return group;
    const from = group[0]!.from;
    const to = group[group.length - 1]!.to;
    const what = `combining the summaries of parts ${from}–${to}`;
    try {
      const a = await this.calls.complete(
        combinePrompt(this.job.prompt, group, total, this.job.budgets.mapOut, false),
        this.job.budgets.mapOut,
        what,
      );
      this.combineDone++;
      this.sink.progress({ stage: "combine", done: this.combineDone, total: this.combineTotal });
      return [{ text: a.content, from, to }];
    } catch (err) {
      if (!(err instanceof TooLong)) throw err;
      const half = Math.ceil(group.length / 2);
      this.combineTotal += 1;
      const parts = await allOrAbort(
        [this.combineGroup(group.slice(0, half), total), this.combineGroup(group.slice(half), total)],
        (e) => this.calls.abort(e),
      );
      return parts.flat();
    }
  }

  /** The step whose answer is the summary: streamed to the client when it streams. */
  private async finalStep(messages: ChatMessage[], what: string): Promise<string | undefined> {
    const maxTokens = this.job.budgets.finalOut;
    if (!this.sink.streaming) {
      const answer = await this.calls.complete(messages, maxTokens, what);
      this.truncated = answer.finishReason === "length";
      return answer.content;
    }
    const open = await this.calls.openStream(messages, maxTokens, what);
    if (this.chunks > 1) this.sink.progress({ stage: "final", done: 0, total: 1 });
    const outcome = await this.sink.final(open);
    this.truncated = outcome.finishReason === "length";
    return undefined;
  }
}

function tooLongError(what: string, chars: number): GatewayError {
  return new GatewayError(
    400,
    Codes.promptTooLong,
    `${what}: the upstream still finds the prompt too long (1261) after splitting it down to ${chars} characters; ` +
      `choose a model with a larger context`,
  );
}
