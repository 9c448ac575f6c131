// KeyObject: one Durable Object per gateway key. It is the key's single source of truth — its record,
// its in-flight leases and its usage ledger — so authentication, the concurrency check, the budget check
// and the slot all happen in one atomic call, and a revoked key is refused on the very next request.
import { DurableObject } from "cloudflare:workers";
import { constantTimeEqual, unseal } from "../auth/crypto.ts";
import { verifyGlmJwt, type Credential } from "../auth/credentials.ts";
import { keySealingSecret } from "../config.ts";
import { Codes } from "../errors.ts";
import { LeaseTable, type AcquireOptions } from "../limiter/leases.ts";
import { Ledger, utcDay, type UsageRecord, type UsageReport, type UsageRow } from "../usage/ledger.ts";
import { mintBrowserToken, verifyBrowserToken } from "../auth/browser-token.ts";
import type { Caller, KeyRecord, KeySettings, KeyStatus, PublicKey } from "./types.ts";
import { toCaller, toPublic } from "./types.ts";

export type Denial = { ok: false; status: 401 | 403 | 429; code: string; message: string; retryAfter?: number };
export type AuthResult = { ok: true; caller: Caller } | Denial;

export type KeyAcquireResult =
  | { ok: true; caller: Caller; leaseId: string; limit: number; inFlight: number }
  | (Denial & { limit?: number; inFlight?: number; ticket?: string });

export interface KeyAcquireRequest {
  cred: Credential;
  model: string;
  /** The model's in-flight limit for each tier, from the catalog. */
  limits: Record<string, number>;
  origin?: string | null;
  wait?: AcquireOptions;
}

function secondsToUtcMidnight(now: number): number {
  const next = new Date(now);
  next.setUTCHours(24, 0, 0, 0);
  return Math.max(1, Math.ceil((next.getTime() - now) / 1000));
}

export class KeyObject extends DurableObject<Env> {
  private readonly leases: LeaseTable;
  private readonly ledger: Ledger;
  private secret: string | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.leases = new LeaseTable(ctx.storage);
    this.ledger = new Ledger(ctx.storage.sql);
  }

  private get stored(): KeyRecord | undefined {
    return this.ctx.storage.kv.get<KeyRecord>("record");
  }

  async init(record: KeyRecord): Promise<void> {
    if (this.stored) throw new Error("key already exists");
    this.ctx.storage.kv.put("record", record);
    // Daily housekeeping of the ledger rides on the lease alarm; make sure one exists.
    await this.ctx.storage.setAlarm(Date.now() + 86_400_000);
  }

  info(): (PublicKey & { in_flight: Record<string, number> }) | null {
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

  update(patch: Partial<KeySettings>): PublicKey | null {
    const r = this.stored;
    if (!r || r.revoked_at) return null;
    const next: KeyRecord = { ...r, ...patch, updated_at: new Date().toISOString() };
    this.ctx.storage.kv.put("record", next);
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
    if (!r || r.id !== cred.keyId) return { ok: false, status: 401, code: Codes.authFailed, message: "authentication failed: unknown API key" };
    if (r.revoked_at) return { ok: false, status: 401, code: Codes.authFailed, message: "authentication failed: this API key has been revoked" };
    if (cred.kind === "internal") return { ok: true, caller: toCaller(r) };
    if (cred.kind === "key") {
      if (!constantTimeEqual(cred.secretHash, r.secret_hash)) {
        return { ok: false, status: 401, code: Codes.authFailed, message: "authentication failed: wrong API key secret" };
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
    return { ok: true, caller: { ...toCaller(r), token } };
  }

  /** Authenticates, checks the budget and takes a slot for the model, all in one atomic step. */
  async acquire(req: KeyAcquireRequest): Promise<KeyAcquireResult> {
    const auth = await this.authenticate(req.cred, req.origin);
    if (!auth.ok) return auth;
    const caller = auth.caller;
    if (caller.token?.models && !caller.token.models.includes(req.model)) {
      return { ok: false, status: 403, code: Codes.illegalField, message: `this token may not use model ${req.model}` };
    }
    const now = Date.now();
    const spent = this.ledger.day(utcDay(now));
    const overBudget =
      (caller.daily_budget_cny !== null && spent.cost_nano >= Math.round(caller.daily_budget_cny * 1e9)) ||
      (caller.daily_token_limit !== null && spent.tokens >= caller.daily_token_limit);
    if (overBudget) {
      const retryAfter = secondsToUtcMidnight(now);
      const reset = new Date(now + retryAfter * 1000).toISOString().slice(0, 10) + "T00:00:00Z";
      return {
        ok: false, status: 429, code: Codes.usageCap, retryAfter,
        message: `daily ${caller.daily_budget_cny !== null && spent.cost_nano >= Math.round(caller.daily_budget_cny * 1e9) ? "budget" : "token limit"} of this key is used up; it resets at ${reset}`,
      };
    }
    const tierLimit = req.limits[caller.tier] ?? 0;
    const limit = caller.max_concurrency === null ? tierLimit : Math.min(tierLimit, caller.max_concurrency);
    const got = await this.leases.acquire(req.model, limit, req.wait);
    if (got.granted) return { ok: true, caller, leaseId: got.leaseId, limit, inFlight: got.inFlight };
    return {
      ok: false, status: 429, code: Codes.concurrency, retryAfter: 1, limit, inFlight: got.inFlight,
      ...(got.ticket ? { ticket: got.ticket } : {}),
      message: `too many requests in flight for ${req.model}: the limit for this key is ${limit} (tier ${caller.tier}${caller.max_concurrency !== null ? `, max_concurrency ${caller.max_concurrency}` : ""}); retry after a request finishes`,
    };
  }

  /** Mints a browser token for an authenticated caller (not for a token: tokens cannot mint tokens). */
  async mintToken(
    cred: Credential,
    claims: { ttlSeconds: number; models: string[] | null; origin: string | null },
  ): Promise<{ ok: true; token: string; expires_at: string } | Denial> {
    // Checked first: a token bound to an origin would otherwise fail authentication with a misleading reason.
    if (cred.kind === "token") return { ok: false, status: 403, code: Codes.authFailed, message: "a browser token cannot mint tokens" };
    const auth = await this.authenticate(cred);
    if (!auth.ok) return auth;
    const r = this.stored!;
    return { ok: true, ...(await mintBrowserToken(r.id, await this.plainSecret(r), claims)) };
  }

  leaveQueue(model: string, ticket: string): void {
    this.leases.leaveQueue(model, ticket);
  }

  renew(leaseId: string): boolean {
    return this.leases.renew(leaseId);
  }

  /** Ends a request: records its usage (when it reached upstream) and frees its slot. Idempotent for the slot. */
  release(leaseId: string, usage?: UsageRecord): boolean {
    if (usage) this.ledger.record(usage);
    return this.leases.release(leaseId);
  }

  record(usage: UsageRecord): boolean {
    return this.ledger.record(usage);
  }

  usage(from: string, to: string): UsageReport {
    return this.ledger.report(from, to);
  }

  usageRows(from: string, to: string): UsageRow[] {
    return this.ledger.rows(from, to);
  }

  recentUsage(limit: number): UsageRecord[] {
    return this.ledger.recent(limit);
  }

  override async alarm(): Promise<void> {
    await this.leases.expire();
    this.ledger.prune(Date.now());
    // Keep a daily alarm for ledger housekeeping when no lease needs an earlier one.
    const next = await this.ctx.storage.getAlarm();
    if (next === null) await this.ctx.storage.setAlarm(Date.now() + 86_400_000);
  }
}
