// Splits a long text into pieces of bounded estimated size, in order, on the strongest boundaries available:
// paragraphs first, then sentence ends (CJK 。！？；… and Latin . ! ? ;), then bare line breaks. A piece is
// cut inside a sentence only when that one sentence is longer than a whole piece. Pieces are balanced: each
// one aims at (tokens left) / (pieces left), within ±20 %, so no piece is a sliver.
import { estimateTokens } from "../usage/estimate.ts";

/** Strength of the boundary after a segment: higher is a better place to cut. */
export const HARD = 0;
export const LINE = 1;
export const SENTENCE = 2;
export const PARAGRAPH = 3;

export interface Segment {
  start: number;
  end: number;
  tokens: number;
  strength: number;
}

// Alternatives in priority order: a blank line; a CJK sentence end (closing quotes/brackets stay with it; a
// straight quote stays unless a Latin word follows, as in 。"Next…); a Latin sentence end, which needs
// whitespace after it so that 3.14 and example.com stay whole; a line break.
const BOUNDARY =
  /\n[ \t\u3000]*\n\s*|[。！？；…]+(?:[”’」』）】》〉]|["')\]](?![A-Za-z0-9]))*\s*|[.!?;]+[”’"')\]]*(?:\s+|$)|\n\s*/g;
const BLANK_LINE = /\n[ \t\u3000]*\n/;
/** A period after these is not a sentence end ("Dr. Smith", "e.g. this", "U.S. law", "J. Smith"). */
const ABBREVIATIONS = new Set([
  "mr",
  "mrs",
  "ms",
  "dr",
  "prof",
  "sr",
  "jr",
  "st",
  "mt",
  "vs",
  "etc",
  "inc",
  "ltd",
  "co",
  "corp",
  "no",
  "fig",
  "vol",
  "ch",
  "pp",
  "ed",
  "approx",
  "dept",
  "est",
  "gen",
  "gov",
  "rev",
  "jan",
  "feb",
  "mar",
  "apr",
  "jun",
  "jul",
  "aug",
  "sep",
  "sept",
  "oct",
  "nov",
  "dec",
]);
const WORD_BEFORE = /([A-Za-z][A-Za-z.]*)$/;

function isAbbreviation(text: string, at: number): boolean {
  const word = WORD_BEFORE.exec(text.slice(Math.max(0, at - 16), at))?.[1];
  if (!word) return false;
  return ABBREVIATIONS.has(word.toLowerCase()) || /^[A-Z]$/.test(word) || /^(?:[A-Za-z]\.)+[A-Za-z]$/.test(word);
}

/** Where a sentence that must be cut is cut: after whitespace or a comma-like mark, if one is near. */
const SOFT = /[\s，、,：:—]/;

/** Segment length cap in characters for a piece budget: a segment is at most a quarter of a piece. */
export function hardChars(maxTokens: number): number {
  return Math.max(8, Math.min(2_000, Math.floor(maxTokens / 4)));
}

function strengthOf(match: string): number {
  if (BLANK_LINE.test(match)) return PARAGRAPH;
  return match.startsWith("\n") ? LINE : SENTENCE;
}

/**
 * Cuts the text into segments that end at boundaries; a run longer than `limit` characters (a very long
 * sentence, or text without punctuation) is cut into HARD segments first. Token counts come from
 * estimateTokens per segment, so no call ever sees more than `limit` characters.
 */
export function segmentText(text: string, maxTokens: number): Segment[] {
  const limit = hardChars(maxTokens);
  const segs: Segment[] = [];
  const push = (start: number, end: number, strength: number) => {
    let a = start;
    while (end - a > limit) {
      let cut = a + limit;
      for (let k = cut - 1; k > a + Math.floor(limit * 0.75); k--) {
        if (SOFT.test(text[k]!)) {
          cut = k + 1;
          break;
        }
      }
      // Never separate the two halves of a surrogate pair (emoji, rare CJK).
      const code = text.charCodeAt(cut);
      if (code >= 0xdc00 && code <= 0xdfff) cut--;
      segs.push({ start: a, end: cut, tokens: estimateTokens(text.slice(a, cut)), strength: HARD });
      a = cut;
    }
    if (end > a) segs.push({ start: a, end, tokens: estimateTokens(text.slice(a, end)), strength });
  };
  let last = 0;
  for (const m of text.matchAll(BOUNDARY)) {
    const end = m.index + m[0].length;
    if (end <= last) continue;
    if (/^\.\s*$/.test(m[0]) && !m[0].includes("\n") && isAbbreviation(text, m.index)) continue;
    push(last, end, strengthOf(m[0]));
    last = end;
  }
  if (last < text.length) push(last, text.length, PARAGRAPH);
  return segs;
}

export function totalTokens(segs: readonly Segment[]): number {
  let t = 0;
  for (const s of segs) t += s.tokens;
  return t;
}

/** Chooses where each piece ends; returns [first, end) segment index ranges. */
export function packSegments(segs: readonly Segment[], maxTokens: number, count: number): [number, number][] {
  const n = segs.length;
  const pre = new Array<number>(n + 1);
  pre[0] = 0;
  for (let i = 0; i < n; i++) pre[i + 1] = pre[i]! + segs[i]!.tokens;
  const out: [number, number][] = [];
  let i = 0;
  while (i < n) {
    const remaining = pre[n]! - pre[i]!;
    const piecesLeft = Math.max(1, count - out.length);
    if (remaining <= maxTokens && piecesLeft <= 1) {
      out.push([i, n]);
      break;
    }
    const target = Math.min(maxTokens, remaining / piecesLeft);
    // At least what the pieces left cannot hold, so that boundary preferences do not add a piece.
    const need = remaining - (piecesLeft - 1) * maxTokens;
    const hi = Math.min(maxTokens, target * 1.2);
    const lo = Math.min(hi, Math.max(target * 0.8, need));
    let win = -1;
    // Closest-to-target end for each boundary strength, anywhere within maxTokens.
    const best: number[] = [-1, -1, -1, -1];
    const dist = (j: number) => Math.abs(pre[j]! - pre[i]! - target);
    for (let j = i + 1; j <= n; j++) {
      const acc = pre[j]! - pre[i]!;
      if (acc > maxTokens && j > i + 1) break;
      const s = segs[j - 1]!.strength;
      if (best[s] === -1 || dist(j) < dist(best[s]!)) best[s] = j;
      if (acc >= lo && acc <= hi) {
        const ws = win === -1 ? -1 : segs[win - 1]!.strength;
        if (s > ws || (s === ws && dist(j) < dist(win))) win = j;
      }
    }
    let end: number;
    const clean = [best[PARAGRAPH]!, best[SENTENCE]!].filter((j) => j !== -1);
    if (win !== -1 && segs[win - 1]!.strength >= SENTENCE) end = win;
    else if (clean.length > 0) end = clean.reduce((a, b) => (dist(b) < dist(a) ? b : a));
    else if (win !== -1) end = win;
    else end = best[LINE] !== -1 ? best[LINE]! : best[HARD] !== -1 ? best[HARD]! : i + 1;
    out.push([i, end]);
    i = end;
  }
  return out;
}

/** A piece of the text with its estimated token count. */
export interface Piece {
  text: string;
  tokens: number;
}

/** The pieces' text, trimmed, empty ones dropped. */
export function piecesOf(text: string, segs: readonly Segment[], ranges: readonly [number, number][]): Piece[] {
  const out: Piece[] = [];
  for (const [a, b] of ranges) {
    const piece = text.slice(segs[a]!.start, segs[b - 1]!.end).trim();
    let tokens = 0;
    for (let k = a; k < b; k++) tokens += segs[k]!.tokens;
    if (piece !== "") out.push({ text: piece, tokens });
  }
  return out;
}

/**
 * Splits `text` into about `count` balanced pieces (default: as few as fit), none over `maxTokens` estimated
 * tokens. Returns one piece when the text fits; more pieces than `count` only when boundaries force it.
 */
export function splitText(text: string, opts: { maxTokens: number; count?: number }): Piece[] {
  const segs = segmentText(text, opts.maxTokens);
  const count = opts.count ?? Math.ceil(totalTokens(segs) / opts.maxTokens);
  return piecesOf(text, segs, packSegments(segs, opts.maxTokens, Math.max(1, count)));
}

/**
 * Splits a piece the upstream found too long (1261) into two or three smaller ones. Allowing 75 % of the
 * piece per half keeps the cut on a sentence boundary unless one sentence is most of the piece.
 */
export function splitAgain(piece: Piece): Piece[] {
  const segs = segmentText(piece.text, Math.max(32, Math.ceil(piece.tokens / 2)));
  const tokens = totalTokens(segs);
  return piecesOf(piece.text, segs, packSegments(segs, Math.max(1, Math.ceil(tokens * 0.75)), 2));
}
