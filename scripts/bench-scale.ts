// npm run bench:scale: which Durable Object gives out first as the gateway grows. Starts three GLM simulators
// as three upstream accounts (GLM_UPSTREAMS), the gateway under `wrangler dev` with every Durable Object call
// counted (bench/scale/worker.ts: the same Worker and classes, its bindings wrapped), and the bench probe
// (bench/probe) for what one object of each class serves per second on this machine. Drives many keys from
// many concurrent clients in two phases — a roomy pool (the guards off the request path) and a tight one
// (every request of a key without a spare slot asks a guard) — then prints, per object class and for the
// busiest objects, the calls served, calls per request, and the projected ceiling per object and for the
// whole gateway with N keys and M accounts, naming the first bottleneck. Writes BENCHMARKS.md "## Scale"
// (between its markers) unless BENCH_OUT names another file or BENCH_SCALE_PRINT=1 says print only.
//
// Environment: BENCH_SCALE_KEYS (100), BENCH_SCALE_CLIENTS (200), BENCH_SCALE_SECONDS per phase (25).
import http from "node:http";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pool, rawRequest } from "../test-support/http.ts";
import { guardRun, logger, runMain, startAll, track } from "../bench/lifecycle.ts";
import { machine, startSimProcess } from "../bench/procs.ts";
import { freePort, type GatewayProcess } from "./wrangler-dev.ts";

const ROOT = resolve(import.meta.dirname, "..");
const N_KEYS = Number(process.env["BENCH_SCALE_KEYS"] ?? 100);
const CLIENTS = Number(process.env["BENCH_SCALE_CLIENTS"] ?? 200);
const SECONDS = Number(process.env["BENCH_SCALE_SECONDS"] ?? 25);
const ACCOUNTS = 3;
const ADMIN = "bench-admin-token";
const SEALING = "bench-key-encryption-secret";
/**
 * How long GLM takes to answer, for its own limit Σ L / d. Not the answer time measured here: on a shared
 * machine that is mostly the machine's queueing. 2 s is a short GLM-4 answer (README, capacity model).
 */
const GLM_ANSWER_S = 2;
/** Shorter than the production default (60 s) so a phase sees the keys' roll-up flushes. */
const FLUSH_MS = 10_000;
const PROD_FLUSH_MS = 60_000;
const DESTINATION =
  process.env["BENCH_SCALE_PRINT"] === "1"
    ? undefined
    : resolve(process.env["BENCH_OUT"] ?? join(ROOT, "BENCHMARKS.md"));

const log = logger("bench:scale");
guardRun(6 * 60_000, "bench:scale");

type Counts = Record<string, Record<string, Record<string, number>>>;

interface Phase {
  title: string;
  model: string;
  /** The account tier's limit for the model, per account. */
  accountLimit: number;
  content: string;
}

const PHASES: Phase[] = [
  {
    title: "roomy pool: glm-4-flash-250414, 3 × 3000 slots (6 guard shards per account)",
    model: "glm-4-flash-250414",
    accountLimit: 3000,
    content: "scale [[sim: tokens=20]]",
  },
  {
    title: "tight pool: glm-4-air-250414, 3 × 60 slots (one guard per account), 100 ms answers",
    model: "glm-4-air-250414",
    accountLimit: 60,
    content: "scale [[sim: tokens=20 delay=5]]",
  },
];

async function json<T>(url: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const res = await rawRequest({
    url,
    method: init.method ?? "GET",
    timeoutMs: 60_000,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  if (res.status >= 300)
    throw new Error(`${init.method ?? "GET"} ${url}: ${res.status} ${res.body.toString().slice(0, 300)}`);
  return JSON.parse(res.body.toString()) as T;
}

interface Drive {
  /** Answers by HTTP status (and "error" for a request that got none). */
  statuses: Record<string, number>;
  ok: number;
  refused: number;
  failed: number;
  perKey: number[];
  seconds: number;
  meanMs: number;
}

/** CLIENTS clients for SECONDS, client i on key i mod N, one request after another, plain (not streamed). */
async function drive(edge: GatewayProcess, keys: string[], phase: Phase): Promise<Drive> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const body = JSON.stringify({
    model: phase.model,
    stream: false,
    messages: [{ role: "user", content: phase.content }],
  });
  const out: Drive = { statuses: {}, ok: 0, refused: 0, failed: 0, perKey: keys.map(() => 0), seconds: 0, meanMs: 0 };
  let totalMs = 0;
  const started = performance.now();
  const end = started + SECONDS * 1000;
  try {
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        const k = c % keys.length;
        while (performance.now() < end) {
          try {
            const r = await rawRequest({
              url: `${edge.url}/v1/chat/completions`,
              method: "POST",
              agent,
              body,
              timeoutMs: 60_000,
              headers: { authorization: `Bearer ${keys[k]}`, "content-type": "application/json" },
            });
            out.perKey[k]!++;
            out.statuses[r.status] = (out.statuses[r.status] ?? 0) + 1;
            if (r.status === 200) {
              out.ok++;
              totalMs += r.ms;
            } else if (r.status === 429) out.refused++;
            else out.failed++;
          } catch {
            out.failed++;
            out.statuses["error"] = (out.statuses["error"] ?? 0) + 1;
          }
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  out.seconds = (performance.now() - started) / 1000;
  out.meanMs = out.ok ? totalMs / out.ok : NaN;
  return out;
}

/** Ops/s one object of each class serves here, from the probe: a pair is two calls. */
async function ceilings(probe: GatewayProcess): Promise<Record<string, number>> {
  const { key } = await json<{ key: string }>(`${probe.url}/setup`, { method: "POST" });
  const loop = async (mode: string, n: number) => {
    const res = await rawRequest({
      url: `${probe.url}/loop?mode=${mode}&n=${n}&c=50`,
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
      timeoutMs: 120_000,
    });
    if (res.status !== 200) throw new Error(`probe ${mode}: ${res.status} ${res.body.toString().slice(0, 300)}`);
    const r = JSON.parse(res.body.toString()) as { n: number; ms: number };
    return (2 * r.n * 1000) / Math.max(1, r.ms);
  };
  return {
    KeyObject: await loop("key", 2000),
    UpstreamGuard: await loop("guard", 2000),
    UsageRollup: await loop("rollup", 2000),
  };
}

interface ClassRow {
  cls: string;
  objects: number;
  calls: number;
  perRequest: number;
  busiest: { name: string; calls: number; perS: number; perRequest: number };
  methods: string;
}

function summarize(counts: Counts, requests: number, seconds: number): ClassRow[] {
  return Object.entries(counts)
    .map(([cls, objects]) => {
      const totals = Object.entries(objects).map(([name, m]) => ({
        name,
        calls: Object.values(m).reduce((a, b) => a + b, 0),
      }));
      const calls = totals.reduce((a, t) => a + t.calls, 0);
      const top = totals.sort((a, b) => b.calls - a.calls)[0]!;
      const methods: Record<string, number> = {};
      for (const m of Object.values(objects))
        for (const [k, v] of Object.entries(m)) methods[k] = (methods[k] ?? 0) + v;
      return {
        cls,
        objects: totals.length,
        calls,
        perRequest: calls / Math.max(1, requests),
        busiest: {
          name: top.name,
          calls: top.calls,
          perS: top.calls / seconds,
          perRequest: top.calls / Math.max(1, requests),
        },
        methods: Object.entries(methods)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k} ${v}`)
          .join(", "),
      };
    })
    .sort((a, b) => a.cls.localeCompare(b.cls));
}

const fmt = (x: number, d = 0) =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }) : "—";

interface PhaseResult {
  phase: Phase;
  drive: Drive;
  rows: ClassRow[];
}

/**
 * The projection. A key's object serves its own key's calls only: its ceiling in requests/s is the object's
 * ops/s over the calls one request of that key costs, and N keys multiply it. A guard shard serves a share of
 * every request of its pool: the busiest shard's calls per gateway request divide its ops/s. The roll-up is
 * called per key per flush, not per request: it bounds the keys active within a flush delay. GLM's own limit
 * is Σ L / d over the accounts.
 */
function projection(r: PhaseResult, ceil: Record<string, number>): { lines: string[]; first: string } {
  const requests = r.drive.ok + r.drive.refused + r.drive.failed;
  const key = r.rows.find((x) => x.cls === "KeyObject");
  const guard = r.rows.find((x) => x.cls === "UpstreamGuard");
  const rollup = r.rows.find((x) => x.cls === "UsageRollup");
  const keyCallsPerRequest = key ? key.calls / Math.max(1, requests) : 2;
  // In units of one object's ceiling C (load-independent), then in req/s with the probe's C on this machine.
  const keyK = N_KEYS / keyCallsPerRequest;
  const guardK = guard && guard.busiest.perRequest > 0 ? 1 / guard.busiest.perRequest : Infinity;
  const cKey = ceil["KeyObject"]!;
  const cGuard = ceil["UpstreamGuard"]!;
  const upstreamCeil = (ACCOUNTS * r.phase.accountLimit) / GLM_ANSWER_S;
  const candidates: [string, number][] = [
    [`the ${N_KEYS} keys' objects`, keyK * cKey],
    [`the busiest guard (${guard?.busiest.name ?? "none"})`, guardK * cGuard],
    [`GLM's own limit (Σ L / d = ${ACCOUNTS} × ${r.phase.accountLimit} / ${GLM_ANSWER_S} s)`, upstreamCeil],
  ];
  const first = candidates.reduce((a, b) => (b[1] < a[1] ? b : a));
  const statuses = Object.entries(r.drive.statuses)
    .sort()
    .map(([k, v]) => `${k}: ${fmt(v)}`)
    .join(", ");
  const lines = [
    `- ${fmt(requests)} requests in ${fmt(r.drive.seconds, 1)} s (${statuses}), ${fmt(requests / N_KEYS, 1)} per key; mean answer ${fmt(r.drive.meanMs)} ms (this machine's queueing, not GLM's).`,
    `- Keys' objects: ${fmt(keyCallsPerRequest, 2)} calls per request, each key's calls on its own object → ${N_KEYS} keys saturate at ${fmt(keyK, 1)} × C_key ≈ ${fmt(keyK * cKey)} req/s (C_key = ${fmt(cKey)} calls/s here); the gateway's ceiling from keys grows with N.`,
    guard
      ? `- Guards: ${fmt(guard.calls / Math.max(1, requests), 3)} calls per request over ${guard.objects} objects; the busiest takes ${fmt(guard.busiest.perRequest, 3)} per request → ${Number.isFinite(guardK) ? `${fmt(guardK, 1)} × C_guard ≈ ${fmt(guardK * cGuard)}` : "no"} req/s (C_guard = ${fmt(cGuard)}); more shards or accounts spread it.`
      : "- Guards: no call during the phase (blocks served every request).",
    rollup
      ? `- Usage roll-up: ${fmt(rollup.calls)} calls (${fmt(rollup.calls / r.drive.seconds, 1)}/s) from ${N_KEYS} keys flushing every ${FLUSH_MS / 1000} s — per key and flush, not per request: at the default ${PROD_FLUSH_MS / 1000} s one month's object takes ≈ ${fmt(ceil["UsageRollup"]! * (PROD_FLUSH_MS / 1000))} keys active within a minute.`
      : `- Usage roll-up: no flush fell within the phase.`,
    `- GLM's own limit at d = ${GLM_ANSWER_S} s: ≈ ${fmt(upstreamCeil)} req/s.`,
    `- **First bottleneck: ${first[0]}, at ≈ ${fmt(first[1])} req/s.**`,
  ];
  return { lines, first: first[0] };
}

function markdown(
  results: PhaseResult[],
  ceil: Record<string, number>,
  meta: { date: string; load: number[]; loadEnd: number[]; cpu: string; cores: number },
): string {
  const out: string[] = [
    "<!-- scale:begin (npm run bench:scale) -->",
    "## Scale",
    "",
    `\`npm run bench:scale\`, ${meta.date}: ${N_KEYS} keys, ${CLIENTS} concurrent clients, ${ACCOUNTS} simulators as ${ACCOUNTS} accounts (GLM_UPSTREAMS, tier V3), ` +
      `${SECONDS} s per phase, plain 20-token completions, roll-up flush every ${FLUSH_MS / 1000} s. ${meta.cpu}, ${meta.cores} cores, ` +
      `load ${meta.load.join(" ")} at the start and ${meta.loadEnd.join(" ")} at the end: the machine was shared with other work, so absolute rates here ` +
      "are low and noisy; the call counts and calls per request are not CPU-sensitive, and the projections use only them and the probe's per-object rate.",
    "",
    "Every Durable Object call is counted where it is made (bench/scale/worker.ts wraps the namespace bindings the Worker and the objects get; " +
      "the gateway has no such route). Ceiling per object: the bench probe's calls/s for one object of the class, 50 at a time, on this machine — " +
      Object.entries(ceil)
        .map(([c, v]) => `${c} ${fmt(v)}`)
        .join(", ") +
      " calls/s.",
    "",
  ];
  for (const r of results) {
    const requests = r.drive.ok + r.drive.refused + r.drive.failed;
    out.push(
      `### ${r.phase.title}`,
      "",
      "| class | objects | calls | calls/request | busiest object | its calls/s | its calls/request | ceiling/object (calls/s) | calls by method |",
      "|---|---:|---:|---:|---|---:|---:|---:|---|",
    );
    for (const row of r.rows) {
      out.push(
        `| ${row.cls} | ${row.objects} | ${fmt(row.calls)} | ${fmt(row.perRequest, 3)} | \`${row.busiest.name.slice(0, 40)}\` | ${fmt(row.busiest.perS, 1)} | ${fmt(row.busiest.perRequest, 3)} | ${ceil[row.cls] ? fmt(ceil[row.cls]!) : "—"} | ${row.methods} |`,
      );
    }
    out.push("", ...projection(r, ceil).lines, "");
    if (requests === 0) out.push("(no request completed)", "");
  }
  return out.join("\n");
}

/**
 * The gateway's own wrangler.toml with the counting Worker as its entry point (same bindings, classes, vars
 * and migrations), written under .wrangler/ (ignored by git); its relative paths made absolute.
 */
function countedConfig(): string {
  const toml = readFileSync(join(ROOT, "wrangler.toml"), "utf8")
    .replace(/^main = .*$/m, `main = ${JSON.stringify(join(ROOT, "bench", "scale", "worker.ts"))}`)
    .replace(/^directory = "\.\/public"$/m, `directory = ${JSON.stringify(join(ROOT, "public"))}`);
  if (!toml.includes("bench/scale/worker.ts")) throw new Error("wrangler.toml has no main = line to replace");
  const dir = join(ROOT, ".wrangler", "bench-scale");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "wrangler.toml");
  writeFileSync(path, toml);
  return path;
}

const READING = [
  "<!-- scale:reading (hand-written; kept by npm run bench:scale) -->",
  "<!-- scale:reading:end -->",
] as const;

/** Replaces the section between its markers (keeping its hand-written reading), or appends it to the file. */
function writeSection(path: string, section: string): void {
  const old = existsSync(path) ? readFileSync(path, "utf8") : "";
  const begin = old.indexOf("<!-- scale:begin");
  const endMark = "<!-- scale:end -->";
  const end = old.indexOf(endMark);
  const r0 = old.indexOf(READING[0]);
  const r1 = old.indexOf(READING[1]);
  const reading = r0 !== -1 && r1 > r0 ? old.slice(r0, r1 + READING[1].length) : `${READING[0]}\n${READING[1]}`;
  const block = `${section}\n${reading}\n${endMark}`;
  const next =
    begin !== -1 && end !== -1
      ? old.slice(0, begin) + block + old.slice(end + endMark.length)
      : old.trimEnd() + "\n\n" + block + "\n";
  writeFileSync(path, next);
}

async function main(): Promise<void> {
  const box = machine();
  log(`machine: ${box.cpu}, ${box.cores} cores, load ${box.load.join(" ")}`);
  const sims = [];
  for (let i = 0; i < ACCOUNTS; i++) sims.push(track(`simulator ${i + 1}`, await startSimProcess(await freePort())));
  const upstreams = sims.map((s, i) => ({
    id: `acct${i + 1}`,
    key: `bench-${i + 1}.upstream-key`,
    tier: "V3",
    base_url: s.baseUrl,
  }));
  const vars = {
    GLM_UPSTREAMS: JSON.stringify(upstreams),
    GLM_API_KEY: "unused.unused",
    ADMIN_TOKEN: ADMIN,
    KEY_ENCRYPTION_SECRET: SEALING,
    USAGE_ROLLUP_FLUSH_MS: String(FLUSH_MS),
  };
  log("starting the counted gateway and the probe under wrangler dev");
  const [edge, probe] = await startAll(
    [
      ["gateway (counted)", { vars, config: countedConfig() }],
      [
        "probe",
        {
          vars: { ADMIN_TOKEN: ADMIN, KEY_ENCRYPTION_SECRET: SEALING },
          config: join(ROOT, "bench", "probe", "wrangler.toml"),
        },
      ],
    ],
    log,
  );
  log(`creating ${N_KEYS} keys`);
  const keys = await pool(
    N_KEYS,
    10,
    async () =>
      (await json<{ key: string }>(`${edge!.url}/admin/keys`, { method: "POST", body: { name: "scale", tier: "V3" } }))
        .key,
  ).catch((err: unknown) => {
    console.error(edge!.output().slice(-4000));
    throw err;
  });

  const results: PhaseResult[] = [];
  for (const phase of PHASES) {
    // Every key once first (objects created, blocks taken), outside the count.
    await pool(keys.length, 20, (i) =>
      rawRequest({
        url: `${edge!.url}/v1/chat/completions`,
        method: "POST",
        timeoutMs: 60_000,
        headers: { authorization: `Bearer ${keys[i]}`, "content-type": "application/json" },
        body: JSON.stringify({ model: phase.model, messages: [{ role: "user", content: "warm up" }] }),
      }),
    );
    await json(`${edge!.url}/admin/_bench/counts`, { method: "DELETE" });
    log(`phase: ${phase.title}, ${SECONDS} s`);
    const d = await drive(edge!, keys, phase);
    const counts = await json<Counts>(`${edge!.url}/admin/_bench/counts`);
    const requests = d.ok + d.refused + d.failed;
    results.push({ phase, drive: d, rows: summarize(counts, requests, d.seconds) });
    log(`  ${requests} requests (${d.ok} ok, ${d.refused} refused, ${d.failed} other)`);
  }
  log("the probe: one object of each class, 50 calls at a time");
  const ceil = await ceilings(probe!);
  const md = markdown(results, ceil, {
    date: new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC",
    load: box.load,
    loadEnd: machine().load,
    cpu: box.cpu,
    cores: box.cores,
  });
  console.log("\n" + md + "\n");
  if (DESTINATION) {
    writeSection(DESTINATION, md);
    log(`wrote the Scale section of ${DESTINATION}`);
  }
}

await runMain(main);
