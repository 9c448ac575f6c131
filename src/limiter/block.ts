// A key's blocks of upstream slots, one per pool (an upstream account and model, or a shard of it: see
// pools.ts). Asking the pool's UpstreamGuard on every request would cost a second
// Durable Object round trip per admission and another per release; instead the key's object leases a few
// slots at a time from the guard and hands them out itself, so in the steady state a request is admitted and
// released by its key's object alone. The guard counts every slot of every block, so the account-wide bound
// on requests in flight at GLM stays exact: a request reaches GLM only on a slot of its key's block.
//
// Sizing: a block is the key's peak of requests in flight for the model over the last IDLE_RETURN_MS, plus a
// headroom of 1 + peak/4, at most HEADROOM_MAX, never beyond the key's own limit; the guard never grants
// beyond the account's limit, and grants headroom only while at most half the account is leased. The
// headroom lets the next request in before the previous one has let go, and grows with the key's traffic so
// a busy key's arrivals rarely find the block empty; following the recent peak rather than the count this
// instant keeps a key whose load swings from trading slots with the guard at every swing. Free slots beyond
// twice the headroom go back to the guard at once (hysteresis), and a key with nothing in flight for the
// model gives its block back after IDLE_RETURN_MS. When the guard says the account is tight (over half
// leased, or callers waiting) there is no headroom and no peak: every slot not carrying a request goes back
// at once, so an idle slot in one key's block does not turn another key away for long. Requests of one key
// arriving together ask the guard once, for all of them.
//
// Fair share: who gets the account's slots when it is full is decided by the guard's line, which takes turns
// between keys (src/limiter/leases.ts). So while the pool is tight a slot this key frees is not handed to its
// own requests waiting in that line: it goes back to the guard, whose line decides (the key's requests may
// well get it back there). A key with max_upstream_share s asks the guard with a cap of max(1, floor(s x the
// pool's limit)) slots, and keeps no idle slot beyond that cap (neither headroom nor its recent peak): above
// its share its block holds only slots in use, so idle slots in it never keep another key waiting.
//
// Lifetime: every slot is a lease at the guard with an expiry. The key renews its block when a request
// renews its own lease and the block was last renewed over a third of its lifetime ago, and from its alarm,
// which is set before the block would expire. If the guard answers that slots are gone (they expired there),
// the requests they carried take new slots ahead of the guard's line — they are already at GLM — and any
// that cannot are left without a slot: their next renewal tries once more and otherwise tells the Worker to
// cancel the upstream call. Slots whose renewal failed until their expiry are dropped the same way. Block
// state lives in SQLite, so it survives the object's eviction; the waiting lines and what the guards last
// said (tight, free slots, circuit) are kept in memory.
//
// Several accounts: a request takes a free slot of its key's blocks first (no round trip), at the account
// with the most free capacity as the guards last reported it (ties by weight); otherwise it asks the guards
// in that order, and is refused or queued only when every one is full. Every guard answer carries its free
// count and circuit state, so choosing costs nothing extra. A failed attempt is reported to its pool's
// guard (with the successes seen there since the last report) and moves its circuit; an account whose
// circuit is open is skipped until the guard's cooldown has passed, and then only the guard's probe goes.
// Slots of the block are handed out only while the pool's circuit is closed as last heard: once a guard
// answer says open or half-open, the key gives its idle slots of that pool back and every slot freed there
// goes back too (the probe's included), so neither a slot left over from before the circuit opened nor the
// probe's own slot lets a second request through before the probe's verdict. A 5xx answer at the model's
// last usable account (no other account's circuit closed as last heard) does not count toward opening: with
// nowhere to fail over, opening would only turn GLM's errors into 503s; refused connections and timeouts do.
import { log } from "../shared/log.ts";
import type { BlockAnswer, CircuitView, UpstreamGuard } from "./guard.ts";
import { Lines, type LeaseTable } from "./leases.ts";
import type { CircuitConfig, Pool } from "./pools.ts";

export const HEADROOM_MAX = 8;
/** A key with nothing in flight for a pool gives its block back after this long. */
export const IDLE_RETURN_MS = 2_000;
/** A slot this close to its expiry is not handed out: the guard may reclaim it before it is renewed. */
const EXPIRY_MARGIN_MS = 1_000;
/** Until a request brings the configured values (an object that just started). */
const DEFAULT_CIRCUIT: CircuitConfig = { failures: 3, cooldownMs: 30_000 };

type GuardStub = DurableObjectStub<UpstreamGuard>;

/**
 * How an upstream attempt went, for the account's circuit: "fail" — unreachable or no headers in time;
 * "error" — GLM answered with a 5xx (a failure, except at the model's last usable account); "neutral" says
 * nothing (the caller left, the account was busy).
 */
export type Verdict = "ok" | "fail" | "error" | "neutral";

interface Waiter {
  leaseId: string;
  lastSeen: number;
  wake?: () => void;
}

/** What the pool's guard last said. */
interface Known {
  free: number;
  circuit: CircuitView;
  at: number;
}

export interface TakeRequest {
  model: string;
  /** The request's lease in the key's own table. */
  leaseId: string;
  /** The model's pools over every account. */
  pools: Pool[];
  /** Accounts not to use for this request (the one its previous attempt failed at). */
  avoid?: string[];
  /** The key's own limit for the model: a block never grows beyond what the key may use. */
  keyLimit: number;
  /** The key's max_upstream_share: the fraction of a pool's limit it holds at most while other keys wait. */
  share?: number | null;
  /** The guard's ticket from an earlier "waiting" answer, and the pool whose line it is in. */
  ticket?: string;
  ticketPool?: string;
  /** How long this call may park waiting for a slot (the guard caps it at WAIT_SLICE_MS). */
  waitMs?: number;
  circuit?: CircuitConfig;
}

export type TakeResult =
  | { ok: true; pool: string; account: string }
  | {
      ok: false;
      ticket?: string;
      ticketPool?: string;
      inFlight: number;
      limit: number;
      /** Every usable account's circuit is open: when the first may be probed. */
      openUntil?: number;
    };

export const accountOf = (pool: string): string => pool.slice(0, pool.indexOf(":"));
export const modelOf = (pool: string): string => pool.slice(pool.indexOf(":") + 1).split("#")[0]!;

/** The slots a key with this max_upstream_share may hold of a pool while others wait: at least one. */
export const shareCap = (share: number | null | undefined, poolLimit: number): number =>
  share == null ? poolLimit : Math.max(1, Math.floor(share * poolLimit));

export class UpstreamBlock {
  /** This key's requests waiting for an upstream slot, per model, first come first served. */
  private readonly waiters: Lines<Waiter>;
  private readonly tight = new Map<string, boolean>();
  private readonly known = new Map<string, Known>();
  /** Successful attempts per pool since the last report to its guard. */
  private readonly okSince = new Map<string, number>();
  private readonly keyLimits = new Map<string, number>();
  /** The key's max_upstream_share per model, as its last request said. */
  private readonly shares = new Map<string, number | null>();
  /** Per model, its pools over every account, as the key's last request said. */
  private readonly modelPools = new Map<string, Pool[]>();
  /** Per pool, the pools of the same account and model (its shards): reports go to all of them. */
  private readonly siblings = new Map<string, Pool[]>();
  private readonly renewing = new Map<string, Promise<void>>();
  /** A guard call in progress that does not park, per pool, which requests arriving meanwhile wait for. */
  private readonly refills = new Map<string, Promise<void>>();
  /** Requests of this key inside take() per model: the demand a refill asks for. */
  private readonly pending = new Map<string, number>();
  private readonly idleTimers = new Set<string>();
  /** The highest count of this key's requests in flight per pool over the last IDLE_RETURN_MS or so. */
  private readonly peaks = new Map<string, { used: number; at: number }>();
  /** When a request of this key last took or gave back a slot, per pool. */
  private readonly lastActive = new Map<string, number>();
  private circuitConfig = DEFAULT_CIRCUIT;

  constructor(
    private readonly sql: SqlStorage,
    private readonly leases: LeaseTable,
    private readonly guard: (pool: string) => GuardStub,
    private readonly ttlMs: () => number,
    /** The key's id: the owner of its slots at the guards, whose lines take turns by owner. */
    private readonly owner: () => string,
    private readonly now: () => number = Date.now,
  ) {
    this.waiters = new Lines<Waiter>(now);
    // One row per guard slot held; `lease` is the request (a row of the key's leases table) it carries, and
    // `probe` marks the slot a half-open circuit granted as its one probe. The table of the single-account
    // limiter is dropped: its slots were leased from guards no longer used, which reclaim them within a lease.
    sql.exec(
      `DROP TABLE IF EXISTS upstream_slots;
       CREATE TABLE IF NOT EXISTS pool_slots (id TEXT PRIMARY KEY, pool TEXT NOT NULL, model TEXT NOT NULL, lease TEXT,
         expires_at INTEGER NOT NULL, pool_limit INTEGER NOT NULL, probe INTEGER NOT NULL DEFAULT 0);
       CREATE INDEX IF NOT EXISTS pool_slots_pool ON pool_slots (pool, lease);
       CREATE INDEX IF NOT EXISTS pool_slots_model ON pool_slots (model, lease);
       CREATE INDEX IF NOT EXISTS pool_slots_lease ON pool_slots (lease);`,
    );
  }

  /** The pool whose slot the request holds, if it holds one. */
  poolOf(leaseId: string): string | undefined {
    return this.sql.exec<{ pool: string }>("SELECT pool FROM pool_slots WHERE lease = ? LIMIT 1", leaseId).toArray()[0]
      ?.pool;
  }

  holds(leaseId: string): boolean {
    return this.poolOf(leaseId) !== undefined;
  }

  /** Slots leased from the guards per pool (the block sizes), for tests and diagnostics. */
  sizes(): Record<string, { size: number; used: number }> {
    const out: Record<string, { size: number; used: number }> = {};
    for (const r of this.sql.exec<{ pool: string; size: number; used: number }>(
      "SELECT pool, COUNT(*) AS size, COUNT(lease) AS used FROM pool_slots GROUP BY pool",
    )) {
      out[r.pool] = { size: r.size, used: r.used };
    }
    return out;
  }

  /**
   * Gives the request an upstream slot: one free in the blocks, else more from the guards (waiting in a
   * line if asked to). A request that already holds one (handed over while it was away) just gets ok.
   */
  async take(req: TakeRequest): Promise<TakeResult> {
    this.keyLimits.set(req.model, req.keyLimit);
    this.shares.set(req.model, req.share ?? null);
    if (req.circuit) this.circuitConfig = req.circuit;
    this.modelPools.set(req.model, req.pools);
    for (const p of req.pools)
      this.siblings.set(
        p.name,
        req.pools.filter((q) => q.account === p.account),
      );
    this.pending.set(req.model, (this.pending.get(req.model) ?? 0) + 1);
    try {
      return await this.takeOrWait(req);
    } finally {
      this.pending.set(req.model, this.pending.get(req.model)! - 1);
    }
  }

  private async takeOrWait(req: TakeRequest): Promise<TakeResult> {
    const { model, leaseId } = req;
    const served = (): TakeResult | undefined => {
      const pool = this.poolOf(leaseId) ?? this.claimBest(req);
      if (pool === undefined) return undefined;
      this.dropWaiter(model, leaseId);
      // Handed a slot between its calls: its place in a guard's line must not hold up others.
      if (req.ticket && req.ticketPool) this.leaveQueue(req.ticketPool, req.ticket);
      this.notePeak(pool);
      return { ok: true, pool, account: accountOf(pool) };
    };
    let got = served();
    if (got) return got;
    const order = this.order(req);
    if (order.length === 0) {
      // Every account the request may use has its circuit open (or it may use none: avoid).
      return { ok: false, inFlight: 0, limit: 0, ...this.openUntil(req) };
    }
    // When every account is full the request waits in one line: the one it is in already, else the best
    // account's. The others are asked first, without waiting.
    const waitAt = (req.waitMs ?? 0) > 0 ? (order.find((p) => p.name === req.ticketPool) ?? order[0]!) : undefined;
    for (const pool of order.filter((p) => p !== waitAt)) {
      // Another request of this key is asking this guard already: wait for its answer, which asks for this
      // request's slot too, rather than ask alongside it. Asking side by side would let a slot granted to
      // one arrive after the other was refused, leaving it idle while a request was turned away.
      for (let refill = this.refills.get(pool.name); refill; refill = this.refills.get(pool.name)) {
        await refill;
        if ((got = served())) return got;
      }
      if (!this.usable(pool.name)) continue;
      const asked = await this.ask(req, pool, false);
      if (asked.ok) return asked;
    }
    if ((got = served())) return got;
    if (waitAt) {
      const asked = await this.ask(req, waitAt, true);
      return asked.ok || asked.ticket ? asked : { ...asked, ...this.openUntil(req) };
    }
    const limit = req.pools.reduce((n, p) => n + p.limit, 0);
    const free = req.pools.reduce((n, p) => n + (this.known.get(p.name)?.free ?? 0), 0);
    return { ok: false, inFlight: Math.max(0, limit - free), limit, ...this.openUntil(req) };
  }

  /**
   * When every pool the request may use is refused by its circuit (open, or half-open with the probe out),
   * the earliest time one may be probed: the refusal is then a 503 with Retry-After, not "full".
   */
  private openUntil(req: TakeRequest): { openUntil?: number } {
    const avoid = new Set(req.avoid ?? []);
    const mayUse = req.pools.filter((p) => !avoid.has(p.account));
    if (!mayUse.every((p) => this.heardOpen(p.name))) return {};
    const retryAt = Math.min(...mayUse.map((p) => this.known.get(p.name)?.circuit.retryAt ?? Infinity));
    return Number.isFinite(retryAt) ? { openUntil: retryAt } : {};
  }

  /** Asks the pool's guard for this request's slot, and for the demand of the key's other requests. */
  private async ask(req: TakeRequest, pool: Pool, parks: boolean): Promise<TakeResult> {
    const { model, leaseId } = req;
    const waiter = parks ? this.enqueue(model, leaseId) : undefined;
    const demand = this.pending.get(model) ?? 1;
    const call = this.guard(pool.name).take(pool.name, pool.limit, {
      need: 1,
      more: demand - 1,
      extra: this.headroom(pool.name, this.used(pool.name) + demand),
      ticket: req.ticketPool === pool.name ? req.ticket : undefined,
      waitMs: parks ? req.waitMs : 0,
      ttlMs: this.ttlMs(),
      owner: this.owner(),
      cap: shareCap(req.share, pool.limit),
    });
    if (parks) return this.answer(req, pool, call, waiter);
    let done!: () => void;
    this.refills.set(pool.name, new Promise<void>((resolve) => (done = resolve)));
    try {
      return await this.answer(req, pool, call, undefined);
    } finally {
      this.refills.delete(pool.name);
      done();
    }
  }

  private async answer(
    req: TakeRequest,
    pool: Pool,
    call: ReturnType<GuardStub["take"]>,
    waiter: Waiter | undefined,
  ): Promise<TakeResult> {
    const { model, leaseId } = req;
    let got;
    if (waiter) {
      // A slot freed in this key's blocks while the guard call is parked is handed to this key's first
      // waiter; a waiter served that way stops waiting, and whatever the guard answers later joins the block.
      const handed = new Promise<null>((resolve) => (waiter.wake = () => resolve(null)));
      try {
        got = await Promise.race([call, handed]);
      } finally {
        waiter.wake = undefined;
      }
      if (got === null) {
        call.then(
          (late) => {
            this.learn(pool.name, late);
            if (late.granted) {
              this.add(pool.name, late.leaseIds, late.expiresAt, pool.limit, undefined, late.probe);
              // Nobody carries the probe: the guard lets the next caller probe instead.
              if (late.probe) this.report(pool.name, "neutral", true);
            } else if (late.ticket) this.leaveQueue(pool.name, late.ticket);
            this.settle(pool.name);
          },
          (err: unknown) =>
            log({ level: "warn", msg: "upstream guard call failed after a slot was handed over", error: String(err) }),
        );
        const held = this.poolOf(leaseId)!;
        return { ok: true, pool: held, account: accountOf(held) };
      }
    } else {
      got = await call;
    }
    this.learn(pool.name, got);
    if (got.granted) {
      const held = this.poolOf(leaseId);
      this.add(pool.name, got.leaseIds, got.expiresAt, pool.limit, held ? undefined : leaseId, got.probe);
      if (got.probe && held) this.report(pool.name, "neutral", true);
      this.dropWaiter(model, leaseId);
      this.notePeak(pool.name);
      // The others of this key waiting for this answer are about to take the rest.
      this.settle(pool.name, (this.pending.get(model) ?? 1) - 1);
      await this.schedule();
      const now = held ?? pool.name;
      return { ok: true, pool: now, account: accountOf(now) };
    }
    const held = this.poolOf(leaseId);
    if (held) {
      if (got.ticket) this.leaveQueue(pool.name, got.ticket);
      this.dropWaiter(model, leaseId);
      return { ok: true, pool: held, account: accountOf(held) };
    }
    if (!got.ticket) this.dropWaiter(model, leaseId);
    return {
      ok: false,
      inFlight: got.inFlight,
      limit: got.limit,
      ...(got.ticket ? { ticket: got.ticket, ticketPool: pool.name } : {}),
    };
  }

  /** Remembers what a guard said about its pool; a circuit not closed takes the pool's idle slots back. */
  private learn(pool: string, a: BlockAnswer): void {
    this.tight.set(pool, a.tight);
    this.known.set(pool, { free: a.free, circuit: a.circuit, at: this.now() });
    if (a.circuit.state !== "closed") void this.giveBack(pool, this.freeIds(pool));
  }

  /**
   * Whether the block's own slots of a pool may be handed out: only while its circuit is closed as last
   * heard. Open or half-open, a request must ask the guard, which refuses it or makes it the one probe; so
   * must the first request after this object started (the block outlives it, what the guard said does not).
   */
  private claimable(pool: string): boolean {
    return this.known.get(pool)?.circuit.state === "closed";
  }

  /** The pool's circuit is open or half-open as last heard (a pool not heard of counts as closed). */
  private heardOpen(pool: string): boolean {
    const state = this.known.get(pool)?.circuit.state;
    return state !== undefined && state !== "closed";
  }

  /**
   * Whether a pool may be used: its circuit is closed as last heard, or its cooldown has passed (the guard
   * then grants one probe, or says the probe is out — either way this object learns the state again).
   */
  private usable(pool: string): boolean {
    const k = this.known.get(pool);
    if (!k || k.circuit.state === "closed") return true;
    return this.now() >= (k.circuit.retryAt ?? k.at + this.circuitConfig.cooldownMs);
  }

  /**
   * The request's usable pools, best first: the account with the most free capacity as the guards last
   * reported it (a pool not heard of yet counts as empty), then the heavier account, then a random shard.
   */
  private order(req: TakeRequest): Pool[] {
    const avoid = new Set(req.avoid ?? []);
    const usable = req.pools.filter((p) => !avoid.has(p.account) && this.usable(p.name));
    const freeOf = (p: Pool) => this.known.get(p.name)?.free ?? p.limit;
    const byAccount = new Map<string, number>();
    for (const p of usable) byAccount.set(p.account, (byAccount.get(p.account) ?? 0) + freeOf(p));
    const shuffle = new Map(usable.map((p) => [p.name, Math.random()]));
    return usable.sort(
      (a, b) =>
        byAccount.get(b.account)! - byAccount.get(a.account)! ||
        b.weight - a.weight ||
        freeOf(b) - freeOf(a) ||
        shuffle.get(a.name)! - shuffle.get(b.name)!,
    );
  }

  /** Puts a free slot of the key's blocks under the request, from the best pool that has one. */
  private claimBest(req: TakeRequest): string | undefined {
    const withFree = new Set(
      this.sql
        .exec<{ pool: string }>(
          "SELECT DISTINCT pool FROM pool_slots WHERE model = ? AND lease IS NULL AND expires_at > ?",
          req.model,
          this.now() + EXPIRY_MARGIN_MS,
        )
        .toArray()
        .map((r) => r.pool),
    );
    if (withFree.size === 0) return undefined;
    for (const p of this.order(req))
      if (withFree.has(p.name) && this.claimable(p.name) && this.claimFree(p.name, req.leaseId)) return p.name;
    return undefined;
  }

  /**
   * For a request already admitted whose slot is gone (its block lapsed at the guard, or its lease was
   * retaken): a free slot of its pool's block, else one from the guard ahead of its line. False if neither.
   */
  async ensure(pool: string, leaseId: string, poolLimit?: number): Promise<boolean> {
    this.dropLapsed();
    if (this.holds(leaseId) || this.claimFree(pool, leaseId)) return true;
    const limit = poolLimit ?? this.poolLimit(pool);
    if (limit === undefined) return false;
    const got = await this.guard(pool).take(pool, limit, {
      need: 1,
      jump: true,
      ttlMs: this.ttlMs(),
      owner: this.owner(),
    });
    this.learn(pool, got);
    if (!got.granted) return false;
    this.add(pool, got.leaseIds, got.expiresAt, limit, leaseId);
    await this.schedule();
    return true;
  }

  /**
   * The request (or one attempt of it) ended: its slot goes back to the block (to a waiter of this key
   * first), surplus to the guard, and how the attempt went is counted for the account's circuit.
   */
  release(leaseId: string, verdict: Verdict = "neutral"): void {
    // Read before the update: RETURNING gives the row as updated, where probe is already 0.
    const rows = this.sql
      .exec<{ pool: string; probe: number }>("SELECT pool, probe FROM pool_slots WHERE lease = ?", leaseId)
      .toArray();
    this.sql.exec("UPDATE pool_slots SET lease = NULL, probe = 0 WHERE lease = ?", leaseId);
    for (const model of this.waiters.names()) this.dropWaiter(model, leaseId);
    for (const r of rows) {
      this.lastActive.set(r.pool, this.now());
      this.report(r.pool, verdict, r.probe === 1);
      this.settle(r.pool);
    }
  }

  /**
   * Successes are only counted here; a failure, and the probe's result, go to the guard at once (off the
   * caller's path), with the successes counted since, so its circuit sees "no success in between".
   */
  private report(pool: string, verdict: Verdict, probe: boolean): void {
    // A 5xx at the model's last usable account shows the account answers: it is counted among the recent
    // failures but does not open the circuit, and as the probe's outcome it closes it.
    const answered = verdict === "error" && this.lastUsable(pool);
    const failed = verdict === "fail" || (verdict === "error" && !answered);
    const ok = (this.okSince.get(pool) ?? 0) + (verdict === "ok" || (answered && probe) ? 1 : 0);
    this.okSince.set(pool, ok);
    if (!failed && !answered && !probe) return;
    this.okSince.set(pool, 0);
    const report = { ok, fail: failed ? 1 : 0, probe, ...(answered ? { errors: 1 } : {}) };
    const to = this.siblings.get(pool) ?? [{ name: pool, limit: this.poolLimit(pool) ?? 0 }];
    for (const p of to) {
      this.guard(p.name)
        .report(p.name, p.limit, report, this.circuitConfig)
        .then((a) => this.learn(p.name, a))
        .catch((err: unknown) =>
          log({
            level: "warn",
            msg: "reporting an upstream attempt to its guard failed",
            pool: p.name,
            error: String(err),
          }),
        );
    }
  }

  /** No other account serving the pool's model has a circuit closed as last heard: nowhere to fail over. */
  private lastUsable(pool: string): boolean {
    const account = accountOf(pool);
    return (this.modelPools.get(modelOf(pool)) ?? []).every((p) => p.account === account || this.heardOpen(p.name));
  }

  /** Gives up a place in a guard's line (the request stopped waiting). */
  leaveQueue(pool: string, ticket: string): void {
    this.guard(pool)
      .leaveQueue(pool, ticket)
      .catch((err: unknown) =>
        log({ level: "warn", msg: "leaving the upstream guard's line failed", error: String(err) }),
      );
  }

  /** Renews the pool's block at its guard if it was last renewed over a third of its lifetime ago. */
  renewIfDue(pool: string): Promise<void> {
    const oldest = this.sql
      .exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM pool_slots WHERE pool = ?", pool)
      .one().t;
    if (oldest === null || oldest - this.now() > (this.ttlMs() * 2) / 3) return Promise.resolve();
    let p = this.renewing.get(pool);
    if (!p) {
      p = this.renewNow(pool).finally(() => this.renewing.delete(pool));
      this.renewing.set(pool, p);
    }
    return p;
  }

  /**
   * Alarm body: frees the slots of requests whose lease expired, gives back blocks of pools with nothing in
   * flight, renews the others, and sets the alarm before the next block would expire.
   */
  async maintain(): Promise<void> {
    this.dropLapsed();
    const orphaned = this.sql
      .exec<{ pool: string }>(
        "UPDATE pool_slots SET lease = NULL, probe = 0 WHERE lease IS NOT NULL AND lease NOT IN (SELECT id FROM " +
          "leases) RETURNING pool",
      )
      .toArray();
    for (const pool of new Set(orphaned.map((r) => r.pool))) this.settle(pool);
    const pools = this.sql.exec<{ pool: string }>("SELECT DISTINCT pool FROM pool_slots").toArray();
    for (const { pool } of pools) {
      if (this.used(pool) === 0) {
        await this.giveBack(pool, this.freeIds(pool));
        continue;
      }
      await this.renewIfDue(pool).catch((err: unknown) =>
        log({ level: "warn", msg: "renewing the upstream block failed; retrying from the alarm", error: String(err) }),
      );
    }
    await this.schedule();
  }

  private async renewNow(pool: string): Promise<void> {
    const ids = this.sql
      .exec<{ id: string }>("SELECT id FROM pool_slots WHERE pool = ?", pool)
      .toArray()
      .map((r) => r.id);
    const limit = this.poolLimit(pool);
    if (ids.length === 0 || limit === undefined) return;
    const got = await this.guard(pool).renewBlock(pool, limit, ids, this.ttlMs(), this.owner());
    this.learn(pool, got);
    this.sql.exec(
      "UPDATE pool_slots SET expires_at = ? WHERE id IN (SELECT value FROM json_each(?))",
      got.expiresAt,
      JSON.stringify(got.alive),
    );
    const alive = new Set(got.alive);
    const gone = ids.filter((id) => !alive.has(id));
    if (gone.length === 0) return;
    // Slots the guard no longer counts. The requests they carried are already at GLM, so they take slots
    // again ahead of the guard's line; those that cannot are left without one and end at their next renewal.
    const stranded = this.sql
      .exec<{ lease: string | null }>(
        "DELETE FROM pool_slots WHERE id IN (SELECT value FROM json_each(?)) RETURNING lease",
        JSON.stringify(gone),
      )
      .toArray()
      .flatMap((r) => (r.lease !== null && this.leases.has(r.lease) ? [r.lease] : []))
      .filter((lease) => !this.claimFree(pool, lease));
    log({
      level: "warn",
      msg: "upstream block slots lapsed at the guard",
      pool,
      gone: gone.length,
      stranded: stranded.length,
    });
    if (stranded.length === 0) return;
    const again = await this.guard(pool).take(pool, limit, {
      need: stranded.length,
      jump: true,
      ttlMs: this.ttlMs(),
      owner: this.owner(),
    });
    if (!again.granted) return;
    again.leaseIds.forEach((id, i) => this.add(pool, [id], again.expiresAt, limit, stranded[i]));
  }

  /**
   * Forgets slots past their expiry by this object's clock: their renewal failed, so the guard has reclaimed
   * them or is about to, and a request on one no longer counts at the guard. Its next renewal (ensure) takes
   * another or ends it.
   */
  dropLapsed(): void {
    this.sql.exec("DELETE FROM pool_slots WHERE expires_at <= ?", this.now());
  }

  /**
   * After a slot came free or slots arrived: serve this key's waiters, then give back the surplus beyond the
   * headroom, keeping `reserve` more for requests of this key about to take one (by default those inside take()
   * and not waiting in a guard's line). While the pool is tight the waiters are not served from the block: the
   * slot goes back to the guard, whose line takes turns between keys.
   */
  private settle(pool: string, reserve?: number): void {
    if (!this.claimable(pool)) {
      // Open or half-open: a free slot here would let a request past the circuit (or past the probe).
      void this.giveBack(pool, this.freeIds(pool));
      return;
    }
    const queue = this.waiters.get(modelOf(pool));
    const tight = this.tight.get(pool) === true;
    reserve ??= Math.max(0, (this.pending.get(modelOf(pool)) ?? 0) - (tight ? queue.length : 0));
    while (!tight && queue.length > 0 && this.usable(pool)) {
      const w = queue[0]!;
      if (!this.holds(w.leaseId) && !this.claimFree(pool, w.leaseId)) break;
      queue.shift();
      w.wake?.();
    }
    const used = this.used(pool);
    const free = this.freeIds(pool);
    // The block follows the key's recent peak, not its count this instant, so a key whose load swings
    // between releases and arrivals does not trade slots with the guard at every swing. Tight: no spare.
    // A key with a share keeps no idle slot beyond it (its recent peak included): above its share it holds
    // only slots in use, so idle slots in its block never keep another key waiting.
    const peak = this.tight.get(pool) ? used : Math.max(used, Math.min(this.peak(pool), this.cap(pool)));
    const headroom = this.headroom(pool, peak);
    const spare = peak - used + reserve;
    if (free.length > spare + 2 * headroom) {
      void this.giveBack(pool, free.slice(0, free.length - spare - headroom));
    } else if (used === 0 && free.length > 0) {
      this.whenIdle(pool);
    }
  }

  /** Gives the block back once the key has had nothing in flight at the pool for IDLE_RETURN_MS. */
  private whenIdle(pool: string): void {
    if (this.idleTimers.has(pool)) return;
    this.idleTimers.add(pool);
    const since = this.lastActive.get(pool) ?? this.now();
    setTimeout(
      () => {
        this.idleTimers.delete(pool);
        if (this.used(pool) > 0) return;
        if (this.now() - (this.lastActive.get(pool) ?? 0) >= IDLE_RETURN_MS)
          void this.giveBack(pool, this.freeIds(pool));
        else this.whenIdle(pool);
      },
      Math.max(0, since + IDLE_RETURN_MS - this.now()),
    );
  }

  private notePeak(pool: string): void {
    const now = this.now();
    this.lastActive.set(pool, now);
    const used = this.used(pool);
    const p = this.peaks.get(pool);
    if (!p || used >= p.used || now - p.at > IDLE_RETURN_MS) this.peaks.set(pool, { used, at: now });
  }

  private peak(pool: string): number {
    const p = this.peaks.get(pool);
    return p && this.now() - p.at <= IDLE_RETURN_MS ? p.used : 0;
  }

  /** Idle slots kept beyond those in use: none when tight, and never beyond the key's limit or its share. */
  private headroom(pool: string, used: number): number {
    if (this.tight.get(pool)) return 0;
    const keyLimit = this.keyLimits.get(modelOf(pool)) ?? Infinity;
    return Math.max(0, Math.min(HEADROOM_MAX, 1 + Math.floor(used / 4), keyLimit - used, this.cap(pool) - used));
  }

  /** The slots of the pool this key holds at most while others wait (Infinity: it has no share). */
  private cap(pool: string): number {
    const share = this.shares.get(modelOf(pool));
    if (share == null) return Infinity;
    // The pool's limit from memory (what the key's last request said), not a query on every release.
    return shareCap(share, this.siblings.get(pool)?.find((p) => p.name === pool)?.limit ?? Infinity);
  }

  private used(pool: string): number {
    return this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM pool_slots WHERE pool = ? AND lease IS NOT NULL", pool)
      .one().n;
  }

  /** Free slots, those expiring first first (they are the ones to give back). */
  private freeIds(pool: string): string[] {
    return this.sql
      .exec<{ id: string }>("SELECT id FROM pool_slots WHERE pool = ? AND lease IS NULL ORDER BY expires_at", pool)
      .toArray()
      .map((r) => r.id);
  }

  private poolLimit(pool: string): number | undefined {
    const row = this.sql
      .exec<{ n: number | null }>("SELECT MAX(pool_limit) AS n FROM pool_slots WHERE pool = ?", pool)
      .one();
    return row.n ?? undefined;
  }

  /** Puts a free slot of the pool's block (the longest-lived) under the request. */
  private claimFree(pool: string, leaseId: string): boolean {
    return (
      this.sql
        .exec(
          `UPDATE pool_slots SET lease = ? WHERE id = (SELECT id FROM pool_slots
             WHERE pool = ? AND lease IS NULL AND expires_at > ? ORDER BY expires_at DESC LIMIT 1) RETURNING id`,
          leaseId,
          pool,
          this.now() + EXPIRY_MARGIN_MS,
        )
        .toArray().length > 0
    );
  }

  /** Slots granted by a guard join the pool's block; the first carries `lease` if given (and is the probe, if one). */
  private add(pool: string, ids: string[], expiresAt: number, poolLimit: number, lease?: string, probe = false): void {
    ids.forEach((id, i) =>
      this.sql.exec(
        "INSERT OR REPLACE INTO pool_slots (id, pool, model, lease, expires_at, pool_limit, probe) VALUES (?, ?, ?, " +
          "?, ?, ?, ?)",
        id,
        pool,
        modelOf(pool),
        i === 0 ? (lease ?? null) : null,
        expiresAt,
        poolLimit,
        i === 0 && probe ? 1 : 0,
      ),
    );
  }

  private async giveBack(pool: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    this.sql.exec("DELETE FROM pool_slots WHERE id IN (SELECT value FROM json_each(?))", JSON.stringify(ids));
    // Off the caller's path; if the guard cannot be told, the slots expire there within one lease lifetime.
    await this.guard(pool)
      .returnBlock(ids)
      .catch((err: unknown) =>
        log({ level: "warn", msg: "giving upstream slots back failed; they expire at the guard", error: String(err) }),
      );
  }

  /** Sets the alarm a third of a lifetime before the first slot would expire, so renewal comes first. */
  private async schedule(): Promise<void> {
    const first = this.sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM pool_slots").one().t;
    if (first !== null) await this.leases.ensureAlarm(Math.max(this.now() + 1_000, first - this.ttlMs() / 3));
  }

  private enqueue(model: string, leaseId: string): Waiter {
    const queue = this.waiters.get(model);
    let w = queue.find((x) => x.leaseId === leaseId);
    if (!w) {
      w = { leaseId, lastSeen: this.now() };
      queue.push(w);
    }
    w.lastSeen = this.now();
    return w;
  }

  private dropWaiter(model: string, leaseId: string): void {
    const queue = this.waiters.peek(model);
    const i = queue.findIndex((w) => w.leaseId === leaseId);
    if (i !== -1) queue.splice(i, 1);
  }
}
