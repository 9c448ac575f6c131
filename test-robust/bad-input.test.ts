// Bad input, property-based: thousands of requests generated (seeded, fast-check) from the gateway's own
// OpenAPI document, each wrong in one way, to every public and admin route. Every answer must be a 4xx in
// GLM's error shape with an x-request-id — never a 5xx, a 2xx, or a hang — none may reach the upstream, and
// the gateway must be healthy afterwards with no slot held.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, startE2E, type E2E } from "../test-support/harness.ts";
import { pool, rawRequest, type RawResponse } from "../test-support/http.ts";
import { CLIENT_TIMEOUT_MS, chat, healthy, isGlmError, keyInFlight, sseData } from "./helpers.ts";
import {
  malformed,
  operations,
  oversized,
  type Fixture,
  type Malformed,
  type OpenApiDoc,
  type Operation,
} from "./malformed.ts";

const SEED = 20_261_125;
const TOTAL = 5_200;
/** The gateway's body limit (src/app.ts MAX_BODY_BYTES). */
const BODY_LIMIT = 8 * 1024 * 1024;

let e: E2E;
let doc: OpenApiDoc;
let ops: Operation[];
let fx: Fixture;
let keyId: string;

beforeAll(async () => {
  e = await startE2E({ vars: { GLM_ACCOUNT_TIER: "V3" } });
  const key = await e.createKey({ tier: "V0" });
  keyId = key.id;
  const docRes = await rawRequest({ url: `${e.url}/openapi.json`, method: "GET", timeoutMs: CLIENT_TIMEOUT_MS });
  expect(docRes.status).toBe(200);
  doc = JSON.parse(docRes.body.toString()) as OpenApiDoc;
  // The two routes that serve the document itself are public routes too, though not in it.
  ops = [
    ...operations(doc),
    ...["/openapi.json", "/docs"].map((template) => ({
      method: "GET",
      template,
      security: null,
      contentTypes: [],
      query: [],
      headers: [],
      pathParams: [],
    })),
  ];
  const catalog = await rawRequest({
    url: `${e.url}/admin/catalog`,
    method: "GET",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    timeoutMs: CLIENT_TIMEOUT_MS,
  });
  fx = {
    clientKey: key.key,
    keyId: key.id,
    keySecret: key.key.split(".")[1]!,
    adminToken: ADMIN_TOKEN,
    modelId: "glm-4-flash-250414",
    catalog: JSON.parse(catalog.body.toString()),
  };
  // The key's owner used it before the storm: a credential the gateway has seen succeed keeps working
  // while the storm's failures from this address are rate limited (src/auth/failure-limit.ts).
  const used = await rawRequest({
    url: `${e.url}/v1/usage`,
    method: "GET",
    headers: { authorization: `Bearer ${key.key}` },
    timeoutMs: CLIENT_TIMEOUT_MS,
  });
  expect(used.status).toBe(200);
  e.sim.sim.reset();
});

afterAll(async () => {
  await e?.close();
});

interface Outcome {
  req: Malformed;
  res?: RawResponse;
  error?: string;
}

function send(req: Malformed): Promise<Outcome> {
  return rawRequest({
    url: e.url + req.path,
    method: req.method,
    headers: req.headers,
    ...(req.body ? { body: req.body } : {}),
    timeoutMs: CLIENT_TIMEOUT_MS,
  })
    .then((res) => ({ req, res }))
    .catch((err: unknown) => ({ req, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }));
}

/** Why an answer breaks the contract, or undefined when it keeps it. */
function problem(o: Outcome): string | undefined {
  if (!o.res) return `no answer (${o.error})`;
  const { status, headers, body } = o.res;
  if (status < 400 || status > 499) return `status ${status}`;
  if (!String(headers["content-type"]).startsWith("application/json")) return `content-type ${headers["content-type"]}`;
  if (!isGlmError(body.toString())) return "body is not GLM's error shape";
  if (!headers["x-request-id"]) return "no x-request-id";
  return undefined;
}

function describeFailure(o: Outcome, why: string): string {
  const body = o.req.body
    ? ` body[${o.req.body.length}] ${JSON.stringify(o.req.body.subarray(0, 120).toString("latin1"))}`
    : "";
  return `${why} ← ${o.req.kind}: ${o.req.method} ${o.req.path.slice(0, 160)} ${JSON.stringify(o.req.headers).slice(0, 200)}${body} → ${o.res?.body.toString().slice(0, 200) ?? ""}`;
}

describe("bad input to every route", () => {
  it(
    `answers ${TOTAL}+ generated malformed requests with 4xx GLM errors, none reaching the upstream`,
    { timeout: 300_000 },
    async () => {
      expect(ops.length).toBeGreaterThanOrEqual(20);
      const perOp = Math.ceil(TOTAL / ops.length);
      const requests = ops.flatMap((op, i) =>
        fc.sample(malformed(doc, ops, op, fx), { seed: SEED + i, numRuns: perOp }),
      );
      expect(requests.length).toBeGreaterThanOrEqual(5_000);

      const outcomes = await pool(requests.length, 16, (i) => send(requests[i]!));
      // Oversized bodies one at a time: each is megabytes.
      for (const req of oversized(ops, fx, BODY_LIMIT)) outcomes.push(await send(req));

      const byKind = new Map<string, number>();
      const byStatus = new Map<number, number>();
      for (const o of outcomes) {
        const kind = o.req.kind.split(" ")[0]!;
        byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
        if (o.res) byStatus.set(o.res.status, (byStatus.get(o.res.status) ?? 0) + 1);
      }
      console.log(
        `[bad input] ${outcomes.length} requests over ${ops.length} operations; kinds ${JSON.stringify(Object.fromEntries(byKind))}; statuses ${JSON.stringify(Object.fromEntries([...byStatus].sort((a, b) => a[0] - b[0])))}`,
      );

      const failures = outcomes.flatMap((o) => {
        const why = problem(o);
        return why ? [describeFailure(o, why)] : [];
      });
      expect(failures.slice(0, 25), `${failures.length} of ${outcomes.length} answers broke the contract`).toEqual([]);
      // Nothing malformed may reach GLM: the upstream saw no request at all.
      expect(e.sim.sim.stats().total).toBe(0);
    },
  );

  it("is healthy afterwards: /healthz, a real chat, no slot held, no upstream request open", async () => {
    expect(await healthy(e)).toBe(true);
    const ok = await chat(e, { key: fx.clientKey, content: "after the storm [[sim: tokens=3]]", stream: true });
    expect(ok.status).toBe(200);
    expect(sseData(ok.body).at(-1)).toBe("[DONE]");
    expect(await keyInFlight(e, keyId)).toBe(0);
    expect(e.sim.sim.stats().in_flight).toBe(0);
  });
});
