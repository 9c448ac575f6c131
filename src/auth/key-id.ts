// Self-authenticating key ids. A key id is 32 hex characters, as GLM's are: 16 of randomness and 16 of a
// tag, the first 8 bytes of HMAC-SHA256 over the random part under a server secret (KEY_ID_SECRET, else the
// key sealing secret). The Worker checks the tag before any Durable Object call, so a forged or made-up id
// costs no object call and creates no stored object. The full `<id>.<secret>` shape is unchanged, so GLM's
// SDKs (which split on the dot and sign JWTs with the id) keep working.
//
// Keys created before ids carried a tag are still honoured: an id whose tag does not verify is looked up in
// the key index in KV (one cached read, no object call) and accepted when the index lists it.
import { keySealingSecret } from "../config.ts";
import { BoundedCache } from "./bounded-cache.ts";

const RANDOM_HEX = 16;
const TAG_HEX = 16;
const encoder = new TextEncoder();

/** The HMAC key per secret (importing it is the costly part); plain data, safe to share across requests. */
const hmacKeys = new Map<string, Promise<CryptoKey>>();
/** Ids this isolate has already verified (bounded, oldest out): the common case costs no HMAC. */
const verified = new BoundedCache<true>(4096);

function idSecret(env: Env): string {
  const own = (env as { KEY_ID_SECRET?: string }).KEY_ID_SECRET;
  return typeof own === "string" && own !== "" ? own : keySealingSecret(env);
}

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    hmacKeys.set(secret, key);
  }
  return key;
}

async function tagOf(env: Env, random: string): Promise<string> {
  const mac = new Uint8Array(
    await crypto.subtle.sign("HMAC", await hmacKey(idSecret(env)), encoder.encode(`glm-edge key id ${random}`)),
  );
  let hex = "";
  for (let i = 0; i < TAG_HEX / 2; i++) hex += mac[i]!.toString(16).padStart(2, "0");
  return hex;
}

/** A new key id: random part and its tag. */
export async function newKeyId(env: Env): Promise<string> {
  const bytes = crypto.getRandomValues(new Uint8Array(RANDOM_HEX / 2));
  const random = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return random + (await tagOf(env, random));
}

/** True when the id carries a valid tag. Constant work per id; never calls an object. */
export async function hasValidTag(env: Env, id: string): Promise<boolean> {
  if (id.length !== RANDOM_HEX + TAG_HEX) return false;
  if (verified.get(id)) return true;
  const expected = await tagOf(env, id.slice(0, RANDOM_HEX));
  // Compared in full (no early exit): the tag is what an attacker would try to guess byte by byte.
  let diff = 0;
  const given = id.slice(RANDOM_HEX);
  for (let i = 0; i < TAG_HEX; i++) diff |= expected.charCodeAt(i) ^ given.charCodeAt(i);
  if (diff !== 0) return false;
  verified.set(id, true);
  return true;
}

/**
 * Whether a request may reach the key's object at all: a tagged id, or a key created before tags that the
 * key index lists. `indexed` reads the index (KV); it is only asked for ids whose tag does not verify.
 */
export async function mayBeKey(env: Env, id: string, indexed: (id: string) => Promise<boolean>): Promise<boolean> {
  if (await hasValidTag(env, id)) return true;
  return indexed(id);
}
