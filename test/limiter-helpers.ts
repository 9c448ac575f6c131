// Helpers shared by the tests that drive keys' objects and upstream guards directly (limiter-blocks,
// fair-share): a model of its own per test, keys with their credentials, and what the objects hold.
import { env } from "cloudflare:test";
import { sha256Hex } from "../src/auth/crypto.ts";
import type { Credential } from "../src/auth/credentials.ts";
import { DEFAULT_CATALOG } from "../src/catalog/default.ts";
import type { ModelEntry } from "../src/catalog/schema.ts";
import type { KeyObject } from "../src/keys/key-object.ts";
import type { UpstreamGuard } from "../src/limiter/guard.ts";
import { createKey } from "./helpers.ts";

/** A model of its own per test, so each test has its own guard; `account` is its limit at account tier V0. */
export function model(id: string, account: number, perKey = 1000): ModelEntry {
  return { ...DEFAULT_CATALOG.models[0]!, id, concurrency: { V0: account, V1: perKey, V2: perKey, V3: perKey } };
}

export async function keyFor(settings: Record<string, unknown> = {}): Promise<{ id: string; cred: Credential }> {
  const k = await createKey({ tier: "V1", ...settings });
  const [keyId, secret] = k.key.split(".");
  return { id: k.id, cred: { kind: "key", keyId: keyId!, secretHash: await sha256Hex(secret!) } };
}

export const keyObject = (id: string) => env.KEYS.get(env.KEYS.idFromName(id)) as DurableObjectStub<KeyObject>;
/** The single account's pool for a model (no GLM_UPSTREAMS in the test environment: the account "default"). */
export const pool = (m: string) => `default:${m}`;
export const guard = (m: string) => env.GUARD.get(env.GUARD.idFromName(pool(m))) as DurableObjectStub<UpstreamGuard>;
export const guardLeased = async (m: string) => (await guard(m).inFlight())[pool(m)] ?? 0;
export const keyInFlight = async (id: string, m: string) => (await keyObject(id).info())!.in_flight[m] ?? 0;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
