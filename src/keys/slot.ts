// The Worker side of the limiter: takes a slot from the caller's KeyObject, which also authenticates, checks
// budgets and hands out an upstream slot from its blocks of the accounts' capacity (src/limiter/block.ts), so
// admission is one round trip and so is the release (and so is moving a failed attempt to its next account
// or model: Slot.next). Waits in line when the caller asked to (x-queue-timeout-ms). Fails closed: if a
// limiter object cannot be reached, nothing is admitted.
import type { Credential } from "../auth/credentials.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import { Codes, GatewayError } from "../errors.ts";
import type { KeyAcquireRequest, KeyAcquireResult, Reservation, Retake } from "./key-object.ts";
import type { Caller } from "./types.ts";
import type { UsageRecord } from "../usage/ledger.ts";
import { log } from "../shared/log.ts";
import { keyStub } from "./stub.ts";
import type { WaitUntil } from "../shared/wait-until.ts";
import type { Verdict } from "../limiter/block.ts";
import { LEASE_RENEW_MS } from "../limiter/leases.ts";
import type { CircuitConfig, Pool } from "../limiter/pools.ts";

/** The longest a caller may ask to wait for a slot (x-queue-timeout-ms is capped to this). */
export const MAX_QUEUE_TIMEOUT_MS = 60_000;

export interface Slot {
  caller: Caller;
  limit: number;
  inFlight: number;
  /** The model, account and pool of the current attempt's upstream slot (next() moves them). */
  readonly model: ModelEntry;
  readonly account: string;
  readonly pool: string;
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
  release(usage?: UsageRecord, verdict?: Verdict): Promise<void>;
  /**
   * Ends the current attempt (records `usage`, tells the account's circuit how it went) and takes the slots
   * of the next one — at an account not in `avoid`, for `to.model` — in one call to the key's object,
   * without waiting. True when the slot now stands for the next attempt. False when no upstream slot is free now: the
   * key slot is still held (call next() again later, or release()). Throws a GatewayError when the request may
   * not go on (the fallback model's own key limit or the token's scope refuses it, or the limiter is down);
   * the slot is then released.
   */
  next(usage: UsageRecord | undefined, verdict: Verdict, to: NextAttempt): Promise<boolean>;
  /**
   * Renews every `everyMs` (default LEASE_RENEW_MS) until the returned stop function is called: for waits
   * whose progress the gateway cannot see (GLM thinking before its first byte, a long non-streaming answer).
   * Calls onLost() if renew() resolves false.
   */
  keepAlive(ctx: WaitUntil, everyMs?: number, onLost?: () => void): () => void;
}

export interface NextAttempt {
  model: ModelEntry;
  pools: Pool[];
  avoid: string[];
}

export interface SlotRequest {
  cred: Credential;
  model: ModelEntry;
  /** The model's pools over every upstream account (src/limiter/pools.ts). */
  pools: Pool[];
  circuit: CircuitConfig;
  queueTimeoutMs: number;
  origin?: string | null;
  /** The client's signal: a client that leaves while waiting for a slot is never admitted. */
  signal?: AbortSignal | null;
  /** The request's worst-case cost, held against the key's daily budget while it is in flight. */
  reserve?: Reservation;
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

function tooMany(
  limit: number | undefined,
  inFlight: number | undefined,
  message: string,
  code: string = Codes.concurrency,
  retryAfter = 1,
  status: 429 | 503 = 429,
): GatewayError {
  const headers: Record<string, string> = { "retry-after": String(retryAfter) };
  if (limit !== undefined) headers["x-concurrency-limit"] = String(limit);
  if (inFlight !== undefined) headers["x-concurrency-in-flight"] = String(inFlight);
  return new GatewayError(status, code, message, headers);
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
  /** Gives back whatever an answer holds: a granted slot, a key slot kept while waiting, a place in a line. */
  const undo = async (got: KeyAnswer | undefined) => {
    if (!got) return;
    if (got.ok) await key.release(got.leaseId);
    else if (got.upstream?.leaseId) await key.release(got.upstream.leaseId, undefined, leaveOf(got));
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
    const call: Promise<KeyAnswer> = key
      .acquire({
        cred: req.cred,
        model,
        limits: req.model.concurrency,
        pools: req.pools,
        circuit: req.circuit,
        origin: req.origin ?? null,
        ...(req.reserve ? { reserve: req.reserve } : {}),
        wait: waitMs > 0 ? { ticket, waitMs } : { ticket },
        ...(held && !held.ok && held.upstream?.leaseId ? { held: heldOf(held) } : {}),
      })
      .then((r) => r as KeyAnswer);
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
    throw refusal(got, model);
  }
  return slotFor(key, got, req);
}

/** The GatewayError for a refused answer of the key's object. */
function refusal(got: Exclude<KeyAnswer, { ok: true }>, model: string): GatewayError {
  if (got.upstream && got.status === 429) {
    throw tooMany(
      got.limit,
      got.inFlight,
      `the gateway's upstream capacity for ${model} is full (${got.upstream.limit} in flight over its accounts); ` +
        `retry shortly`,
    );
  }
  if (got.status === 429 || got.status === 503)
    return tooMany(got.limit, got.inFlight, got.message, got.code, got.retryAfter, got.status);
  return new GatewayError(got.status, got.code, got.message);
}

function heldOf(got: Exclude<KeyAnswer, { ok: true }>): NonNullable<KeyAcquireRequest["held"]> {
  const u = got.upstream!;
  return { leaseId: u.leaseId!, ...(u.ticket && u.ticketPool ? { ticket: u.ticket, ticketPool: u.ticketPool } : {}) };
}

function leaveOf(got: Exclude<KeyAnswer, { ok: true }>): { pool: string; ticket: string } | undefined {
  const u = got.upstream;
  return u?.ticket && u.ticketPool ? { pool: u.ticketPool, ticket: u.ticket } : undefined;
}

function slotFor(key: KeyStub, first: Extract<KeyAnswer, { ok: true }>, admission: SlotRequest): Slot {
  let got = first;
  let model = admission.model;
  let pools = admission.pools;
  let released = false;
  const retake = (): Retake => ({
    model: model.id,
    limits: model.concurrency,
    pool: got.pool,
    poolLimit: pools.find((p) => p.name === got.pool)?.limit ?? 0,
  });
  const renew = async (): Promise<boolean> => {
    for (let attempt = 0; attempt < 3 && !released; attempt++) {
      try {
        return await key.renew(got.leaseId, retake());
      } catch (err) {
        log({ level: "warn", msg: "lease renewal failed", attempt, error: String(err) });
        await sleep(100 * 2 ** attempt);
      }
    }
    // Unreachable, or released meanwhile: the leases outlive this interval, and the next renewal tries again.
    return true;
  };
  return {
    caller: first.caller,
    limit: first.limit,
    inFlight: first.inFlight,
    get model() {
      return model;
    },
    get account() {
      return got.account;
    },
    get pool() {
      return got.pool;
    },
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
    async next(usage, verdict, to) {
      let answer: KeyAnswer;
      try {
        answer = (await key.next(got.leaseId, usage, verdict, {
          cred: admission.cred,
          model: to.model.id,
          limits: to.model.concurrency,
          pools: to.pools,
          avoid: to.avoid,
          circuit: admission.circuit,
          origin: admission.origin ?? null,
          keep: true,
        })) as KeyAnswer;
      } catch (err) {
        // The attempt's record may not have been written: release() records it (idempotent by id).
        await this.release(usage);
        throw unavailable(err);
      }
      if (answer.ok) {
        got = answer;
        model = to.model;
        pools = to.pools;
        return true;
      }
      if (answer.upstream?.leaseId) {
        // No upstream slot now; the key slot is kept (and with it the lease id for a later call).
        got = { ...got, leaseId: answer.upstream.leaseId };
        model = to.model;
        pools = to.pools;
        if (answer.status === 503) {
          await this.release();
          throw refusal(answer, to.model.id);
        }
        return false;
      }
      released = true;
      throw refusal(answer, to.model.id);
    },
    async release(usage, verdict) {
      if (released) return;
      released = true;
      let recorded = usage === undefined;
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          recorded = (await key.release(got.leaseId, usage, undefined, verdict)).recorded;
          break;
        } catch (err) {
          // The release is idempotent, and a slot whose release never arrives is reclaimed by its expiry.
          log({ level: "warn", msg: "slot release failed", attempt, error: String(err) });
        }
      }
      if (recorded || !usage) return;
      await key
        .record(usage)
        .catch((err: unknown) =>
          log({ level: "error", msg: "usage record lost", request_id: usage.request_id, error: String(err) }),
        );
    },
  };
}
