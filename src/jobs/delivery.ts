// One webhook delivery attempt: re-check the URL policy, sign with the key's current secret, POST with a
// short timeout, never follow redirects. Returns what happened; the job's object records it and decides
// when to try again (schedule.ts).
import { unseal } from "../auth/crypto.ts";
import { keySealingSecret, readConfig } from "../config.ts";
import { log } from "../shared/log.ts";
import { keyStub } from "../keys/stub.ts";
import { WEBHOOK_TIMEOUT_MS } from "./config.ts";
import { checkCallbackUrl } from "./ssrf.ts";
import type { DeliveryAttempt } from "./types.ts";
import { signedHeaders } from "./webhook-signing.ts";

export interface DeliveryRequest {
  url: string;
  webhookId: string;
  keyId: string;
  jobId: string;
  /** The exact body: the same bytes on every attempt. */
  payload: string;
  attempt: number;
}

export type DeliveryOutcome =
  | { result: "delivered"; attempt: DeliveryAttempt }
  | { result: "retry"; attempt: DeliveryAttempt }
  /** Retrying cannot help: the URL is no longer allowed, or the key was revoked. */
  | { result: "give_up"; attempt: DeliveryAttempt; reason: string };

/** The key's current signing secret, or null when the key no longer exists or was revoked. */
async function currentSecret(env: Env, keyId: string): Promise<string | null> {
  const key = keyStub(env, keyId);
  const auth = await key.authenticate({ kind: "internal", keyId });
  if (!auth.ok) return null;
  const sealed = await key.webhookSecretSealed();
  return sealed === null ? null : unseal(keySealingSecret(env), sealed);
}

export async function attemptDelivery(
  env: Env,
  req: DeliveryRequest,
  { now = Date.now, timeoutMs = WEBHOOK_TIMEOUT_MS }: { now?: () => number; timeoutMs?: number } = {},
): Promise<DeliveryOutcome> {
  const started = now();
  const attempt = (status: number | null, error: string | null): DeliveryAttempt => ({
    attempt: req.attempt,
    at: started,
    status,
    error,
    duration_ms: Math.max(0, now() - started),
  });

  const policy = checkCallbackUrl(req.url, { allowPrivate: readConfig(env).webhookAllowPrivate });
  if (!policy.ok) {
    const reason = `callback_url is no longer allowed: ${policy.reason}`;
    return { result: "give_up", attempt: attempt(null, reason), reason };
  }
  let secret: string | null;
  try {
    secret = await currentSecret(env, req.keyId);
  } catch (err) {
    // The key's object or the sealing secret is unavailable: a gateway-side problem worth retrying. The
    // delivery log is shown to the client: the cause goes to the gateway's log only.
    log({
      level: "error",
      msg: "webhook signing secret unavailable",
      job_id: req.jobId,
      key_id: req.keyId,
      error: String(err),
    });
    return { result: "retry", attempt: attempt(null, "the gateway could not load the signing secret; it will retry") };
  }
  if (secret === null) {
    const reason = "the key was revoked, so its webhooks are no longer sent";
    return { result: "give_up", attempt: attempt(null, reason), reason };
  }

  const headers = {
    "content-type": "application/json",
    "user-agent": "glm-edge-webhooks/1",
    ...(await signedHeaders(secret, req.webhookId, req.payload, now())),
  };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await fetch(policy.url, {
      method: "POST",
      headers,
      body: req.payload,
      redirect: "manual",
      signal: controller.signal,
    });
    // Only the status matters; drop the body so the connection is freed.
    await res.body?.cancel().catch(() => undefined);
    const ok = res.status >= 200 && res.status < 300;
    const error = ok
      ? null
      : res.status >= 300 && res.status < 400
        ? `redirect to ${(res.headers.get("location") ?? "(no location)").slice(0, 200)} not followed`
        : `receiver answered ${res.status}`;
    log({
      level: ok ? "info" : "warn",
      msg: "webhook attempt",
      job_id: req.jobId,
      key_id: req.keyId,
      attempt: req.attempt,
      status: res.status,
    });
    return { result: ok ? "delivered" : "retry", attempt: attempt(res.status, error) };
  } catch (err) {
    // The runtime's error text (resolver and connection details of the network the gateway runs in) stays
    // in the gateway's log; the client's delivery log says only that the receiver could not be reached.
    const error = controller.signal.aborted ? `no answer within ${timeoutMs} ms` : "could not connect to the receiver";
    log({
      level: "warn",
      msg: "webhook attempt",
      job_id: req.jobId,
      key_id: req.keyId,
      attempt: req.attempt,
      error,
      cause: err instanceof Error ? err.message : String(err),
    });
    return { result: "retry", attempt: attempt(null, error) };
  } finally {
    clearTimeout(timer);
  }
}
