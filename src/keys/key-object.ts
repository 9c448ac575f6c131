// KeyObject: one Durable Object per gateway key. It is the key's single source of truth — its record,
// its in-flight leases and its usage ledger — so authentication, the concurrency check, the budget check
// and the slot all happen in one atomic call, and a revoked key is refused on the very next request.
// It also holds the key's blocks of upstream slots (src/limiter/block.ts), so that one call admits a
// request against both the key's limit and an upstream account's, one call moves a failed attempt to its
// next account or model (next()), and one call releases it.
import { DurableObject } from "cloudflare:workers";
import { constantTimeEqual, unseal } from "../auth/crypto.ts";
import { verifyGlmJwt, type Credential } from "../auth/credentials.ts";
import { keySealingSecret, readConfig } from "../config.ts";
import { Codes } from "../errors.ts";
import { log } from "../shared/log.ts";
import { UpstreamBlock, type Verdict } from "../limiter/block.ts";
import type { CircuitConfig, Pool } from "../limiter/pools.ts";
import { LEASE_TTL_MS, LeaseTable } from "../limiter/leases.ts";
import { Ledger, utcDay, type UsageRecord } from "../usage/ledger.ts";
import type { UsageReport, UsageRow } from "../usage/schema.ts";
import { rollupStub } from "../usage/rollup.ts";
import { RollupOutbox } from "../usage/rollup-outbox.ts";
import { ZERO_TOTALS } from "../usage/report.ts";
import { mintBrowserToken, verifyBrowserToken } from "../auth/browser-token.ts";
import type { KeyDetail, KeyStatus, PublicKey } from "./schema.ts";
import type { Caller, KeyRecord, KeySettings } from "./types.ts";
import { toCaller, toPublic } from "./types.ts";

export type Denial = { ok: false; status: 401 | 403 | 429 | 503; code: string; message: string; retryAfter?: number };
export type AuthResult = { ok: true; caller: Caller } | Denial;

/** Refused or still waiting for upstream capacity (the key's own limit was not the obstacle). */
export interface UpstreamWait {
  /** The accounts' limits for the model, summed. */
  limit: number;
  /** Set while the request waits (or asked to keep it): the key slot it keeps, and its place in a guard's line. */
  leaseId?: string;
  ticket?: string;
  ticketPool?: string;
}

export type KeyAcquireResult =
  | { ok: true; caller: Caller; leaseId: string; limit: number; inFlight: number; pool: string; account: string }
  | (Denial & { limit?: number; inFlight?: number; ticket?: string; upstream?: UpstreamWait });

export interface KeyAcquireRequest {
  cred: Credential;
  model: string;
  /** The model's in-flight limit for each tier, from the catalog. */
  limits: Record<string, number>;
  /** The model's upstream pools over every account, each with its share of the account's tier limit. */
  pools: Pool[];
  /** Accounts this attempt should not use (where the request's previous attempt failed). */
  avoid?: string[];
  circuit?: CircuitConfig;
  origin?: string | null;
  /** Waiting in the key's line: the ticket of an earlier answer, and how long this call may park. */
  wait?: { ticket?: string; waitMs?: number };
  /** Set on calls after a "waiting for upstream" answer: the key slot the request keeps and its guard ticket. */
  held?: { leaseId: string; ticket?: string; ticketPool?: string };
  /** Keep the key slot when no upstream slot is free (a retry that backs off and asks again). */
  keep?: boolean;
  /** The request's worst-case cost and tokens, held against the key's daily budget while it is in flight. */
  reserve?: Reservation;
}

/** What a request may cost at most: its prompt (estimated) and all of its allowed output. */
export interface Reservation {
  cost_nano: number;
  tokens: number;
}

/** What renew() needs to take a lost lease again. */
export interface Retake {
  model: string;
  limits: Record<string, number>;
  /** The pool the request's upstream slot is at, and that pool's limit. */
  pool: string;
  poolLimit: number;
}

function keyLimit(caller: Pick<KeyRecord, "tier" | "max_concurrency">, limits: Record<string, number>): number {
  const tierLimit = limits[caller.tier] ?? 0;
  return caller.max_concurrency === null ? tierLimit : Math.min(tierLimit, caller.max_concurrency);
}

/** A reservation without a lease older than this was left by a request that was not admitted. */
const RESERVATION_GRACE_MS = 10_000;

function emptyReport(): UsageReport {
  return { totals: { ...ZERO_TOTALS }, by_day: [], by_model: [] };
}

function secondsToUtcMidnight(now: number): number {
  const next = new Date(now);
  next.setUTCHours(24, 0, 0, 0);
  return Math.max(1, Math.ceil((next.getTime() - now) / 1000));
}

export class KeyObject extends DurableObject<Env> {
  /**
   * The key's tables (leases, upstream slots, ledger, reservations), created on first use by a key that
   * exists: an object asked about a key that was never created answers "no such key" without writing a
   * thing (no tables, no stored state).
   */
  private parts: { leases: LeaseTable; block: UpstreamBlock; ledger: Ledger; outbox: RollupOutbox } | undefined;
  private secret: string | undefined;
  /** Lifetime of the key's leases and of its block's slots at the guard; tests shorten it. */
  ttlMs = LEASE_TTL_MS;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
  }

  private tables(): { leases: LeaseTable; block: UpstreamBlock; ledger: Ledger; outbox: RollupOutbox } {
    if (!this.parts) {
      const { storage } = this.ctx;
      const leases = new LeaseTable(storage);
      const block = new UpstreamBlock(
        storage.sql,
        leases,
        (pool) => this.env.GUARD.get(this.env.GUARD.idFromName(pool)),
        () => this.ttlMs,
        () => this.stored?.id ?? "",
      );
      // Worst-case costs of the requests in flight, so parallel requests cannot overshoot a budget together.
      storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS reservations (lease TEXT PRIMARY KEY, cost_nano INTEGER NOT NULL, tokens INTEGER " +
          "NOT NULL, at INTEGER NOT NULL)",
      );
      const ledger = new Ledger(storage.sql);
      this.parts = { leases, block, ledger, outbox: new RollupOutbox(storage.sql) };
    }
    return this.parts;
  }

  private get leases(): LeaseTable {
    return this.tables().leases;
  }

  private get block(): UpstreamBlock {
    return this.tables().block;
  }

  private get ledger(): Ledger {
    return this.tables().ledger;
  }

  private get outbox(): RollupOutbox {
    return this.tables().outbox;
  }

  private get stored(): KeyRecord | undefined {
    return this.ctx.storage.kv.get<KeyRecord>("record");
  }

  async init(record: KeyRecord): Promise<void> {
    if (this.stored) throw new Error("key already exists");
    this.ctx.storage.kv.put("record", record);
    this.tables();
    // Daily housekeeping of the ledger rides on the lease alarm; make sure one exists.
    await this.ctx.storage.setAlarm(Date.now() + 86_400_000);
  }

  info(): KeyDetail | null {
    const r = this.stored;
    return r ? { ...toPublic(r), in_flight: this.leases.inFlightByModel() } : null;
  }

  /** What the operator console shows for a key: settings, requests in flight, last use, today's spend. */
  status(): KeyStatus | null {
    const r = this.stored;
    if (!r) return null;
    const last = this.ledger.lastUsed();
    const today = this.ledger.day(utcDay(Date.now()));
    return {
      ...toPublic(r),
      in_flight: this.leases.inFlightByModel(),
      last_used_at: last === null ? null : new Date(last).toISOString(),
      today: { cost_cny: today.cost_nano / 1e9, tokens: today.tokens },
    };
  }

  async update(patch: Partial<KeySettings>): Promise<PublicKey | null> {
    const r = this.stored;
    if (!r || r.revoked_at) return null;
    const next: KeyRecord = { ...r, ...patch, updated_at: new Date().toISOString() };
    this.ctx.storage.kv.put("record", next);
    if (next.name !== r.name) {
      // The roll-up lists keys by name: this month's rows go again, with the new one.
      const now = Date.now();
      this.outbox.markSince(utcDay(now).slice(0, 8) + "01", now);
      await this.rollupSoon();
    }
    return toPublic(next);
  }

  /** Revokes the key: every later call on this object is refused. Usage records are kept for billing. */
  revoke(): PublicKey | null {
    const r = this.stored;
    if (!r) return null;
    const next: KeyRecord = { ...r, revoked_at: r.revoked_at ?? new Date().toISOString() };
    this.ctx.storage.kv.put("record", next);
    return toPublic(next);
  }

  /** Refuses every browser token minted until now; the key itself, and tokens minted later, keep working. */
  revokeTokens(): PublicKey | null {
    const r = this.stored;
    if (!r || r.revoked_at) return null;
    const next: KeyRecord = {
      ...r,
      tokens_valid_after: Math.floor(Date.now() / 1000),
      updated_at: new Date().toISOString(),
    };
    this.ctx.storage.kv.put("record", next);
    return toPublic(next);
  }

  setWebhookSecret(sealed: string): boolean {
    const r = this.stored;
    if (!r || r.revoked_at) return false;
    this.ctx.storage.kv.put("record", { ...r, webhook_secret_sealed: sealed, updated_at: new Date().toISOString() });
    return true;
  }

  webhookSecretSealed(): string | null {
    return this.stored?.webhook_secret_sealed ?? null;
  }

  private async plainSecret(r: KeyRecord): Promise<string> {
    this.secret ??= await unseal(keySealingSecret(this.env), r.secret_sealed);
    return this.secret;
  }

  async authenticate(cred: Credential, origin?: string | null): Promise<AuthResult> {
    const r = this.stored;
    if (!r || r.id !== cred.keyId)
      return { ok: false, status: 401, code: Codes.authFailed, message: "authentication failed: unknown API key" };
    if (r.revoked_at)
      return {
        ok: false,
        status: 401,
        code: Codes.authFailed,
        message: "authentication failed: this API key has been revoked",
      };
    if (cred.kind === "internal") return { ok: true, caller: toCaller(r) };
    if (cred.kind === "key") {
      if (!constantTimeEqual(cred.secretHash, r.secret_hash)) {
        return {
          ok: false,
          status: 401,
          code: Codes.authFailed,
          message: "authentication failed: wrong API key secret",
        };
      }
      return { ok: true, caller: toCaller(r) };
    }
    const secret = await this.plainSecret(r);
    if (cred.kind === "jwt") {
      const bad = await verifyGlmJwt(cred.token, secret);
      return bad ? { ok: false, status: 401, ...bad } : { ok: true, caller: toCaller(r) };
    }
    const token = await verifyBrowserToken(cred.token, secret, origin ?? null);
    if ("code" in token) return { ok: false, status: token.status, code: token.code, message: token.message };
    // "Revoke all tokens": a token minted in or before the second of the revocation is refused.
    if (r.tokens_valid_after != null && token.iat <= r.tokens_valid_after) {
      return {
        ok: false,
        status: 401,
        code: Codes.tokenVerifyFailed,
        message: "token revoked: the key's browser tokens were revoked",
      };
    }
    return { ok: true, caller: { ...toCaller(r), token } };
  }

  /**
   * Authenticates, checks the budget and takes the key's slot for the model and an upstream slot from the
   * key's block, in one call. A request that must wait for the upstream capacity keeps its key slot: the
   * answer carries it (`upstream.leaseId`) and the caller calls again with it in `held`, which renews it.
   */
  async acquire(req: KeyAcquireRequest): Promise<KeyAcquireResult> {
    // The lease's id is chosen first: the budget reservation made at the check is filed under it.
    const newLease = crypto.randomUUID();
    const admitted = await this.admit(req, req.held ? undefined : newLease);
    if (!admitted.ok) {
      if (req.held)
        this.free(
          req.held.leaseId,
          undefined,
          req.held.ticket && req.held.ticketPool ? { pool: req.held.ticketPool, ticket: req.held.ticket } : undefined,
        );
      return admitted;
    }
    const caller = admitted.caller;
    const limit = keyLimit(caller, req.limits);
    let leaseId: string;
    let inFlight: number;
    if (req.held && this.leases.renew(req.held.leaseId, this.ttlMs)) {
      leaseId = req.held.leaseId;
      inFlight = this.leases.count(req.model);
    } else {
      const got = await this.leases.acquire(req.model, limit, { ...req.wait, ttlMs: this.ttlMs, id: newLease });
      if (!got.granted) {
        this.unreserve(newLease);
        return {
          ok: false,
          status: 429,
          code: Codes.concurrency,
          retryAfter: 1,
          limit,
          inFlight: got.inFlight,
          ...(got.ticket ? { ticket: got.ticket } : {}),
          message:
            `too many requests in flight for ${req.model}: the limit for this key is ${limit} (tier ` +
            `${caller.tier}${caller.max_concurrency !== null ? `, max_concurrency ${caller.max_concurrency}` : ""}); ` +
            `retry after a request finishes`,
        };
      }
      leaseId = got.leaseId;
      inFlight = got.inFlight;
    }
    let up;
    try {
      up = await this.block.take({
        model: req.model,
        leaseId,
        pools: req.pools,
        keyLimit: limit,
        share: caller.max_upstream_share,
        circuit: req.circuit,
        ...(req.avoid ? { avoid: req.avoid } : {}),
        ...(req.held?.ticket && req.held.ticketPool
          ? { ticket: req.held.ticket, ticketPool: req.held.ticketPool }
          : {}),
        ...(req.wait?.waitMs !== undefined ? { waitMs: req.wait.waitMs } : {}),
      });
    } catch (err) {
      // The guard is unreachable: nothing is admitted, and the key slot is not kept.
      this.free(leaseId);
      throw err;
    }
    if (up.ok) return { ok: true, caller, leaseId, limit, inFlight, pool: up.pool, account: up.account };
    const keep = up.ticket !== undefined || req.keep === true;
    if (!keep) this.free(leaseId);
    const upstream: UpstreamWait = {
      limit: up.limit,
      ...(keep ? { leaseId } : {}),
      ...(up.ticket && up.ticketPool ? { ticket: up.ticket, ticketPool: up.ticketPool } : {}),
    };
    if (up.openUntil !== undefined) {
      const retryAfter = Math.max(1, Math.ceil((up.openUntil - Date.now()) / 1000));
      return {
        ok: false,
        status: 503,
        code: Codes.unavailable,
        retryAfter,
        limit,
        inFlight,
        upstream,
        message: `every upstream account for ${req.model} is failing (circuit open); retry in ${retryAfter} s`,
      };
    }
    return {
      ok: false,
      status: 429,
      code: Codes.concurrency,
      retryAfter: 1,
      limit,
      inFlight,
      upstream,
      message: `the gateway's upstream capacity for ${req.model} is full (${up.limit} in flight); retry shortly`,
    };
  }

  /**
   * Ends one attempt of a request — records its usage, and gives its upstream slot back with how it went
   * (the account's circuit counts it) — and takes the slots for the next attempt, in one call: the same key
   * slot for the same model (so another request of the key cannot take it in between), a new one for a
   * fallback model. Answers like acquire(); refused with `keep`, the key slot stays held for a later call.
   */
  async next(
    leaseId: string,
    usage: UsageRecord | undefined,
    verdict: Verdict,
    req: KeyAcquireRequest,
  ): Promise<KeyAcquireResult> {
    if (!this.stored) return this.acquire(req);
    const recorded = usage !== undefined && this.recordSafely(usage);
    this.block.release(leaseId, verdict);
    let next: KeyAcquireResult;
    if (this.leases.modelOf(leaseId) === req.model) next = await this.acquire({ ...req, held: { leaseId } });
    else {
      this.free(leaseId);
      next = await this.acquire(req);
    }
    // After the slots moved: the roll-up never stands between an attempt and the next.
    if (recorded) await this.rollupSoon();
    return next;
  }

  /**
   * The checks that refuse a caller outright: credential, token scope, budget. For a key with a budget the
   * request's worst case is reserved here, in the same synchronous step as the check, under `reserveAs`:
   * the day's spend plus every reservation in flight never exceeds the budget, however many requests run
   * in parallel. The release settles it to the real cost.
   */
  private async admit(req: KeyAcquireRequest, reserveAs: string | undefined): Promise<AuthResult> {
    const auth = await this.authenticate(req.cred, req.origin);
    if (!auth.ok) return auth;
    const caller = auth.caller;
    if (caller.token?.models && !caller.token.models.includes(req.model)) {
      return { ok: false, status: 403, code: Codes.illegalField, message: `this token may not use model ${req.model}` };
    }
    // The day's spend is read only for a key that has a budget: most requests skip the query.
    if (caller.daily_budget_cny === null && caller.daily_token_limit === null) return auth;
    const now = Date.now();
    const spent = this.ledger.day(utcDay(now));
    const held = this.reserved(now);
    const want = reserveAs && req.reserve ? req.reserve : { cost_nano: 0, tokens: 0 };
    const budgetNano = caller.daily_budget_cny === null ? null : Math.round(caller.daily_budget_cny * 1e9);
    const overCost = budgetNano !== null && spent.cost_nano + held.cost_nano + want.cost_nano > budgetNano;
    const overTokens =
      caller.daily_token_limit !== null && spent.tokens + held.tokens + want.tokens > caller.daily_token_limit;
    if (overCost || overTokens) {
      const usedUp = budgetNano !== null ? spent.cost_nano >= budgetNano : spent.tokens >= caller.daily_token_limit!;
      const retryAfter = usedUp ? secondsToUtcMidnight(now) : 1;
      const reset = new Date(now + secondsToUtcMidnight(now) * 1000).toISOString().slice(0, 10) + "T00:00:00Z";
      const what = overCost ? "budget" : "token limit";
      return {
        ok: false,
        status: 429,
        code: Codes.usageCap,
        retryAfter,
        message: usedUp
          ? `daily ${what} of this key is used up; it resets at ${reset}`
          : `this request could exceed the key's daily ${what}: requests in flight and this one's maximum (its ` +
            `prompt and max_tokens) ` +
            `would pass it; lower max_tokens, or retry when requests in flight have finished (it resets at ${reset})`,
      };
    }
    if (reserveAs && req.reserve) {
      this.ctx.storage.sql.exec(
        "INSERT OR REPLACE INTO reservations (lease, cost_nano, tokens, at) VALUES (?, ?, ?, ?)",
        reserveAs,
        Math.max(0, Math.round(want.cost_nano)),
        Math.max(0, Math.round(want.tokens)),
        now,
      );
    }
    return auth;
  }

  /** Reservations of requests still in flight (a reservation whose lease is gone has lapsed with it). */
  private reserved(now: number): Reservation {
    // A reservation is made a moment before its lease is taken; older ones without a lease are stale.
    this.ctx.storage.sql.exec(
      "DELETE FROM reservations WHERE at < ? AND lease NOT IN (SELECT id FROM leases)",
      now - RESERVATION_GRACE_MS,
    );
    const r = this.ctx.storage.sql
      .exec<{ c: number | null; t: number | null }>("SELECT SUM(cost_nano) AS c, SUM(tokens) AS t FROM reservations")
      .one();
    return { cost_nano: r.c ?? 0, tokens: r.t ?? 0 };
  }

  private unreserve(leaseId: string): void {
    this.ctx.storage.sql.exec("DELETE FROM reservations WHERE lease = ?", leaseId);
  }

  /** Mints a browser token for an authenticated caller (not for a token: tokens cannot mint tokens). */
  async mintToken(
    cred: Credential,
    claims: { ttlSeconds: number; models: string[] | null; origin: string | null },
  ): Promise<{ ok: true; token: string; expires_at: string } | Denial> {
    // Checked first: a token bound to an origin would otherwise fail authentication with a misleading reason.
    if (cred.kind === "token")
      return { ok: false, status: 403, code: Codes.authFailed, message: "a browser token cannot mint tokens" };
    const auth = await this.authenticate(cred);
    if (!auth.ok) return auth;
    const r = this.stored!;
    return { ok: true, ...(await mintBrowserToken(r.id, await this.plainSecret(r), claims)) };
  }

  leaveQueue(model: string, ticket: string): void {
    if (!this.stored) return;
    this.leases.leaveQueue(model, ticket);
  }

  /**
   * Renews a request's lease and, when due, the key's block at the guard. A lease that was lost (it expired,
   * or its upstream slot lapsed) is taken again when `retake` says how, ahead of any line: the request is
   * already at GLM. False when the request holds no slots and could not take them again: it must end.
   */
  async renew(leaseId: string, retake?: Retake): Promise<boolean> {
    if (!this.stored) return false;
    if (!this.leases.renew(leaseId, this.ttlMs)) {
      const r = this.stored;
      if (!retake || !r || r.revoked_at) return false;
      const got = await this.leases.acquire(retake.model, keyLimit(r, retake.limits), {
        id: leaseId,
        jump: true,
        ttlMs: this.ttlMs,
      });
      if (!got.granted) return false;
    }
    const pool = this.block.poolOf(leaseId) ?? retake?.pool;
    if (pool === undefined) {
      this.free(leaseId);
      return false;
    }
    try {
      await this.block.renewIfDue(pool);
      if (await this.block.ensure(pool, leaseId, retake?.poolLimit)) return true;
    } catch (err) {
      // The guard is unreachable: the request keeps its slot until the slot's expiry (the guard counts it
      // that long) and the next renewal tries again; past it, the request must end.
      log({ level: "warn", msg: "upstream block renewal failed", pool, error: String(err) });
      this.block.dropLapsed();
      if (this.block.holds(leaseId)) return true;
    }
    this.free(leaseId);
    return false;
  }

  /**
   * Ends a request: frees its key slot and its upstream slot (back to the key's block, with how the attempt
   * went for the account's circuit), and records its usage when it reached upstream. `leave` gives up its
   * place in a guard's line (a request that stopped waiting). Idempotent for the slots; the slots are freed
   * even if recording fails.
   */
  async release(
    leaseId: string,
    usage?: UsageRecord,
    leave?: { pool: string; ticket: string },
    verdict: Verdict = "neutral",
  ): Promise<{ released: boolean; recorded: boolean }> {
    const done = this.free(leaseId, usage, leave, verdict);
    if (usage && done.recorded) await this.rollupSoon();
    return done;
  }

  /** release() without waiting for anything: what the object's own paths use. */
  private free(
    leaseId: string,
    usage?: UsageRecord,
    leave?: { pool: string; ticket: string },
    verdict: Verdict = "neutral",
  ): { released: boolean; recorded: boolean } {
    if (!this.stored) return { released: false, recorded: usage === undefined };
    const released = this.leases.release(leaseId);
    this.unreserve(leaseId);
    this.block.release(leaseId, verdict);
    if (leave) this.block.leaveQueue(leave.pool, leave.ticket);
    return { released, recorded: usage === undefined || this.recordSafely(usage) };
  }

  private recordSafely(usage: UsageRecord): boolean {
    try {
      // The roll-up's mark is set in the same synchronous step as the record: no change goes unsent.
      if (this.ledger.record(usage)) this.outbox.mark(utcDay(usage.ts), usage.model, Date.now());
      return true;
    } catch (err) {
      log({ level: "error", msg: "recording usage failed; the slot was freed", error: String(err) });
      return false;
    }
  }

  /** The key's blocks of upstream slots per model (slots held, and how many carry a request). */
  upstreamBlocks(): Record<string, { size: number; used: number }> {
    return this.stored ? this.block.sizes() : {};
  }

  async record(usage: UsageRecord): Promise<boolean> {
    if (!this.stored) return false;
    const recorded = this.ledger.record(usage);
    if (recorded) {
      this.outbox.mark(utcDay(usage.ts), usage.model, Date.now());
      await this.rollupSoon();
    }
    return recorded;
  }

  /**
   * Makes sure the changed rows reach the roll-up: from the alarm, one delay after the first unsent change
   * (so a busy key sends one batch per delay, not one call per request), or at once when the delay is 0.
   */
  private async rollupSoon(): Promise<void> {
    const delay = readConfig(this.env).rollupFlushMs;
    if (delay === 0) return this.flushRollup(0);
    const due = this.outbox.dueAt(delay);
    if (due !== null) await this.leases.ensureAlarm(due);
  }

  /** Sends the changed rows' totals to the roll-up when they are due; on failure they stay marked. */
  private async flushRollup(delay: number): Promise<void> {
    const due = this.outbox.dueAt(delay);
    if (due === null) return;
    if (due > Date.now()) return this.leases.ensureAlarm(due);
    const r = this.stored!;
    try {
      await this.outbox.flush((month, rows) => rollupStub(this.env, month).put(r.id, r.name, rows));
    } catch (err) {
      log({ level: "warn", msg: "usage roll-up flush failed; retrying from the alarm", error: String(err) });
    }
    const next = this.outbox.dueAt(Math.max(delay, 1000));
    if (next !== null) await this.leases.ensureAlarm(next);
  }

  usage(from: string, to: string): UsageReport {
    return this.stored ? this.ledger.report(from, to) : emptyReport();
  }

  usageRows(from: string, to: string): UsageRow[] {
    return this.stored ? this.ledger.rows(from, to) : [];
  }

  recentUsage(limit: number): UsageRecord[] {
    return this.stored ? this.ledger.recent(limit) : [];
  }

  override async alarm(): Promise<void> {
    if (!this.stored) return;
    await this.leases.expire();
    await this.block.maintain();
    this.ledger.prune(Date.now());
    await this.flushRollup(readConfig(this.env).rollupFlushMs);
    // Keep a daily alarm for ledger housekeeping when no lease needs an earlier one.
    const next = await this.ctx.storage.getAlarm();
    if (next === null) await this.ctx.storage.setAlarm(Date.now() + 86_400_000);
  }
}
