// The Worker side of the limiter: takes a slot from the caller's KeyObject, which also authenticates, checks
// budgets and hands out an upstream slot from its block of the account's capacity (src/limiter/block.ts), so
// admission is one round trip and so is the release. Waits in line when the caller asked to
// (x-queue-timeout-ms). Fails closed: if a limiter object cannot be reached, nothing is admitted.
import type { Credential } from "../auth/credentials.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import type { Tier } from "../config.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { KeyAcquireResult, Reservation, Retake } from "../keys/key-object.ts";
import type { Caller } from "../keys/types.ts";
import type { UsageRecord } from "../usage/ledger.ts";
import { log } from "../http/log.ts";
import type { WaitUntil } from "../http/context.ts";
import { LEASE_RENEW_MS } from "./leases.ts";

/** The longest a caller may ask to wait for a slot (x-queue-timeout-ms is capped to this). */
export const MAX_QUEUE_TIMEOUT_MS = 60_000;

export interface Slot {
  caller: Caller;
  limit: number;
  inFlight: number;
  /**
   * Renews the request's leases; a failed renewal RPC is retried; if the lease was lost it is taken again.
   * Resolves false only when the request no longer holds its slots and could not retake them: the caller
   * must cancel its upstream call. Never rejects.
   */
  renew(): Promise<boolean>;
  /**
   * Frees the slots and records usage (if given) in one call to the key's object. Runs once; never rejects;
   * retries once; if recording fails the slot is still freed (and the record is retried with KeyObject.record).
   */
  release(usage?: UsageRecord): Promise<void>;
  /**
   * Renews every `everyMs` (default LEASE_RENEW_MS) until the returned stop function is called: for waits
   * whose progress the gateway cannot see (GLM thinking before its first byte, a long non-streaming answer).
   * Calls onLost() if renew() resolves false.
   */
  keepAlive(ctx: WaitUntil, everyMs?: number, onLost?: () => void): () => void;
}

export interface SlotRequest {
  cred: Credential;
  model: ModelEntry;
  accountTier: Tier;
  queueTimeoutMs: number;
  origin?: string | null;
  /** The client's signal: a client that leaves while waiting for a slot is never admitted. */
  signal?: AbortSignal | null;
  /** The request's worst-case cost, held against the key's daily budget while it is in flight. */
  reserve?: Reservation;
}

export function keyStub(env: Env, keyId: string) {
  return env.KEYS.get(env.KEYS.idFromName(keyId));
}

export function guardStub(env: Env, model: string) {
  return env.GUARD.get(env.GUARD.idFromName(model));
}

type KeyStub = ReturnType<typeof keyStub>;
type KeyAnswer = KeyAcquireResult;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function unavailable(err: unknown): GatewayError {
  log({ level: "error", msg: "limiter unreachable; failing closed", error: String(err) });
  return new GatewayError(
    503,
    Codes.unavailable,
    "the concurrency limiter is unavailable, so the request was not admitted; retry in a few seconds",
    { "retry-after": "2" },
  );
}

function tooMany(limit: number | undefined, inFlight: number | undefined, message: string, code: string = Codes.concurrency, retryAfter = 1): GatewayError {
  const headers: Record<string, string> = { "retry-after": String(retryAfter) };
  if (limit !== undefined) headers["x-concurrency-limit"] = String(limit);
  if (inFlight !== undefined) headers["x-concurrency-in-flight"] = String(inFlight);
  return new GatewayError(429, code, message, headers);
}

const clientClosed = () => new GatewayError(408, Codes.network, "client closed the request");

/** Settles with the call's answer, or with "aborted" as soon as the signal fires (the call goes on). */
function unlessAborted<T>(call: Promise<T>, signal: AbortSignal | null | undefined): Promise<T | "aborted"> {
  if (!signal) return call;
  if (signal.aborted) return Promise.resolve("aborted");
  let onAbort!: () => void;
  const aborted = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([call, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

/**
 * Admission: one call to the key's object, which checks the credential and budget and takes both the key's
 * slot and an upstream slot from the key's block of the account's capacity. Waiting callers call again
 * (each call parks at most WAIT_SLICE_MS) and keep whatever they already hold. Fails closed.
 */
export async function acquireSlot(env: Env, req: SlotRequest): Promise<Slot> {
  const deadline = Date.now() + Math.min(Math.max(req.queueTimeoutMs, 0), MAX_QUEUE_TIMEOUT_MS);
  const key = keyStub(env, req.cred.keyId);
  const model = req.model.id;
  const accountLimit = req.model.concurrency[req.accountTier];
  /** Gives back whatever an answer holds: a granted slot, a key slot kept while waiting, a place in a line. */
  const undo = async (got: KeyAnswer | undefined) => {
    if (!got) return;
    if (got.ok) await key.release(got.leaseId);
    else if (got.upstream?.leaseId) await key.release(got.upstream.leaseId, undefined, got.upstream.ticket ? { model, ticket: got.upstream.ticket } : undefined);
    else if (got.ticket) await key.leaveQueue(model, got.ticket);
  };
  let ticket: string | undefined;
  let held: KeyAnswer | undefined;
  let got: KeyAnswer;
  for (;;) {
    if (req.signal?.aborted) {
      await undo(held).catch(() => undefined);
      throw clientClosed();
    }
    const waitMs = deadline - Date.now();
    const call: Promise<KeyAnswer> = key.acquire({
      cred: req.cred,
      model,
      limits: req.model.concurrency,
      accountLimit,
      origin: req.origin ?? null,
      ...(req.reserve ? { reserve: req.reserve } : {}),
      wait: waitMs > 0 ? { ticket, waitMs } : { ticket },
      ...(held && !held.ok && held.upstream?.leaseId ? { held: { leaseId: held.upstream.leaseId, ticket: held.upstream.ticket } } : {}),
    }).then((r) => r as KeyAnswer);
    let answer: KeyAnswer | "aborted";
    try {
      answer = await unlessAborted(call, req.signal);
    } catch (err) {
      await undo(held).catch(() => undefined);
      throw unavailable(err);
    }
    if (answer === "aborted") {
      // The client left while waiting: it is never admitted. Whatever the call in progress brings is given
      // back before this returns, so nothing stays held for it.
      await undo(await call.catch(() => held)).catch(() => undefined);
      throw clientClosed();
    }
    got = answer;
    if (got.ok) break;
    if (got.upstream?.leaseId && Date.now() < deadline) {
      held = got;
      continue;
    }
    if (got.code === Codes.concurrency && got.ticket && Date.now() < deadline) {
      ticket = got.ticket;
      continue;
    }
    await undo(got).catch(() => undefined);
    if (got.upstream) {
      throw tooMany(
        got.limit,
        got.inFlight,
        `the gateway's upstream capacity for ${model} is full (${got.upstream.limit} in flight at account tier ${req.accountTier}); retry shortly`,
      );
    }
    if (got.status === 429) throw tooMany(got.limit, got.inFlight, got.message, got.code, got.retryAfter);
    throw new GatewayError(got.status, got.code, got.message);
  }
  return slotFor(key, got, { model, limits: req.model.concurrency, accountLimit });
}

function slotFor(key: KeyStub, got: Extract<KeyAnswer, { ok: true }>, retake: Retake): Slot {
  const leaseId = got.leaseId;
  let released = false;
  const renew = async (): Promise<boolean> => {
    for (let attempt = 0; attempt < 3 && !released; attempt++) {
      try {
        return await key.renew(leaseId, retake);
      } catch (err) {
        log({ level: "warn", msg: "lease renewal failed", attempt, error: String(err) });
        await sleep(100 * 2 ** attempt);
      }
    }
    // Unreachable, or released meanwhile: the leases outlive this interval, and the next renewal tries again.
    return true;
  };
  return {
    caller: got.caller,
    limit: got.limit,
    inFlight: got.inFlight,
    renew,
    keepAlive(ctx, everyMs = LEASE_RENEW_MS, onLost) {
      let stopped = false;
      const stop = () => {
        stopped = true;
        clearInterval(timer);
      };
      const timer = setInterval(() => {
        ctx.waitUntil(
          renew().then((ok) => {
            if (ok || stopped) return;
            stop();
            onLost?.();
          }),
        );
      }, everyMs);
      return stop;
    },
    async release(usage) {
      if (released) return;
      released = true;
      let recorded = usage === undefined;
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          recorded = (await key.release(leaseId, usage)).recorded;
          break;
        } catch (err) {
          // The release is idempotent, and a slot whose release never arrives is reclaimed by its expiry.
          log({ level: "warn", msg: "slot release failed", attempt, error: String(err) });
        }
      }
      if (recorded || !usage) return;
      await key.record(usage).catch((err: unknown) =>
        log({ level: "error", msg: "usage record lost", request_id: usage.request_id, error: String(err) }),
      );
    },
  };
}
