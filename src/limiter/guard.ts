// UpstreamGuard: one Durable Object per pool — an upstream account and model (or one shard of them, see
// pools.ts). It caps requests in flight to GLM across all keys at that account's tier limit (its share of
// it, when sharded), so GLM never answers 1302 because of us, and it runs the account's circuit breaker for
// the model.
//
// Keys' objects do not come here per request: each leases a small block of slots (see src/limiter/block.ts)
// and hands them out itself. Every slot of a block is one lease in this object's table, so the bound is
// still exact: the slots leased out (the sum of all blocks) never exceed the limit, and a request reaches
// GLM only on a slot of its key's block. Blocks expire like any lease unless their key renews them.
//
// Circuit: keys' objects report failed attempts here (connection refused, header timeout, 5xx), with
// the successes they saw since their previous report. Successes are not reported one by one — that would put
// the guard back on every request's path — so "consecutive" means: failures with no success reported in
// between. After `failures` of them the circuit opens: slots are refused for `cooldownMs`, then exactly one
// slot is granted as a probe, and its report closes the circuit or opens it again. The state rides on every
// answer (take, renewBlock, report), so keys learn it without asking. It is kept in memory: an evicted guard
// starts closed, which costs at most `failures` more attempts before it opens again. A sharded account's
// shards all receive every report (the key's object sends it to each), so they open and close together; only
// shard 0 grants the probe, so one request decides for the account and model.
import { DurableObject } from "cloudflare:workers";
import { LEASE_TTL_MS, LeaseTable, type AcquireOptions, type AcquireResult } from "./leases.ts";
import type { CircuitConfig } from "./pools.ts";

export type CircuitState = "closed" | "open" | "half_open";

export interface CircuitView {
  state: CircuitState;
  /** Open: when the next probe may go (ms since the epoch). */
  retryAt?: number;
  /** Failures since the last reported success. */
  consecutive: number;
}

/** What a key's object learns with every answer about a block. */
export interface BlockAnswer {
  /**
   * The pool is busy: more than half its limit leased out, or callers waiting. A key's object then keeps
   * no headroom, so idle slots in one key's block do not turn another key's requests away.
   */
  tight: boolean;
  /** Slots not leased out after this call: what admission compares between accounts. */
  free: number;
  circuit: CircuitView;
}

export interface Report {
  /** Successful attempts the reporting key saw at this pool since its previous report. */
  ok: number;
  /** Failed attempts (0 or 1: a failure is reported when it happens). */
  fail: number;
  /**
   * 5xx answers that do not count toward opening the circuit (the model's last usable account, as the key
   * saw it): shown in recent failures only.
   */
  errors?: number;
  /** The report is about the probe slot: it decides a half-open circuit. */
  probe?: boolean;
}

/** What GET /admin/upstreams shows for a pool. */
export interface PoolState {
  in_flight: number;
  circuit: CircuitView;
  /** Failures reported in the last RECENT_MS, and when the last one was. */
  recent_failures: number;
  last_failure_at: number | null;
}

const RECENT_MS = 5 * 60_000;
/** A probe whose report never came (its key's object was evicted mid-call) stops blocking after this. */
const PROBE_TIMEOUT_MS = 2 * LEASE_TTL_MS;

interface Circuit {
  state: CircuitState;
  consecutive: number;
  retryAt: number;
  probeUntil: number;
  failures: number[];
}

export class UpstreamGuard extends DurableObject<Env> {
  private readonly leases: LeaseTable;
  private readonly circuits = new Map<string, Circuit>();
  /** RPCs served since the object started: lets tests prove the guard is off the per-request path. */
  calls = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.leases = new LeaseTable(ctx.storage);
  }

  private circuit(pool: string): Circuit {
    let c = this.circuits.get(pool);
    if (!c) {
      c = { state: "closed", consecutive: 0, retryAt: 0, probeUntil: 0, failures: [] };
      this.circuits.set(pool, c);
    }
    return c;
  }

  private view(pool: string): CircuitView {
    const c = this.circuit(pool);
    return { state: c.state, consecutive: c.consecutive, ...(c.state !== "closed" ? { retryAt: c.retryAt } : {}) };
  }

  private answer(pool: string, limit: number): BlockAnswer {
    const leased = this.leases.count(pool);
    return {
      tight: leased * 2 > limit || this.leases.queued(pool) > 0,
      free: Math.max(0, limit - leased),
      circuit: this.view(pool),
    };
  }

  /** One slot (the benchmark probe times this as the old per-request guard round trip). */
  acquire(pool: string, limit: number, wait?: AcquireOptions): Promise<AcquireResult> {
    this.calls++;
    return this.leases.acquire(pool, limit, wait);
  }

  /**
   * Slots for a key's block (`owner`: the key's id): `need` all or none, plus up to `extra` headroom while the
   * pool is at most half used and nobody waits. Waiting (ticket, waitMs) works as for a single slot; the line
   * takes turns between keys, and a key at its `cap` (max_upstream_share) yields to the others (leases.ts). An open
   * circuit refuses (without a place in line) until its cooldown has passed; then one caller gets a single slot as the
   * probe. A request already at GLM retaking a lost slot (`jump`) is never refused by the circuit.
   */
  async take(
    pool: string,
    limit: number,
    opts: AcquireOptions,
  ): Promise<AcquireResult & BlockAnswer & { probe?: boolean }> {
    this.calls++;
    const c = this.circuit(pool);
    let probe = false;
    if (c.state !== "closed" && !opts.jump) {
      const now = Date.now();
      const probing = c.state === "half_open" && now < c.probeUntil;
      if (now < c.retryAt || probing) {
        return { granted: false, inFlight: this.leases.count(pool), limit, ...this.answer(pool, limit) };
      }
      // Shards other than the first never probe: they wait for the first one's verdict.
      if (/#[1-9]\d*$/.test(pool))
        return { granted: false, inFlight: this.leases.count(pool), limit, ...this.answer(pool, limit) };
      probe = true;
      opts = { need: 1, ttlMs: opts.ttlMs, owner: opts.owner };
      // Marked before the await below: another take() may run meanwhile, and it must find the probe out.
      c.state = "half_open";
      c.probeUntil = Date.now() + PROBE_TIMEOUT_MS;
    }
    const got = await this.leases.acquire(pool, limit, { ...opts, extraBelow: Math.floor(limit / 2) });
    // No slot for the probe (the pool is full): the next caller may probe.
    if (probe && !got.granted) c.probeUntil = 0;
    return { ...got, ...this.answer(pool, limit), ...(probe && got.granted ? { probe: true } : {}) };
  }

  /** A key's report of attempts at this pool: moves the circuit. */
  report(pool: string, limit: number, r: Report, cfg: CircuitConfig): BlockAnswer {
    this.calls++;
    const c = this.circuit(pool);
    const now = Date.now();
    if (r.ok > 0) c.consecutive = 0;
    if (r.fail > 0) c.consecutive += r.fail;
    if (r.fail > 0 || (r.errors ?? 0) > 0) {
      c.failures.push(now);
      if (c.failures.length > 1000) c.failures.splice(0, c.failures.length - 1000);
    }
    if (r.probe && c.state !== "closed") {
      // The probe decides: a success closes the circuit, a failure opens it for another cooldown, and a
      // probe that proved nothing (the caller left) lets the next caller probe at once.
      if (r.fail > 0) Object.assign(c, { state: "open", retryAt: now + cfg.cooldownMs, probeUntil: 0 });
      else if (r.ok > 0) Object.assign(c, { state: "closed", consecutive: 0, probeUntil: 0 });
      else c.probeUntil = 0;
    } else if (c.state === "closed" && c.consecutive >= cfg.failures) {
      Object.assign(c, { state: "open", retryAt: now + cfg.cooldownMs });
    }
    return this.answer(pool, limit);
  }

  /** Renews a block's slots (of key `owner`); answers those still held (the others expired here and are gone). */
  renewBlock(
    pool: string,
    limit: number,
    ids: string[],
    ttlMs?: number,
    owner?: string,
  ): { alive: string[]; expiresAt: number } & BlockAnswer {
    this.calls++;
    return { ...this.leases.renewMany(ids, ttlMs, owner), ...this.answer(pool, limit) };
  }

  /** Gives slots of a block back. Idempotent. */
  returnBlock(ids: string[]): number {
    this.calls++;
    return this.leases.releaseMany(ids);
  }

  leaveQueue(pool: string, ticket: string): void {
    this.calls++;
    this.leases.leaveQueue(pool, ticket);
  }

  renew(leaseId: string): boolean {
    this.calls++;
    return this.leases.renew(leaseId);
  }

  release(leaseId: string): boolean {
    this.calls++;
    return this.leases.release(leaseId);
  }

  /** Slots leased out per pool: the sum of the keys' blocks, not requests (only the keys know those). */
  inFlight(): Record<string, number> {
    return this.leases.inFlightByModel();
  }

  /** What the admin API shows for the pool. */
  state(pool: string): PoolState {
    const c = this.circuit(pool);
    const since = Date.now() - RECENT_MS;
    return {
      in_flight: this.leases.count(pool),
      circuit: this.view(pool),
      recent_failures: c.failures.filter((t) => t > since).length,
      last_failure_at: c.failures.at(-1) ?? null,
    };
  }

  override async alarm(): Promise<void> {
    await this.leases.expire();
  }
}
