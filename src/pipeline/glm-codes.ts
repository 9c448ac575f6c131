// The one table of GLM's error codes: the HTTP status GLM answers with, whether trying again later can
// succeed (transient), and whether the code means "no free slot" (wait for one rather than count a failure).
// Chat, summarize, async jobs and the tests all read it; nothing else decides these three things.
// Source: ../shared/reference/glm-api.md "Errors"; the gateway's own codes (1234, 503) are GLM-shaped.

export interface CodeRule {
  /** The status GLM answers with (and the gateway passes on). */
  status: number;
  /** Another try later can succeed: overload, rate, network, internal trouble. */
  transient: boolean;
  /** The account or key has no free slot now (1302): wait for one, it is not a failure of the request. */
  noSlot: boolean;
}

const rule = (status: number, transient = false, noSlot = false): CodeRule => ({ status, transient, noSlot });

/** Every GLM code the gateway knows, with what it means for a retry. */
export const GLM_CODES: Readonly<Record<string, CodeRule>> = {
  // Authentication: the credential is wrong; trying again does not fix it.
  "1000": rule(401),
  "1001": rule(401),
  "1002": rule(401),
  "1003": rule(401),
  "1004": rule(401),
  // The request itself is wrong.
  "1210": rule(400),
  "1211": rule(400),
  "1212": rule(400),
  "1213": rule(400),
  "1214": rule(400),
  "1215": rule(400),
  "1231": rule(400),
  "1261": rule(400),
  "1301": rule(400),
  // The account: balance, standing, daily quota, usage cap. Waiting seconds does not fix them.
  "1110": rule(429),
  "1111": rule(429),
  "1112": rule(429),
  "1113": rule(429),
  "1121": rule(429),
  "1304": rule(429),
  "1308": rule(429),
  // Concurrency (ours or the account's): a slot frees up when a request ends.
  "1302": rule(429, true, true),
  // Request rate, and the platform being overloaded: GLM says to try again shortly.
  "1303": rule(429, true),
  "1305": rule(429, true),
  // Internal trouble, upstream or on the way there.
  "500": rule(500, true),
  "1230": rule(500, true),
  "1234": rule(500, true),
  // The gateway's own: limiter or configuration unavailable for a moment.
  "503": rule(503, true),
};

/**
 * What a code means. An unknown code falls back to the HTTP status it came with: 5xx, 408 and 429 are
 * transient (as GLM's SDK treats them), anything else is not.
 */
export function codeRule(code: string, httpStatus?: number): CodeRule {
  const known = GLM_CODES[code];
  if (known) return known;
  const status = httpStatus ?? (/^[1-5]\d\d$/.test(code) ? Number(code) : 500);
  return rule(status, status >= 500 || status === 408 || status === 429);
}

/**
 * The status the gateway answers with for an upstream error. GLM's own concurrency and overload answers
 * are 429s to the caller whatever status they came with, so clients back off as for any rate limit.
 */
export function clientStatus(code: string, httpStatus: number): number {
  const known = GLM_CODES[code];
  return known?.status === 429 ? 429 : httpStatus;
}
