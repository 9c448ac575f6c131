// Small crypto helpers on WebCrypto: random ids, hashes, constant-time compare, and AES-GCM sealing
// (key secrets are kept hashed for bearer auth and sealed only because GLM's JWT form is signed with them).
// Base64 in either alphabet is Hono's (hono/utils/encode), the same code hono/jwt signs and verifies with.
import { decodeBase64, decodeBase64Url, encodeBase64, encodeBase64Url } from "hono/utils/encode";

const enc = new TextEncoder();
const dec = new TextDecoder();

function bytesToHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Unpadded base64url (RFC 4648 §5), as in JWTs. */
export function toB64url(b: Uint8Array): string {
  return encodeBase64Url(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)).replace(/=+$/, "");
}

export function fromB64url(s: string): Uint8Array {
  return decodeBase64Url(s);
}

/** Padded standard base64. */
export function toB64(b: Uint8Array): string {
  return encodeBase64(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function fromB64(s: string): Uint8Array {
  return decodeBase64(s);
}

export function randomHex(bytes: number): string {
  return bytesToHex(crypto.getRandomValues(new Uint8Array(bytes)));
}

export function randomB64url(bytes: number): string {
  return toB64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

export async function sha256Hex(text: string): Promise<string> {
  return bytesToHex(new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(text))));
}

/** Constant-time string equality (length is not secret here: both sides are fixed-size digests or tokens). */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = enc.encode(a);
  const y = enc.encode(b);
  if (x.byteLength !== y.byteLength) {
    // Still spend the compare so timing does not reveal where the lengths differ.
    crypto.subtle.timingSafeEqual(x, x);
    return false;
  }
  return crypto.subtle.timingSafeEqual(x, y);
}

async function sealingKey(material: string): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey("raw", enc.encode(material), "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: enc.encode("glm-edge/key-seal/v1"), info: new Uint8Array() },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

export async function seal(material: string, plaintext: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await sealingKey(material), enc.encode(plaintext));
  return `v1.${toB64url(iv)}.${toB64url(new Uint8Array(ct))}`;
}

export async function unseal(material: string, sealed: string): Promise<string> {
  const [v, iv, ct] = sealed.split(".");
  if (v !== "v1" || !iv || !ct) throw new Error("sealed value has an unknown format");
  const pt = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: fromB64url(iv) },
    await sealingKey(material),
    fromB64url(ct),
  );
  return dec.decode(pt);
}

export async function hmacSha256(secret: Uint8Array | string, data: string): Promise<Uint8Array> {
  const raw = typeof secret === "string" ? enc.encode(secret) : secret;
  const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(data)));
}
