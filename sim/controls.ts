// Per-request fault and timing controls. Tests steer the simulator through the gateway without
// touching it: a marker "[[sim: key=value …]]" in the last user message survives any proxy, and an
// "x-sim: key=value; key=value" header does too when the gateway forwards it (the header wins).
// Chaos mode derives the same kinds of faults from a seed so load tests are reproducible.

import { SLOW_DELAY_MS, SLOW_TTFT_MS, type ChaosConfig } from "./config.ts";
import { prng, fnv1a } from "./text.ts";

export type Finish = "stop" | "length" | "sensitive" | "network_error";

export type Controls = {
  tokens?: number;
  delay?: number;
  ttft?: number;
  break_after?: number;
  hang_after?: number;
  error_after?: number;
  status?: number;
  /** Seconds: the error answer carries Retry-After (GLM itself sends none; this is for gateways' tests). */
  retry_after?: number;
  error?: string;
  finish?: Finish;
  tool?: string | true; // true: call the first function in `tools`
  hang?: boolean; // never answer at all (no headers); non-stream requests treat hang_after the same
  break?: boolean; // reset the connection instead of answering; non-stream treats break_after the same
};

const NUMBER_KEYS = [
  "tokens",
  "delay",
  "ttft",
  "break_after",
  "hang_after",
  "error_after",
  "status",
  "retry_after",
] as const;
const FINISHES: readonly Finish[] = ["stop", "length", "sensitive", "network_error"];
const MARKER = /\[\[sim:?([^\]]*)\]\]/g;

/** Read controls from every marker in `lastUser`, then from the header so that it overrides them. */
export function parseControls(lastUser: string, header: string | null): Controls {
  const items: string[] = [];
  for (const m of lastUser.matchAll(MARKER)) items.push(...m[1]!.trim().split(/\s+/));
  if (header) items.push(...header.split(";"));
  const c: Controls = {};
  for (const item of items) {
    const [rawKey = "", ...rest] = item.split("=");
    const key = rawKey.trim();
    const value = rest.join("=").trim();
    if ((NUMBER_KEYS as readonly string[]).includes(key)) {
      const n = Number(value);
      if (value !== "" && Number.isInteger(n) && n >= 0) c[key as (typeof NUMBER_KEYS)[number]] = n;
    } else if (key === "error" && value) c.error = value;
    else if (key === "finish" && (FINISHES as readonly string[]).includes(value)) c.finish = value as Finish;
    else if (key === "tool") c.tool = value || true;
    else if (key === "hang" || key === "break") c[key] = value !== "false" && value !== "0";
  }
  return c;
}

/** True when the request already asks for a fault, so chaos leaves it alone. */
export function hasFault(c: Controls): boolean {
  return (
    Boolean(c.error || c.hang || c.break) ||
    c.break_after !== undefined ||
    c.hang_after !== undefined ||
    c.error_after !== undefined
  );
}

/**
 * The fault chaos mode assigns to request number `seq`: one draw picks the kind by the cumulative
 * rates, a second one the variant (which error, how many chunks before a break or hang).
 */
export function chaosControls(chaos: ChaosConfig | undefined, seq: number, tokens: number): Controls {
  if (!chaos) return {};
  const rand = prng(fnv1a(`${chaos.seed ?? 0}:${seq}`));
  const kind = rand();
  const variant = rand();
  const at = Math.floor(variant * tokens);
  const faults: [rate: number | undefined, fault: Controls][] = [
    [chaos.errorRate, { error: variant < 0.5 ? "1305" : "500" }],
    [chaos.breakRate, { break_after: at }],
    [chaos.hangRate, { hang_after: at }],
    [chaos.slowRate, { ttft: SLOW_TTFT_MS, delay: SLOW_DELAY_MS }],
  ];
  let edge = 0;
  for (const [rate, fault] of faults) {
    edge += rate ?? 0;
    if (kind < edge) return fault;
  }
  return {};
}
