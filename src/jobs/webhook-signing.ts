// Standard Webhooks signatures (https://www.standardwebhooks.com): the secret is the base64 part after
// "whsec_", the signed content is `${webhook-id}.${webhook-timestamp}.${body}`, and the header carries
// `v1,<base64 HMAC-SHA256>`. Receivers verify with the `standardwebhooks` library (or these few lines).
import { fromB64, hmacSha256, toB64 } from "../auth/crypto.ts";

export const SECRET_PREFIX = "whsec_";

export interface WebhookHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

/** The raw HMAC key of a `whsec_…` secret. */
export function secretBytes(secret: string): Uint8Array {
  const b64 = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  return fromB64(b64);
}

/** `v1,<signature>` for one message; timestamp in seconds since the epoch. */
export async function signature(secret: string, id: string, timestamp: number, body: string): Promise<string> {
  return `v1,${toB64(await hmacSha256(secretBytes(secret), `${id}.${timestamp}.${body}`))}`;
}

/** The three headers of a signed delivery. A new timestamp (and signature) on every attempt. */
export async function signedHeaders(
  secret: string,
  id: string,
  body: string,
  now = Date.now(),
): Promise<WebhookHeaders> {
  const timestamp = Math.floor(now / 1000);
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": await signature(secret, id, timestamp, body),
  };
}
