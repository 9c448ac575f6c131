// UpstreamGuard: one Durable Object per upstream model. It caps requests in flight to GLM across all keys
// at the gateway account's own tier limit, so GLM never answers 1302 because of us.
//
// Keys' objects do not come here per request: each leases a small block of slots (see src/limiter/block.ts)
// and hands them out itself. Every slot of a block is one lease in this object's table, so the bound is
// still exact: the slots leased out (the sum of all blocks) never exceed the limit, and a request reaches
// GLM only on a slot of its key's block. Blocks expire like any lease unless their key renews them.
import { DurableObject } from "cloudflare:workers";
import { LeaseTable, type AcquireOptions, type AcquireResult } from "./leases.ts";

/** What a key's object learns with every answer about a block. */
export interface BlockAnswer {
  /**
   * The account is busy: more than half its limit leased out, or callers waiting. A key's object then keeps
   * no headroom, so idle slots in one key's block do not turn another key's requests away.
   */
  tight: boolean;
}

export class UpstreamGuard extends DurableObject<Env> {
  private readonly leases: LeaseTable;
  /** RPCs served since the object started: lets tests prove the guard is off the per-request path. */
  calls = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.leases = new LeaseTable(ctx.storage);
  }

  private tight(model: string, limit: number): boolean {
    return this.leases.count(model) * 2 > limit || this.leases.queued(model) > 0;
  }

  /** One slot (the benchmark probe times this as the old per-request guard round trip). */
  acquire(model: string, limit: number, wait?: AcquireOptions): Promise<AcquireResult> {
    this.calls++;
    return this.leases.acquire(model, limit, wait);
  }

  /**
   * Slots for a key's block: `need` all or none, plus up to `extra` headroom while the account is at most
   * half used and nobody waits. Waiting (ticket, waitMs) works as for a single slot.
   */
  async take(model: string, limit: number, opts: AcquireOptions): Promise<AcquireResult & BlockAnswer> {
    this.calls++;
    const got = await this.leases.acquire(model, limit, { ...opts, extraBelow: Math.floor(limit / 2) });
    return { ...got, tight: this.tight(model, limit) };
  }

  /** Renews a block's slots; answers those still held (the others expired here and are gone). */
  renewBlock(model: string, limit: number, ids: string[], ttlMs?: number): { alive: string[]; expiresAt: number } & BlockAnswer {
    this.calls++;
    return { ...this.leases.renewMany(ids, ttlMs), tight: this.tight(model, limit) };
  }

  /** Gives slots of a block back. Idempotent. */
  returnBlock(ids: string[]): number {
    this.calls++;
    return this.leases.releaseMany(ids);
  }

  leaveQueue(model: string, ticket: string): void {
    this.calls++;
    this.leases.leaveQueue(model, ticket);
  }

  renew(leaseId: string): boolean {
    this.calls++;
    return this.leases.renew(leaseId);
  }

  release(leaseId: string): boolean {
    this.calls++;
    return this.leases.release(leaseId);
  }

  /** Slots leased out per model: the sum of the keys' blocks, not requests (only the keys know those). */
  inFlight(): Record<string, number> {
    return this.leases.inFlightByModel();
  }

  override async alarm(): Promise<void> {
    await this.leases.expire();
  }
}
