// UpstreamGuard: one Durable Object per upstream model. It caps requests in flight to GLM across all keys
// at the gateway account's own tier limit, so GLM never answers 1302 because of us.
import { DurableObject } from "cloudflare:workers";
import { LeaseTable, type AcquireOptions, type AcquireResult } from "./leases.ts";

export class UpstreamGuard extends DurableObject<Env> {
  private readonly leases: LeaseTable;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.leases = new LeaseTable(ctx.storage);
  }

  acquire(model: string, limit: number, wait?: AcquireOptions): Promise<AcquireResult> {
    return this.leases.acquire(model, limit, wait);
  }

  leaveQueue(model: string, ticket: string): void {
    this.leases.leaveQueue(model, ticket);
  }

  renew(leaseId: string): boolean {
    return this.leases.renew(leaseId);
  }

  release(leaseId: string): boolean {
    return this.leases.release(leaseId);
  }

  inFlight(): Record<string, number> {
    return this.leases.inFlightByModel();
  }

  override async alarm(): Promise<void> {
    await this.leases.expire();
  }
}
