// The Worker side of the limiter: takes a slot from the caller's KeyObject (which also authenticates and
// checks budgets) and then from the model's UpstreamGuard, waiting in line when the caller asked to
// (x-queue-timeout-ms). Fails closed: if a limiter object cannot be reached, nothing is admitted.
import type { Credential } from "../auth/credentials.ts";
import type { ModelEntry } from "../catalog/schema.ts";
import type { Tier } from "../config.ts";
import { Codes, GatewayError } from "../errors.ts";
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
  /** Keeps both leases alive; resolves false when they are lost for good (the caller must stop). Never rejects. */
  renew(): Promise<boolean>;
  /** Frees both slots and records usage (if given) in one call to the key's object. Runs once. */
  release(usage?: UsageRecord): Promise<void>;
  /**
   * Renews both leases every `everyMs` until the returned function is called: for waits whose progress
   * the gateway cannot see (GLM thinking before its first byte, a long non-streaming answer).
   */
  keepAlive(ctx: WaitUntil, everyMs?: number, onLost?: () => void): () => void;
}

export interface SlotRequest {
  cred: Credential;
  model: ModelEntry;
  accountTier: Tier;
  queueTimeoutMs: number;
  origin?: string | null;
  /** The caller's signal: a caller that leaves while it waits in line is never admitted. */
  signal?: AbortSignal | null;
  /** When false the upstream guard is skipped (tests and the benchmark's limiter-off column only). */
  guard?: boolean;
}

export function keyStub(env: Env, keyId: string) {
  return env.KEYS.get(env.KEYS.idFromName(keyId));
}

export function guardStub(env: Env, model: string) {
  return env.GUARD.get(env.GUARD.idFromName(model));
}

/** Two attempts: both calls are idempotent, and a lost release is still reclaimed by the lease expiry. */
async function twice(fn: () => Promise<unknown>): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fn();
      return;
    } catch (err) {
      log({ level: "warn", msg: "slot release failed", attempt, error: String(err) });
    }
  }
}

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

export async function acquireSlot(env: Env, req: SlotRequest): Promise<Slot> {
  const deadline = Date.now() + Math.min(Math.max(req.queueTimeoutMs, 0), MAX_QUEUE_TIMEOUT_MS);
  const key = keyStub(env, req.cred.keyId);
  let ticket: string | undefined;
  let got;
  const left = () => new GatewayError(408, Codes.network, "client closed the request");
  for (;;) {
    if (req.signal?.aborted) {
      if (ticket) key.leaveQueue(req.model.id, ticket).catch(() => undefined);
      throw left();
    }
    const waitMs = deadline - Date.now();
    try {
      got = await key.acquire({
        cred: req.cred,
        model: req.model.id,
        limits: req.model.concurrency,
        origin: req.origin ?? null,
        wait: waitMs > 0 ? { ticket, waitMs } : { ticket },
      });
    } catch (err) {
      throw unavailable(err);
    }
    if (got.ok) break;
    if (got.code !== Codes.concurrency || !got.ticket || Date.now() >= deadline) {
      if (got.ticket) key.leaveQueue(req.model.id, got.ticket).catch(() => undefined);
      if (got.status === 429) throw tooMany(got.limit, got.inFlight, got.message, got.code, got.retryAfter);
      throw new GatewayError(got.status, got.code, got.message);
    }
    ticket = got.ticket;
  }
  const keyLease = got.leaseId;
  const releaseKey = (usage?: UsageRecord) => key.release(keyLease, usage).then(() => undefined);

  let guardLease: string | undefined;
  if (req.guard !== false) {
    const guard = guardStub(env, req.model.id);
    const guardLimit = req.model.concurrency[req.accountTier];
    let gticket: string | undefined;
    try {
      for (;;) {
        if (req.signal?.aborted) {
          if (gticket) guard.leaveQueue(req.model.id, gticket).catch(() => undefined);
          await releaseKey().catch(() => undefined);
          throw left();
        }
        const waitMs = deadline - Date.now();
        const g = await guard.acquire(req.model.id, guardLimit, waitMs > 0 ? { ticket: gticket, waitMs } : { ticket: gticket });
        if (g.granted) {
          guardLease = g.leaseId;
          break;
        }
        if (!g.ticket || Date.now() >= deadline) {
          if (g.ticket) guard.leaveQueue(req.model.id, g.ticket).catch(() => undefined);
          await releaseKey().catch(() => undefined);
          throw tooMany(
            got.limit,
            got.inFlight,
            `the gateway's upstream capacity for ${req.model.id} is full (${guardLimit} in flight at account tier ${req.accountTier}); retry shortly`,
          );
        }
        gticket = g.ticket;
      }
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      await releaseKey().catch(() => undefined);
      throw unavailable(err);
    }
  }

  const guardId = guardLease;
  let released = false;
  const renew = async (): Promise<boolean> => {
    if (released) return true;
    try {
      const [k, g] = await Promise.all([
        key.renew(keyLease),
        guardId ? guardStub(env, req.model.id).renew(guardId) : Promise.resolve(true),
      ]);
      return k && g;
    } catch (err) {
      log({ level: "warn", msg: "lease renewal failed", error: String(err) });
      return true;
    }
  };
  return {
    caller: got.caller,
    limit: got.limit,
    inFlight: got.inFlight,
    renew,
    keepAlive(ctx, everyMs = LEASE_RENEW_MS, onLost) {
      const timer = setInterval(() => ctx.waitUntil(renew().then((held) => { if (!held) onLost?.(); })), everyMs);
      return () => clearInterval(timer);
    },
    async release(usage) {
      if (released) return;
      released = true;
      await Promise.all([
        twice(() => releaseKey(usage)),
        guardId ? twice(() => guardStub(env, req.model.id).release(guardId)) : undefined,
      ]);
    },
  };
}
