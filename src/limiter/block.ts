// A key's block of upstream slots. Asking the model's UpstreamGuard on every request would cost a second
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
// arriving together ask the guard once, for all of them. Who gets the account's slots when it is full is the
// guard's line (first come first served); fairer shares between keys can be decided there later.
//
// Lifetime: every slot is a lease at the guard with an expiry. The key renews its block when a request
// renews its own lease and the block was last renewed over a third of its lifetime ago, and from its alarm,
// which is set before the block would expire. If the guard answers that slots are gone (they expired there),
// the requests they carried take new slots ahead of the guard's line — they are already at GLM — and any
// that cannot are left without a slot: their next renewal tries once more and otherwise tells the Worker to
// cancel the upstream call. Slots whose renewal failed until their expiry are dropped the same way. Block state lives in SQLite, so it survives the object's eviction; only the
// waiting lines and the guard's last "tight" answer are kept in memory.
import { log } from "../http/log.ts";
import type { UpstreamGuard } from "./guard.ts";
import type { LeaseTable } from "./leases.ts";

export const HEADROOM_MAX = 8;
/** A key with nothing in flight for a model gives its block back after this long. */
export const IDLE_RETURN_MS = 2_000;
/** A waiter that has not called back within this time has gone away and loses its place. */
const WAITER_STALE_MS = 3_000;
/** A slot this close to its expiry is not handed out: the guard may reclaim it before it is renewed. */
const EXPIRY_MARGIN_MS = 1_000;

type GuardStub = DurableObjectStub<UpstreamGuard>;

interface Waiter {
  leaseId: string;
  lastSeen: number;
  wake?: () => void;
}

export interface TakeRequest {
  model: string;
  /** The request's lease in the key's own table. */
  leaseId: string;
  /** The account tier's limit for the model: the guard's bound. */
  accountLimit: number;
  /** The key's own limit for the model: a block never grows beyond what the key may use. */
  keyLimit: number;
  /** The guard's ticket from an earlier "waiting" answer. */
  ticket?: string;
  /** How long this call may park waiting for a slot (the guard caps it at WAIT_SLICE_MS). */
  waitMs?: number;
}

export type TakeResult = { ok: true } | { ok: false; ticket?: string; inFlight: number; limit: number };

export class UpstreamBlock {
  /** This key's requests waiting for an upstream slot, per model, first come first served. */
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly tight = new Map<string, boolean>();
  private readonly keyLimits = new Map<string, number>();
  private readonly renewing = new Map<string, Promise<void>>();
  /** A guard call in progress that does not park, per model, which requests arriving meanwhile wait for. */
  private readonly refills = new Map<string, Promise<void>>();
  /** Requests of this key inside take() for the model: the demand a refill asks for. */
  private readonly pending = new Map<string, number>();
  private readonly idleTimers = new Set<string>();
  /** The highest count of this key's requests in flight per model over the last IDLE_RETURN_MS or so. */
  private readonly peaks = new Map<string, { used: number; at: number }>();
  /** When a request of this key last took or gave back a slot, per model. */
  private readonly lastActive = new Map<string, number>();

  constructor(
    private readonly sql: SqlStorage,
    private readonly leases: LeaseTable,
    private readonly guard: (model: string) => GuardStub,
    private readonly ttlMs: () => number,
    private readonly now: () => number = Date.now,
  ) {
    // One row per guard slot held; `lease` is the request (a row of the key's leases table) it carries.
    sql.exec(
      `CREATE TABLE IF NOT EXISTS upstream_slots (id TEXT PRIMARY KEY, model TEXT NOT NULL, lease TEXT,
         expires_at INTEGER NOT NULL, account_limit INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS upstream_slots_model ON upstream_slots (model, lease);
       CREATE INDEX IF NOT EXISTS upstream_slots_lease ON upstream_slots (lease);`,
    );
  }

  holds(leaseId: string): boolean {
    return this.sql.exec("SELECT 1 FROM upstream_slots WHERE lease = ? LIMIT 1", leaseId).toArray().length > 0;
  }

  /** Slots leased from the guard per model (the block sizes), for tests and diagnostics. */
  sizes(): Record<string, { size: number; used: number }> {
    const out: Record<string, { size: number; used: number }> = {};
    for (const r of this.sql.exec<{ model: string; size: number; used: number }>(
      "SELECT model, COUNT(*) AS size, COUNT(lease) AS used FROM upstream_slots GROUP BY model",
    )) {
      out[r.model] = { size: r.size, used: r.used };
    }
    return out;
  }

  /**
   * Gives the request an upstream slot: one free in the block, else more from the guard (waiting in its
   * line if asked to). A request that already holds one (handed over while it was away) just gets ok.
   */
  async take(req: TakeRequest): Promise<TakeResult> {
    this.keyLimits.set(req.model, req.keyLimit);
    this.pending.set(req.model, (this.pending.get(req.model) ?? 0) + 1);
    try {
      return await this.takeOrWait(req);
    } finally {
      this.pending.set(req.model, this.pending.get(req.model)! - 1);
    }
  }

  private async takeOrWait(req: TakeRequest): Promise<TakeResult> {
    const { model, leaseId } = req;
    const served = () => {
      if (!this.holds(leaseId) && !this.claimFree(model, leaseId)) return false;
      this.dropWaiter(model, leaseId);
      // Handed a slot between its calls: its place in the guard's line must not hold up others.
      if (req.ticket) this.leaveQueue(model, req.ticket);
      this.notePeak(model);
      return true;
    };
    if (served()) return { ok: true };
    // Another request of this key is asking the guard already: wait for its answer, which asks for this
    // request's slot too, rather than ask alongside it. Asking side by side would let a slot granted to one
    // arrive after the other was refused, leaving it idle while a request was turned away.
    for (let refill = this.refills.get(model); refill; refill = this.refills.get(model)) {
      await refill;
      if (served()) return { ok: true };
    }
    const parks = (req.waitMs ?? 0) > 0;
    const waiter = parks ? this.enqueue(model, leaseId) : undefined;
    const demand = this.pending.get(model) ?? 1;
    const call = this.guard(model).take(model, req.accountLimit, {
      need: 1,
      more: demand - 1,
      extra: this.headroom(model, this.used(model) + demand),
      ticket: req.ticket,
      waitMs: req.waitMs,
      ttlMs: this.ttlMs(),
    });
    if (parks) return this.answer(req, call, waiter);
    let done!: () => void;
    this.refills.set(model, new Promise<void>((resolve) => (done = resolve)));
    try {
      return await this.answer(req, call, undefined);
    } finally {
      this.refills.delete(model);
      done();
    }
  }

  private async answer(req: TakeRequest, call: ReturnType<GuardStub["take"]>, waiter: Waiter | undefined): Promise<TakeResult> {
    const { model, leaseId } = req;
    let got;
    if (waiter) {
      // A slot freed in this block while the guard call is parked is handed to this key's first waiter;
      // a waiter served that way stops waiting, and whatever the guard answers later joins the block.
      const handed = new Promise<null>((resolve) => (waiter.wake = () => resolve(null)));
      try {
        got = await Promise.race([call, handed]);
      } finally {
        waiter.wake = undefined;
      }
      if (got === null) {
        call.then(
          (late) => {
            if (late.granted) this.add(model, late.leaseIds, late.expiresAt, req.accountLimit);
            else if (late.ticket) this.leaveQueue(model, late.ticket);
            this.tight.set(model, late.tight);
            this.settle(model);
          },
          (err: unknown) => log({ level: "warn", msg: "upstream guard call failed after a slot was handed over", error: String(err) }),
        );
        return { ok: true };
      }
    } else {
      got = await call;
    }
    this.tight.set(model, got.tight);
    if (got.granted) {
      this.add(model, got.leaseIds, got.expiresAt, req.accountLimit, this.holds(leaseId) ? undefined : leaseId);
      this.dropWaiter(model, leaseId);
      this.notePeak(model);
      // The others of this key waiting for this answer are about to take the rest.
      this.settle(model, (this.pending.get(model) ?? 1) - 1);
      await this.schedule();
      return { ok: true };
    }
    if (this.holds(leaseId)) {
      if (got.ticket) this.leaveQueue(model, got.ticket);
      this.dropWaiter(model, leaseId);
      return { ok: true };
    }
    if (!got.ticket) this.dropWaiter(model, leaseId);
    return { ok: false, inFlight: got.inFlight, limit: got.limit, ...(got.ticket ? { ticket: got.ticket } : {}) };
  }

  /**
   * For a request already admitted whose slot is gone (its block lapsed at the guard, or its lease was
   * retaken): a free slot of the block, else one from the guard ahead of its line. False if neither.
   */
  async ensure(model: string, leaseId: string, accountLimit?: number): Promise<boolean> {
    this.dropLapsed();
    if (this.holds(leaseId) || this.claimFree(model, leaseId)) return true;
    const limit = accountLimit ?? this.accountLimit(model);
    if (limit === undefined) return false;
    const got = await this.guard(model).take(model, limit, { need: 1, jump: true, ttlMs: this.ttlMs() });
    this.tight.set(model, got.tight);
    if (!got.granted) return false;
    this.add(model, got.leaseIds, got.expiresAt, limit, leaseId);
    await this.schedule();
    return true;
  }

  /** The request ended: its slot goes back to the block (to a waiter of this key first), surplus to the guard. */
  release(leaseId: string): void {
    const rows = this.sql
      .exec<{ model: string }>("UPDATE upstream_slots SET lease = NULL WHERE lease = ? RETURNING model", leaseId)
      .toArray();
    for (const [model] of this.waiters) this.dropWaiter(model, leaseId);
    for (const model of new Set(rows.map((r) => r.model))) {
      this.lastActive.set(model, this.now());
      this.settle(model);
    }
  }

  /** Gives up a place in the guard's line (the request stopped waiting). */
  leaveQueue(model: string, ticket: string): void {
    this.guard(model)
      .leaveQueue(model, ticket)
      .catch((err: unknown) => log({ level: "warn", msg: "leaving the upstream guard's line failed", error: String(err) }));
  }

  /** Renews the model's block at the guard if it was last renewed over a third of its lifetime ago. */
  renewIfDue(model: string): Promise<void> {
    const oldest = this.sql
      .exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM upstream_slots WHERE model = ?", model)
      .one().t;
    if (oldest === null || oldest - this.now() > (this.ttlMs() * 2) / 3) return Promise.resolve();
    let p = this.renewing.get(model);
    if (!p) {
      p = this.renewNow(model).finally(() => this.renewing.delete(model));
      this.renewing.set(model, p);
    }
    return p;
  }

  /**
   * Alarm body: frees the slots of requests whose lease expired, gives back blocks of models with nothing in
   * flight, renews the others, and sets the alarm before the next block would expire.
   */
  async maintain(): Promise<void> {
    this.dropLapsed();
    const orphaned = this.sql
      .exec<{ model: string }>(
        "UPDATE upstream_slots SET lease = NULL WHERE lease IS NOT NULL AND lease NOT IN (SELECT id FROM leases) RETURNING model",
      )
      .toArray();
    for (const model of new Set(orphaned.map((r) => r.model))) this.settle(model);
    const models = this.sql.exec<{ model: string }>("SELECT DISTINCT model FROM upstream_slots").toArray();
    for (const { model } of models) {
      if (this.used(model) === 0) {
        await this.giveBack(model, this.freeIds(model));
        continue;
      }
      await this.renewIfDue(model).catch((err: unknown) =>
        log({ level: "warn", msg: "renewing the upstream block failed; retrying from the alarm", error: String(err) }),
      );
    }
    await this.schedule();
  }

  private async renewNow(model: string): Promise<void> {
    const ids = this.sql
      .exec<{ id: string }>("SELECT id FROM upstream_slots WHERE model = ?", model)
      .toArray()
      .map((r) => r.id);
    const limit = this.accountLimit(model);
    if (ids.length === 0 || limit === undefined) return;
    const got = await this.guard(model).renewBlock(model, limit, ids, this.ttlMs());
    this.tight.set(model, got.tight);
    this.sql.exec("UPDATE upstream_slots SET expires_at = ? WHERE id IN (SELECT value FROM json_each(?))", got.expiresAt, JSON.stringify(got.alive));
    const alive = new Set(got.alive);
    const gone = ids.filter((id) => !alive.has(id));
    if (gone.length === 0) return;
    // Slots the guard no longer counts. The requests they carried are already at GLM, so they take slots
    // again ahead of the guard's line; those that cannot are left without one and end at their next renewal.
    const stranded = this.sql
      .exec<{ lease: string | null }>("DELETE FROM upstream_slots WHERE id IN (SELECT value FROM json_each(?)) RETURNING lease", JSON.stringify(gone))
      .toArray()
      .flatMap((r) => (r.lease !== null && this.leases.has(r.lease) ? [r.lease] : []))
      .filter((lease) => !this.claimFree(model, lease));
    log({ level: "warn", msg: "upstream block slots lapsed at the guard", model, gone: gone.length, stranded: stranded.length });
    if (stranded.length === 0) return;
    const again = await this.guard(model).take(model, limit, { need: stranded.length, jump: true, ttlMs: this.ttlMs() });
    if (!again.granted) return;
    again.leaseIds.forEach((id, i) => this.add(model, [id], again.expiresAt, limit, stranded[i]));
  }

  /**
   * Forgets slots past their expiry by this object's clock: their renewal failed, so the guard has reclaimed
   * them or is about to, and a request on one no longer counts at the guard. Its next renewal (ensure) takes
   * another or ends it.
   */
  dropLapsed(): void {
    this.sql.exec("DELETE FROM upstream_slots WHERE expires_at <= ?", this.now());
  }

  /**
   * After a slot came free or slots arrived: serve this key's waiters, then give back the surplus beyond the
   * headroom, keeping `reserve` more for requests of this key about to take one (by default those inside take()).
   */
  private settle(model: string, reserve = this.pending.get(model) ?? 0): void {
    const queue = this.queueFor(model);
    while (queue.length > 0) {
      const w = queue[0]!;
      if (!this.holds(w.leaseId) && !this.claimFree(model, w.leaseId)) break;
      queue.shift();
      w.wake?.();
    }
    const used = this.used(model);
    const free = this.freeIds(model);
    // The block follows the key's recent peak, not its count this instant, so a key whose load swings
    // between releases and arrivals does not trade slots with the guard at every swing. Tight: no spare.
    const peak = this.tight.get(model) ? used : Math.max(used, this.peak(model));
    const headroom = this.headroom(model, peak);
    const spare = peak - used + reserve;
    if (free.length > spare + 2 * headroom) {
      void this.giveBack(model, free.slice(0, free.length - spare - headroom));
    } else if (used === 0 && free.length > 0) {
      this.whenIdle(model);
    }
  }

  /** Gives the block back once the key has had nothing in flight for the model for IDLE_RETURN_MS. */
  private whenIdle(model: string): void {
    if (this.idleTimers.has(model)) return;
    this.idleTimers.add(model);
    const since = this.lastActive.get(model) ?? this.now();
    setTimeout(() => {
      this.idleTimers.delete(model);
      if (this.used(model) > 0) return;
      if (this.now() - (this.lastActive.get(model) ?? 0) >= IDLE_RETURN_MS) void this.giveBack(model, this.freeIds(model));
      else this.whenIdle(model);
    }, Math.max(0, since + IDLE_RETURN_MS - this.now()));
  }

  private notePeak(model: string): void {
    const now = this.now();
    this.lastActive.set(model, now);
    const used = this.used(model);
    const p = this.peaks.get(model);
    if (!p || used >= p.used || now - p.at > IDLE_RETURN_MS) this.peaks.set(model, { used, at: now });
  }

  private peak(model: string): number {
    const p = this.peaks.get(model);
    return p && this.now() - p.at <= IDLE_RETURN_MS ? p.used : 0;
  }

  private headroom(model: string, used: number): number {
    if (this.tight.get(model)) return 0;
    const keyLimit = this.keyLimits.get(model) ?? Infinity;
    return Math.max(0, Math.min(HEADROOM_MAX, 1 + Math.floor(used / 4), keyLimit - used));
  }

  private used(model: string): number {
    return this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM upstream_slots WHERE model = ? AND lease IS NOT NULL", model)
      .one().n;
  }

  /** Free slots, those expiring first first (they are the ones to give back). */
  private freeIds(model: string): string[] {
    return this.sql
      .exec<{ id: string }>("SELECT id FROM upstream_slots WHERE model = ? AND lease IS NULL ORDER BY expires_at", model)
      .toArray()
      .map((r) => r.id);
  }

  private accountLimit(model: string): number | undefined {
    const row = this.sql
      .exec<{ n: number | null }>("SELECT MAX(account_limit) AS n FROM upstream_slots WHERE model = ?", model)
      .one();
    return row.n ?? undefined;
  }

  /** Puts a free slot of the block (the longest-lived) under the request. */
  private claimFree(model: string, leaseId: string): boolean {
    return (
      this.sql
        .exec(
          `UPDATE upstream_slots SET lease = ? WHERE id = (SELECT id FROM upstream_slots
             WHERE model = ? AND lease IS NULL AND expires_at > ? ORDER BY expires_at DESC LIMIT 1) RETURNING id`,
          leaseId,
          model,
          this.now() + EXPIRY_MARGIN_MS,
        )
        .toArray().length > 0
    );
  }

  /** Slots granted by the guard join the block; the first carries `lease` if given. */
  private add(model: string, ids: string[], expiresAt: number, accountLimit: number, lease?: string): void {
    ids.forEach((id, i) =>
      this.sql.exec(
        "INSERT OR REPLACE INTO upstream_slots (id, model, lease, expires_at, account_limit) VALUES (?, ?, ?, ?, ?)",
        id, model, i === 0 ? (lease ?? null) : null, expiresAt, accountLimit,
      ),
    );
  }

  private async giveBack(model: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    this.sql.exec("DELETE FROM upstream_slots WHERE id IN (SELECT value FROM json_each(?))", JSON.stringify(ids));
    // Off the caller's path; if the guard cannot be told, the slots expire there within one lease lifetime.
    await this.guard(model)
      .returnBlock(ids)
      .catch((err: unknown) => log({ level: "warn", msg: "giving upstream slots back failed; they expire at the guard", error: String(err) }));
  }

  /** Sets the alarm a third of a lifetime before the first slot would expire, so renewal comes first. */
  private async schedule(): Promise<void> {
    const first = this.sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM upstream_slots").one().t;
    if (first !== null) await this.leases.ensureAlarm(Math.max(this.now() + 1_000, first - this.ttlMs() / 3));
  }

  private queueFor(model: string): Waiter[] {
    let q = this.waiters.get(model);
    if (!q) {
      q = [];
      this.waiters.set(model, q);
    }
    const cutoff = this.now() - WAITER_STALE_MS;
    for (let i = q.length - 1; i >= 0; i--) if (q[i]!.lastSeen < cutoff && !q[i]!.wake) q.splice(i, 1);
    return q;
  }

  private enqueue(model: string, leaseId: string): Waiter {
    const queue = this.queueFor(model);
    let w = queue.find((x) => x.leaseId === leaseId);
    if (!w) {
      w = { leaseId, lastSeen: this.now() };
      queue.push(w);
    }
    w.lastSeen = this.now();
    return w;
  }

  private dropWaiter(model: string, leaseId: string): void {
    const queue = this.waiters.get(model);
    const i = queue?.findIndex((w) => w.leaseId === leaseId) ?? -1;
    if (i !== -1) queue!.splice(i, 1);
  }
}
