// In-flight slots as leases in a Durable Object's SQLite storage. Acquire is atomic (the object is single-
// threaded and the SQL calls are synchronous), release is idempotent, and every lease has an expiry that
// the object's alarm reclaims, so a slot whose release never arrives is still freed.
// Waiting callers (x-queue-timeout-ms) queue; a waiting RPC parks on a promise for at most WAIT_SLICE_MS, so
// the object keeps serving other calls and no RPC waits indefinitely.
//
// Whose turn: every lease and every waiter has an owner (at an UpstreamGuard, the key whose block it is; in
// a key's own table, nobody, so that line is first come first served). When a slot frees, the line is
// served owner by owner, not request by request: next is the waiting owner holding the fewest slots, ties
// going to the one granted a slot longest ago, then to the one waiting longest — so two keys waiting take
// turns however many requests each has queued, and a key that holds less catches up first. An owner may
// carry a cap (its max_upstream_share of the limit): while another owner waits, an owner holding its cap
// ranks behind every owner below theirs, so it gets only what they leave (work-conserving: alone, or when
// every waiting owner is at its cap, it may use whatever is free).

/** A lease not renewed for this long is reclaimed. Streams renew every LEASE_RENEW_MS while data flows. */
export const LEASE_TTL_MS = 30_000;
export const LEASE_RENEW_MS = 10_000;
/** Longest a single acquire RPC parks waiting for a slot; the caller calls again with its ticket. */
export const WAIT_SLICE_MS = 1_000;
/** A waiter that has not called back within this time has gone away and loses its place. */
export const WAITER_STALE_MS = 3_000;

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
  /** Whose slots these are (a key id at a guard): the line takes turns by owner. */
  owner?: string;
  /** The most slots the owner holds before it yields to other owners waiting (its max_upstream_share). */
  cap?: number;
}

export type AcquireResult =
  | { granted: true; leaseId: string; leaseIds: string[]; expiresAt: number; inFlight: number; limit: number }
  | { granted: false; inFlight: number; limit: number; ticket?: string };

interface Waiter {
  ticket: string;
  owner: string;
  cap: number;
  lastSeen: number;
  wake?: () => void;
}

/**
 * Waiting lines by name (a model or pool). A caller that stopped calling back (lastSeen older than `staleMs`,
 * and not parked now) is dropped whenever its line is looked at, so it cannot block the line.
 */
export class Lines<W extends { lastSeen: number; wake?: () => void }> {
  private readonly lines = new Map<string, W[]>();

  constructor(
    private readonly now: () => number,
    private readonly staleMs = WAITER_STALE_MS,
  ) {}

  get(name: string): W[] {
    let q = this.lines.get(name);
    if (!q) {
      q = [];
      this.lines.set(name, q);
    }
    const cutoff = this.now() - this.staleMs;
    for (let i = q.length - 1; i >= 0; i--) if (q[i]!.lastSeen < cutoff && !q[i]!.wake) q.splice(i, 1);
    return q;
  }

  /** The line as it is (no pruning; an empty line is not created). */
  peek(name: string): W[] {
    return this.lines.get(name) ?? [];
  }

  names(): IterableIterator<string> {
    return this.lines.keys();
  }
}

export class LeaseTable {
  private readonly waiters: Lines<Waiter>;
  /** Per model, when each owner was last granted slots (a grant counter): the tie-break between owners. */
  private readonly lastGrant = new Map<string, Map<string, number>>();
  private grants = 0;
  private alarmAt: number | null = null;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly now: () => number = Date.now,
  ) {
    this.waiters = new Lines<Waiter>(now);
    storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS leases (
         id TEXT PRIMARY KEY, model TEXT NOT NULL, expires_at INTEGER NOT NULL, owner TEXT);
       CREATE INDEX IF NOT EXISTS leases_model ON leases (model, expires_at);`,
    );
    // Tables made before leases had owners: their leases count as nobody's until renewed.
    const columns = storage.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('leases')").toArray();
    if (!columns.some((c) => c.name === "owner")) storage.sql.exec("ALTER TABLE leases ADD COLUMN owner TEXT");
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

  /** Slots held per owner of the model's leases. */
  private heldBy(model: string): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of this.storage.sql.exec<{ owner: string | null; n: number }>(
      "SELECT owner, COUNT(*) AS n FROM leases WHERE model = ? AND expires_at > ? GROUP BY owner",
      model,
      this.now(),
    )) {
      out.set(r.owner ?? "", r.n);
    }
    return out;
  }

  /**
   * How many of the line's waiters are served before `me` (a waiter in `queue`, or a caller about to join
   * it at the end): owners take turns, the one holding the fewest slots first (see the header).
   */
  private ahead(model: string, queue: readonly Waiter[], me: Waiter): number {
    const line = queue.includes(me) ? queue : [...queue, me];
    // One owner in line (always so in a key's own table): first come first served, no query.
    if (line.every((w) => w.owner === me.owner)) return line.indexOf(me);
    const held = this.heldBy(model);
    const last = this.lastGrant.get(model);
    const byOwner = new Map<string, Waiter[]>();
    for (const w of line) {
      const mine = byOwner.get(w.owner);
      if (mine) mine.push(w);
      else byOwner.set(w.owner, [w]);
    }
    const owners = [...byOwner.keys()].map((owner, first) => ({
      owner,
      first,
      held: held.get(owner) ?? 0,
      last: last?.get(owner) ?? -1,
      cap: byOwner.get(owner)![0]!.cap,
      left: byOwner.get(owner)!,
    }));
    // Serve the line in turn, virtually, until `me` comes up.
    for (let served = 0; ; served++) {
      const waiting = owners.filter((o) => o.left.length > 0);
      const capped = (o: (typeof owners)[number]) => (waiting.length > 1 && o.held >= o.cap ? 1 : 0);
      const next = waiting.reduce((a, b) =>
        (capped(a) - capped(b) || a.held - b.held || a.last - b.last || a.first - b.first) <= 0 ? a : b,
      );
      if (next.left.shift() === me) return served;
      next.held++;
      next.last = this.grants + served + 1;
    }
  }

  async acquire(model: string, limit: number, opts: AcquireOptions = {}): Promise<AcquireResult> {
    const deadline = this.now() + Math.min(Math.max(opts.waitMs ?? 0, 0), WAIT_SLICE_MS);
    const owner = opts.owner ?? "";
    const cap = opts.cap ?? limit;
    let ticket = opts.ticket;
    for (;;) {
      const queue = this.waiters.get(model);
      const position = ticket === undefined ? -1 : queue.findIndex((w) => w.ticket === ticket);
      const inFlight = this.count(model);
      const free = limit - inFlight;
      const need = Math.max(1, opts.need ?? 1);
      // A caller may pass only those served before it (a retaken slot passes everyone).
      const me = position === -1 ? { ticket: "", owner, cap, lastSeen: this.now() } : queue[position]!;
      me.cap = cap;
      const ahead = opts.jump || (position === -1 && queue.length === 0) ? 0 : this.ahead(model, queue, me);
      if (free - ahead >= need) {
        if (position !== -1) queue.splice(position, 1);
        const spare = queue.length > 0 ? 0 : free - need;
        const more = Math.max(0, Math.min(opts.more ?? 0, spare));
        const extra = Math.max(
          0,
          Math.min(opts.extra ?? 0, spare - more, (opts.extraBelow ?? limit) - inFlight - need - more),
        );
        const bonus = more + extra;
        const expiresAt = this.now() + (opts.ttlMs ?? LEASE_TTL_MS);
        const leaseIds: string[] = [];
        for (let i = 0; i < need + bonus; i++) {
          const id = i === 0 && opts.id !== undefined ? opts.id : crypto.randomUUID();
          this.storage.sql.exec(
            "INSERT OR REPLACE INTO leases (id, model, expires_at, owner) VALUES (?, ?, ?, ?)",
            id,
            model,
            expiresAt,
            opts.owner ?? null,
          );
          leaseIds.push(id);
        }
        this.granted(model, owner);
        await this.ensureAlarm(expiresAt);
        return {
          granted: true,
          leaseId: leaseIds[0]!,
          leaseIds,
          expiresAt,
          inFlight: inFlight + leaseIds.length,
          limit,
        };
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
        waiter = { ticket, owner, cap, lastSeen: this.now() };
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

  /** Remembers the grant's turn; forgets owners no longer in line once there are many. */
  private granted(model: string, owner: string): void {
    let last = this.lastGrant.get(model);
    if (!last) this.lastGrant.set(model, (last = new Map()));
    last.set(owner, ++this.grants);
    if (last.size > 256) {
      const waiting = new Set(this.waiters.peek(model).map((w) => w.owner));
      for (const o of last.keys()) if (!waiting.has(o) && o !== owner) last.delete(o);
    }
  }

  /** Gives up a place in line (the caller stopped waiting). */
  leaveQueue(model: string, ticket: string): void {
    const queue = this.waiters.get(model);
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
    return this.waiters.get(model).length;
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

  /**
   * Renews many leases in one statement; returns the ids still held (the others had expired or were released).
   * `owner` is (re)stated so leases taken before leases had owners get theirs.
   */
  renewMany(ids: string[], ttlMs = LEASE_TTL_MS, owner?: string): { alive: string[]; expiresAt: number } {
    const expiresAt = this.now() + ttlMs;
    const alive = this.storage.sql
      .exec<{ id: string }>(
        "UPDATE leases SET expires_at = ?, owner = COALESCE(?, owner) WHERE id IN (SELECT value FROM json_each(?)) " +
          "AND expires_at > ? RETURNING id",
        expiresAt,
        owner ?? null,
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
      .exec<{ model: string }>(
        "DELETE FROM leases WHERE id IN (SELECT value FROM json_each(?)) RETURNING model",
        JSON.stringify(ids),
      )
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
    const next = this.storage.sql.exec<{ t: number | null }>("SELECT MIN(expires_at) AS t FROM leases").one().t;
    if (next !== null) await this.ensureAlarm(next);
    return rows.length;
  }

  private wake(model: string): void {
    for (const w of this.waiters.peek(model)) w.wake?.();
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
