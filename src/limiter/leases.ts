// In-flight slots as leases in a Durable Object's SQLite storage. Acquire is atomic (the object is single-
// threaded and the SQL calls are synchronous), release is idempotent, and every lease has an expiry that
// the object's alarm reclaims, so a slot whose release never arrives is still freed.
// Waiting callers (x-queue-timeout-ms) queue first come first served; a waiting RPC parks on a promise
// for at most WAIT_SLICE_MS, so the object keeps serving other calls and no RPC waits indefinitely.

/** A lease not renewed for this long is reclaimed. Streams renew every LEASE_RENEW_MS while data flows. */
export const LEASE_TTL_MS = 30_000;
export const LEASE_RENEW_MS = 10_000;
/** Longest a single acquire RPC parks waiting for a slot; the caller calls again with its ticket. */
export const WAIT_SLICE_MS = 1_000;
/** A waiter that has not called back within this time has gone away and loses its place. */
const WAITER_STALE_MS = 3_000;

export interface AcquireOptions {
  ttlMs?: number;
  /** Ticket from an earlier "queued" answer: keeps the caller's place in line. */
  ticket?: string;
  /** How long this call may park waiting (capped at WAIT_SLICE_MS). 0 = answer at once. */
  waitMs?: number;
  /** Slots taken together, all or none (default 1). */
  need?: number;
  /** Further slots granted on top of `need` if they are free and nobody else is waiting (other callers' demand). */
  more?: number;
  /**
   * Further slots on top of those, granted only if free, nobody else is waiting, and the count in flight stays
   * at or below `extraBelow` (default `limit`): a key's object asks for a little headroom this way.
   */
  extra?: number;
  extraBelow?: number;
  /** Skips the line: only for a request already in flight retaking a slot it lost, never for a new one. */
  jump?: boolean;
  /** Takes the (single) lease under this id: a lost lease retaken keeps the id its holder knows. */
  id?: string;
}

export type AcquireResult =
  | { granted: true; leaseId: string; leaseIds: string[]; expiresAt: number; inFlight: number; limit: number }
  | { granted: false; inFlight: number; limit: number; ticket?: string };

interface Waiter {
  ticket: string;
  lastSeen: number;
  wake?: () => void;
}

export class LeaseTable {
  private readonly waiters = new Map<string, Waiter[]>();
  private alarmAt: number | null = null;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly now: () => number = Date.now,
  ) {
    storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, model TEXT NOT NULL, expires_at INTEGER NOT NULL);
       CREATE INDEX IF NOT EXISTS leases_model ON leases (model, expires_at);`,
    );
  }

  count(model: string): number {
    const row = this.storage.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM leases WHERE model = ? AND expires_at > ?", model, this.now())
      .one();
    return row.n;
  }

  inFlightByModel(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.storage.sql.exec<{ model: string; n: number }>(
      "SELECT model, COUNT(*) AS n FROM leases WHERE expires_at > ? GROUP BY model",
      this.now(),
    )) {
      out[r.model] = r.n;
    }
    return out;
  }

  async acquire(model: string, limit: number, opts: AcquireOptions = {}): Promise<AcquireResult> {
    const deadline = this.now() + Math.min(Math.max(opts.waitMs ?? 0, 0), WAIT_SLICE_MS);
    let ticket = opts.ticket;
    for (;;) {
      const queue = this.queueFor(model);
      const position = ticket === undefined ? -1 : queue.findIndex((w) => w.ticket === ticket);
      const inFlight = this.count(model);
      const free = limit - inFlight;
      const need = Math.max(1, opts.need ?? 1);
      // First come first served: a caller may pass only those queued ahead of it.
      const ahead = opts.jump ? 0 : position === -1 ? queue.length : position;
      if (free - ahead >= need) {
        if (position !== -1) queue.splice(position, 1);
        const spare = queue.length > 0 ? 0 : free - need;
        const more = Math.max(0, Math.min(opts.more ?? 0, spare));
        const extra = Math.max(0, Math.min(opts.extra ?? 0, spare - more, (opts.extraBelow ?? limit) - inFlight - need - more));
        const bonus = more + extra;
        const expiresAt = this.now() + (opts.ttlMs ?? LEASE_TTL_MS);
        const leaseIds: string[] = [];
        for (let i = 0; i < need + bonus; i++) {
          const id = i === 0 && opts.id !== undefined ? opts.id : crypto.randomUUID();
          this.storage.sql.exec("INSERT OR REPLACE INTO leases (id, model, expires_at) VALUES (?, ?, ?)", id, model, expiresAt);
          leaseIds.push(id);
        }
        await this.ensureAlarm(expiresAt);
        return { granted: true, leaseId: leaseIds[0]!, leaseIds, expiresAt, inFlight: inFlight + leaseIds.length, limit };
      }
      const remaining = deadline - this.now();
      if (remaining <= 0) {
        if ((opts.waitMs ?? 0) <= 0 && position !== -1) queue.splice(position, 1);
        return ticket !== undefined && (opts.waitMs ?? 0) > 0
          ? { granted: false, inFlight, limit, ticket }
          : { granted: false, inFlight, limit };
      }
      let waiter = position === -1 ? undefined : queue[position];
      if (!waiter) {
        ticket ??= crypto.randomUUID();
        waiter = { ticket, lastSeen: this.now() };
        queue.push(waiter);
      }
      waiter.lastSeen = this.now();
      const w = waiter;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        w.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      w.wake = undefined;
      w.lastSeen = this.now();
    }
  }

  /** Gives up a place in line (the caller stopped waiting). */
  leaveQueue(model: string, ticket: string): void {
    const queue = this.queueFor(model);
    const i = queue.findIndex((w) => w.ticket === ticket);
    if (i !== -1) queue.splice(i, 1);
    this.wake(model);
  }

  /** Whether the lease is held (not released, not expired). */
  has(leaseId: string): boolean {
    return this.modelOf(leaseId) !== undefined;
  }

  /** The model of a held lease. */
  modelOf(leaseId: string): string | undefined {
    return this.storage.sql
      .exec<{ model: string }>("SELECT model FROM leases WHERE id = ? AND expires_at > ?", leaseId, this.now())
      .toArray()[0]?.model;
  }

  /** Callers waiting in line for the model (those that stopped polling are dropped first). */
  queued(model: string): number {
    return this.queueFor(model).length;
  }

  renew(leaseId: string, ttlMs = LEASE_TTL_MS): boolean {
    const cursor = this.storage.sql.exec(
      "UPDATE leases SET expires_at = ? WHERE id = ? AND expires_at > ?",
      this.now() + ttlMs,
      leaseId,
      this.now(),
    );
    return cursor.rowsWritten > 0;
  }

  /** Idempotent: releasing an unknown or already released lease is a no-op that returns false. */
  release(leaseId: string): boolean {
    const rows = this.storage.sql
      .exec<{ model: string }>("DELETE FROM leases WHERE id = ? RETURNING model", leaseId)
      .toArray();
    for (const r of rows) this.wake(r.model);
    return rows.length > 0;
  }

  /** Renews many leases in one statement; returns the ids still held (the others had expired or were released). */
  renewMany(ids: string[], ttlMs = LEASE_TTL_MS): { alive: string[]; expiresAt: number } {
    const expiresAt = this.now() + ttlMs;
    const alive = this.storage.sql
      .exec<{ id: string }>(
        "UPDATE leases SET expires_at = ? WHERE id IN (SELECT value FROM json_each(?)) AND expires_at > ? RETURNING id",
        expiresAt,
        JSON.stringify(ids),
        this.now(),
      )
      .toArray()
      .map((r) => r.id);
    return { alive, expiresAt };
  }

  /** Idempotent, like release: returns how many of the ids were still held. */
  releaseMany(ids: string[]): number {
    const rows = this.storage.sql
      .exec<{ model: string }>("DELETE FROM leases WHERE id IN (SELECT value FROM json_each(?)) RETURNING model", JSON.stringify(ids))
      .toArray();
    for (const model of new Set(rows.map((r) => r.model))) this.wake(model);
    return rows.length;
  }

  /** Alarm handler body: drops expired leases, wakes waiters, and schedules the next expiry. */
  async expire(): Promise<number> {
    const now = this.now();
    const rows = this.storage.sql
      .exec<{ model: string }>("DELETE FROM leases WHERE expires_at <= ? RETURNING model", now)
      .toArray();
    for (const model of new Set(rows.map((r) => r.model))) this.wake(model);
    this.alarmAt = null;
    const next = this.storage.sql
      .exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM leases")
      .one().t;
    if (next !== null) await this.ensureAlarm(next);
    return rows.length;
  }

  private queueFor(model: string): Waiter[] {
    let q = this.waiters.get(model);
    if (!q) {
      q = [];
      this.waiters.set(model, q);
    }
    // Drop callers that stopped polling so they cannot block the line.
    const cutoff = this.now() - WAITER_STALE_MS;
    for (let i = q.length - 1; i >= 0; i--) if (q[i]!.lastSeen < cutoff && !q[i]!.wake) q.splice(i, 1);
    return q;
  }

  private wake(model: string): void {
    for (const w of this.waiters.get(model) ?? []) w.wake?.();
  }

  /** Makes sure the object's alarm fires no later than `at` (never postpones an earlier one). */
  async ensureAlarm(at: number): Promise<void> {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    const existing = await this.storage.getAlarm();
    if (existing !== null && existing <= at) {
      this.alarmAt = existing;
      return;
    }
    this.alarmAt = at;
    await this.storage.setAlarm(at);
  }
}
