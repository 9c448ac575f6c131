// Duplicate top-level keys in a JSON body. JSON.parse keeps the last of two `model` fields while another
// reader (a proxy, a log pipeline, GLM itself) may keep the first: the gateway must never limit and bill
// one model while the upstream runs another, so a body naming any top-level field twice is refused.
//
// The scan reads the top level only and skips nested values without looking inside them except for
// brackets and string ends, so it is linear in the body's length (every character is passed once;
// searches jump with indexOf and a global regex) and needs memory only for the set of top-level keys.
// Anything that is not well-formed is left to the real parser, which answers 1210.
import type { MiddlewareHandler } from "hono";
import { Codes, GatewayError } from "../errors.ts";
import type { AppEnv } from "./context.ts";

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
/** The characters that matter inside a nested value: string starts and brackets. */
const STRUCTURE = /["[\]{}]/g;

function skipWs(text: string, i: number): number {
  while (i < text.length && WS.has(text.charCodeAt(i))) i++;
  return i;
}

/** Index just past the string that opens at `i` (a `"`), or -1 when it never closes. */
function stringEnd(text: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const q = text.indexOf('"', j);
    if (q === -1) return -1;
    // The quote closes the string unless an odd number of backslashes precede it.
    let k = q - 1;
    while (k > i && text.charCodeAt(k) === 0x5c) k--;
    if ((q - 1 - k) % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/** Index just past the value that starts at or after `i`, or -1 when the text is not well-formed. */
function valueEnd(text: string, i: number): number {
  i = skipWs(text, i);
  const c = text[i];
  if (c === '"') return stringEnd(text, i);
  if (c === "{" || c === "[") {
    let depth = 0;
    STRUCTURE.lastIndex = i;
    for (let m = STRUCTURE.exec(text); m !== null; m = STRUCTURE.exec(text)) {
      const ch = m[0];
      if (ch === '"') {
        const end = stringEnd(text, m.index);
        if (end === -1) return -1;
        STRUCTURE.lastIndex = end;
      } else if (ch === "{" || ch === "[") depth++;
      else if (--depth === 0) return m.index + 1;
    }
    return -1;
  }
  // A number, true, false or null: up to the next delimiter.
  let j = i;
  while (j < text.length && !WS.has(text.charCodeAt(j)) && text[j] !== "," && text[j] !== "}" && text[j] !== "]") j++;
  return j > i ? j : -1;
}

/** The first top-level key that appears twice in a JSON object text, or undefined (also for non-objects). */
export function duplicateTopLevelKey(text: string): string | undefined {
  let i = skipWs(text, 0);
  if (text[i] !== "{") return undefined;
  const seen = new Set<string>();
  i++;
  for (;;) {
    i = skipWs(text, i);
    if (text[i] !== '"') return undefined; // "}" of an empty object, or not well-formed
    const end = stringEnd(text, i);
    if (end === -1) return undefined;
    const literal = text.slice(i, end);
    let key = literal.slice(1, -1);
    if (literal.includes("\\")) {
      // An escaped key ("mo\u0064el") is the same key as its plain spelling: compare decoded.
      try {
        key = JSON.parse(literal) as string;
      } catch {
        return undefined;
      }
    }
    if (seen.has(key)) return key;
    seen.add(key);
    i = skipWs(text, end);
    if (text[i] !== ":") return undefined;
    i = valueEnd(text, i + 1);
    if (i === -1) return undefined;
    i = skipWs(text, i);
    if (text[i] !== ",") return undefined; // "}" ends the object; anything else is for the parser
    i++;
  }
}

const JSON_TYPE = /^application\/(?:[\w.-]+\+)?json$/;

/**
 * JSON routes: 400 (1214) naming a top-level field given twice. Mounted after authentication, so a body
 * is read only once the caller is known (a large one only after its key's object accepted it).
 */
export function uniqueJsonKeys(): MiddlewareHandler<AppEnv> {
  return async function uniqueJsonKeys(c, next) {
    const m = c.req.method;
    const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if ((m === "POST" || m === "PUT" || m === "PATCH") && JSON_TYPE.test(type)) {
      const key = duplicateTopLevelKey(await c.req.text());
      if (key !== undefined) {
        throw new GatewayError(
          400,
          Codes.illegalField,
          `invalid field ${JSON.stringify(key).slice(0, 80)}: it appears more than once in the body; send each field ` +
            `once`,
        );
      }
    }
    await next();
  };
}
