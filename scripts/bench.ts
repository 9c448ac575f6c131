// npm run bench: the numbers glm-edge is held to. Starts the GLM simulator, the gateway, the gateway with its
// limiter bypassed, a floor Worker that only forwards, and a probe Worker for the limiter, all under
// `wrangler dev`; measures time to first byte, throughput, CPU per stream, the limiter's and the catalog's
// costs and a summary's wall time, in rotating rounds; prints the tables and writes BENCHMARKS.md. Bounded to
// a few minutes; every process it starts is stopped on the way out, on errors and signals too.
// BENCH_QUICK=1 runs tiny sizes (a smoke test of the benchmark itself; its numbers mean little).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort, startWranglerDev, type GatewayProcess, type StartOptions } from "./wrangler-dev.ts";
import { percentile, rawRequest, streamRequest } from "../bench/http.ts";
import { streams, throughput, type Target } from "../bench/load.ts";
import { cpuMs, machine, startSimProcess, workerdPids, type SimProcess } from "../bench/procs.ts";
import { hotspots, profileWorker } from "../bench/profile.ts";
import { TARGETS, checks, markdown, type Dist, type Results, type TargetName } from "../bench/report.ts";
import { benchSummarize } from "../bench/summarize.ts";
import { writeNoLimiterConfig } from "../bench/variants.ts";

const ROOT = resolve(import.meta.dirname, "..");
const QUICK = process.env["BENCH_QUICK"] === "1";
const SIZES = QUICK
  ? { rounds: 1, c1: 10, c50: 50, c200: 200, tpRounds: 1, tpSeconds: 1, cpuRounds: 1, cpuStreams: 20, probeRounds: 1, probePerRound: 20, loopPairs: 200, catalogLookups: 50_000, profileStreams: 20, summaries: 1 }
  : { rounds: 3, c1: 60, c50: 250, c200: 400, tpRounds: 2, tpSeconds: 3, cpuRounds: 2, cpuStreams: 150, probeRounds: 4, probePerRound: 100, loopPairs: 2_000, catalogLookups: 500_000, profileStreams: 150, summaries: 3 };
const ADMIN = "bench-admin-token";
const UPSTREAM_KEY = "bench-upstream.key";
const SHORT = "bench [[sim: tokens=20]]";
const LONG = "bench [[sim: tokens=200]]";

// ---------------------------------------------------------------------------------------------------------
// Processes: every one started is stopped, whatever happens.

const running: { name: string; stop: () => Promise<void>; pid: number | undefined }[] = [];
let stopping: Promise<void> | undefined;

function stopAll(): Promise<void> {
  stopping ??= (async () => {
    for (const p of running.reverse()) await p.stop().catch((err: unknown) => console.error(`stopping ${p.name}: ${String(err)}`));
  })();
  return stopping;
}

process.on("SIGINT", () => void stopAll().then(() => process.exit(130)));
process.on("SIGTERM", () => void stopAll().then(() => process.exit(143)));
// Last resort if node exits without the async stop (an uncaught error): kill the process groups outright.
process.on("exit", () => {
  for (const p of running) {
    try {
      if (p.pid !== undefined) process.kill(-p.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** The whole run is bounded: past this, stop everything and fail rather than hang a terminal or a CI job. */
const DEADLINE_MS = 15 * 60_000;
setTimeout(() => {
  console.error(`[bench] still running after ${DEADLINE_MS / 60_000} minutes: stopping everything`);
  void stopAll().then(() => process.exit(1));
}, DEADLINE_MS).unref();

function track<T extends GatewayProcess | SimProcess>(name: string, p: T): T {
  running.push({ name, stop: p.stop, pid: p.child.pid });
  return p;
}

const log = (msg: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

/**
 * Local Durable Object state goes to memory when the machine has a tmpfs: SQLite's fsync on a shared disk
 * would be measured otherwise, a cost of this machine's disk and not of the gateway (production storage is
 * not a local file). The folders are removed when their process stops.
 */
const STATE_ROOT = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();

/**
 * Starts a `wrangler dev`, again on other ports if a free port it was given was taken meanwhile. Each gets
 * its own inspector port: left to itself, every wrangler reaches for 9229 at the same moment.
 */
async function startOne(name: string, opts: Omit<StartOptions, "port" | "persistTo">): Promise<GatewayProcess> {
  for (let attempt = 1; ; attempt++) {
    const extraArgs = opts.extraArgs?.includes("--inspector-port") ? opts.extraArgs : [...(opts.extraArgs ?? []), "--inspector-port", String(await freePort())];
    const persistTo = mkdtempSync(join(STATE_ROOT, `glm-edge-bench-${name}-`));
    const forget = () => rmSync(persistTo, { recursive: true, force: true });
    try {
      const p = await startWranglerDev({ ...opts, extraArgs, persistTo, port: await freePort() });
      return { ...p, stop: () => p.stop().finally(forget) };
    } catch (err) {
      forget();
      if (attempt >= 3 || !/already in use/i.test(String(err))) throw err;
      log(`${name}: its port was taken before wrangler bound it; again on another`);
    }
  }
}

/** Starts all at once; every one that started is tracked (for stopping) before any failure is thrown. */
async function startAll(specs: [string, Omit<StartOptions, "port" | "persistTo">][]): Promise<GatewayProcess[]> {
  const settled = await Promise.allSettled(specs.map(([name, opts]) => startOne(name, opts)));
  settled.forEach((r, i) => {
    if (r.status === "fulfilled") track(specs[i]![0], r.value);
  });
  const failed = settled.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<GatewayProcess>).value);
}

// ---------------------------------------------------------------------------------------------------------

function dist(samples: number[], errors: number): Dist {
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), n: samples.length, errors };
}

/** The targets in a different order each round, so slow drift does not favour one of them. */
function rotate<T>(xs: readonly T[], round: number): T[] {
  const k = round % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

async function json<T>(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<T> {
  const res = await rawRequest({ url, method: init.method ?? "GET", headers: init.headers ?? {}, ...(init.body ? { body: init.body } : {}), timeoutMs: 30_000 });
  if (res.status >= 300) throw new Error(`${init.method ?? "GET"} ${url}: ${res.status} ${res.body.toString().slice(0, 300)}`);
  return JSON.parse(res.body.toString()) as T;
}

async function createKey(gateway: GatewayProcess): Promise<string> {
  const k = await json<{ key: string }>(`${gateway.url}/admin/keys`, {
    method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: JSON.stringify({ name: "bench", tier: "V3" }),
  });
  return k.key;
}

async function main(): Promise<void> {
  const started = performance.now();
  const box = machine();
  log(`machine: ${box.cpu}, ${box.cores} cores, load ${box.load.join(" ")}`);

  const sim = track("simulator", await startSimProcess(await freePort()));
  const gatewayVars = { GLM_BASE_URL: sim.baseUrl, GLM_API_KEY: UPSTREAM_KEY, ADMIN_TOKEN: ADMIN, KEY_ENCRYPTION_SECRET: "bench-key-encryption-secret", GLM_ACCOUNT_TIER: "V3" };
  const inspectorPort = await freePort();
  const noLimiterConfig = writeNoLimiterConfig();
  running.push({ name: "no-limiter config", stop: async () => rmSync(noLimiterConfig, { force: true }), pid: undefined });
  log("starting the gateway, the gateway without limiter, the floor and the probe under wrangler dev");
  const [edge, noLimiter, floor, probe] = (await startAll([
    ["glm-edge", { vars: gatewayVars, extraArgs: ["--inspector-port", String(inspectorPort)] }],
    ["no-limiter", { vars: gatewayVars, config: noLimiterConfig }],
    ["floor", { vars: { UPSTREAM: sim.baseUrl }, config: join(ROOT, "bench", "floor", "wrangler.toml") }],
    ["probe", { vars: { ADMIN_TOKEN: ADMIN, KEY_ENCRYPTION_SECRET: "bench-key-encryption-secret" }, config: join(ROOT, "bench", "probe", "wrangler.toml") }],
  ])) as [GatewayProcess, GatewayProcess, GatewayProcess, GatewayProcess];
  const [edgeKey, noLimiterKey] = await Promise.all([createKey(edge), createKey(noLimiter)]);
  const targets: Record<TargetName, Target> = {
    direct: { name: "direct", base: sim.baseUrl, authorization: `Bearer ${UPSTREAM_KEY}` },
    floor: { name: "floor", base: `${floor.url}/v1`, authorization: `Bearer ${UPSTREAM_KEY}` },
    "no-limiter": { name: "no-limiter", base: `${noLimiter.url}/v1`, authorization: `Bearer ${noLimiterKey}` },
    "glm-edge": { name: "glm-edge", base: `${edge.url}/v1`, authorization: `Bearer ${edgeKey}` },
  };
  await selfCheck(targets);

  log("warming up");
  for (const t of TARGETS) await streams(targets[t], QUICK ? 10 : 100, 10, SHORT);

  // Time to first byte.
  const ttfbSamples: Record<number, Record<TargetName, { ttfb: number[]; errors: number }>> = {};
  const levels: [number, number][] = [[1, SIZES.c1], [50, SIZES.c50], [200, SIZES.c200]];
  for (let round = 0; round < SIZES.rounds; round++) {
    for (const t of rotate(TARGETS, round)) {
      for (const [c, n] of levels) {
        const run = await streams(targets[t], n, c, SHORT);
        const cell = ((ttfbSamples[c] ??= {} as Record<TargetName, { ttfb: number[]; errors: number }>)[t] ??= { ttfb: [], errors: 0 });
        cell.ttfb.push(...run.ttfb);
        cell.errors += run.errors.length;
        if (run.errors.length > 0) log(`  ${t} c=${c}: ${run.errors.length} errors, e.g. ${run.errors[0]}`);
      }
    }
    log(`time to first byte: round ${round + 1}/${SIZES.rounds} done`);
  }
  const ttfb: Results["ttfb"] = {};
  for (const [c, row] of Object.entries(ttfbSamples)) {
    ttfb[Number(c)] = Object.fromEntries(Object.entries(row).map(([t, s]) => [t, dist(s.ttfb, s.errors)]));
  }

  // Throughput at concurrency 50.
  const kinds: [string, boolean][] = [["short streams (20 tokens)", true], ["plain requests (20 tokens)", false]];
  const procs: Record<Exclude<TargetName, "direct">, GatewayProcess> = { floor, "no-limiter": noLimiter, "glm-edge": edge };
  const runtimeOf = (t: TargetName) => (t === "direct" ? [] : workerdPids(procs[t].child.pid!).runtime);
  const tp: Record<string, Partial<Record<TargetName, { ok: number; failed: number; seconds: number; cpu: number }>>> = {};
  for (let round = 0; round < SIZES.tpRounds; round++) {
    for (const t of rotate(TARGETS, round)) {
      for (const [kind, stream] of kinds) {
        // The runtime's CPU per completed request says why one Worker's throughput is lower than another's.
        const pids = runtimeOf(t);
        const c0 = cpuMs(pids);
        const r = await throughput(targets[t], stream, SHORT, 50, SIZES.tpSeconds);
        const cell = ((tp[kind] ??= {})[t] ??= { ok: 0, failed: 0, seconds: 0, cpu: 0 });
        cell.cpu += cpuMs(pids) - c0;
        cell.ok += r.ok;
        cell.failed += r.failed;
        cell.seconds += r.ok / (r.rps || 1);
      }
    }
    log(`throughput: round ${round + 1}/${SIZES.tpRounds} done`);
  }
  const throughputRows: Results["throughput"] = {};
  for (const [kind, row] of Object.entries(tp)) {
    throughputRows[kind] = Object.fromEntries(
      Object.entries(row).map(([t, c]) => [t, { rps: c.ok / (c.seconds || 1), failed: c.failed, ...(t === "direct" ? {} : { cpuMs: c.cpu / Math.max(1, c.ok) }) }]),
    );
  }

  // Request overhead before any upstream work: /healthz on the floor and on the gateway, alternating.
  const overhead: Record<string, number[]> = {};
  for (let round = 0; round < SIZES.probeRounds; round++) {
    for (const [name, base] of rotate([["floor", floor.url], ["glm-edge", edge.url]] as const, round)) {
      for (let i = 0; i < SIZES.probePerRound; i++) {
        const res = await rawRequest({ url: `${base}/healthz`, method: "GET", timeoutMs: 30_000 });
        if (res.status !== 200) throw new Error(`${name} /healthz answered ${res.status}`);
        (overhead[name] ??= []).push(res.ms);
      }
    }
  }

  // CPU per 200-token stream, from /proc, for the three Workers.
  const cpuTotals: Partial<Record<TargetName, { runtime: number; proxy: number; streams: number }>> = {};
  for (let round = 0; round < SIZES.cpuRounds; round++) {
    for (const t of rotate(["floor", "no-limiter", "glm-edge"] as const, round)) {
      const pids = workerdPids(procs[t].child.pid!);
      const r0 = cpuMs(pids.runtime);
      const p0 = cpuMs(pids.proxy);
      const run = await streams(targets[t], SIZES.cpuStreams, 10, LONG);
      // Work a Worker does after the response (releases, usage, logs) belongs to the request too.
      await new Promise((r) => setTimeout(r, 500));
      const cell = (cpuTotals[t] ??= { runtime: 0, proxy: 0, streams: 0 });
      cell.runtime += cpuMs(pids.runtime) - r0;
      cell.proxy += cpuMs(pids.proxy) - p0;
      cell.streams += run.ttfb.length;
    }
    log(`CPU: round ${round + 1}/${SIZES.cpuRounds} done`);
  }
  const cpu: Results["cpu"] = Object.fromEntries(
    Object.entries(cpuTotals).map(([t, c]) => [t, { runtimeMs: c.runtime / c.streams, proxyMs: c.proxy / c.streams }]),
  );

  // Where glm-edge's CPU goes: profiles while it relays long streams and while it answers plain requests.
  log("profiling glm-edge");
  const profiles: Results["profiles"] = [];
  const profiled: [string, () => Promise<unknown>][] = [
    [`relaying ${SIZES.profileStreams} streams of 200 tokens, 10 at a time`, () => streams(targets["glm-edge"], SIZES.profileStreams, 10, LONG)],
    [`answering plain requests (20 tokens) at concurrency 50 for ${SIZES.tpSeconds} s`, () => throughput(targets["glm-edge"], false, SHORT, 50, SIZES.tpSeconds)],
  ];
  for (const [title, during] of profiled) {
    try {
      const { profile } = await profileWorker(inspectorPort, during);
      profiles.push({ title, ...hotspots(profile) });
    } catch (err) {
      log(`profile failed (${title}): ${String(err)}`);
    }
  }

  log("limiter and catalog, through the probe");
  const limiter = await probeLimiter(probe);
  const catalogNs = await probeCatalog(probe);

  log("summarize");
  const summarize = await measureSummarize(edge, edgeKey, sim).catch((err: unknown): Results["summarize"] => ({ note: `not measured: ${String(err)}`, runs: [] }));

  const results: Results = {
    date: new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC",
    seconds: (performance.now() - started) / 1000,
    machine: { ...box, workerd: machine(workerdPids(edge.child.pid!).runtime[0]).workerd },
    loadAtEnd: machine().load,
    sizes: {
      "rounds (time to first byte)": SIZES.rounds,
      "streams per round at concurrency 1 / 50 / 200": `${SIZES.c1} / ${SIZES.c50} / ${SIZES.c200}`,
      "throughput": `${SIZES.tpRounds} × ${SIZES.tpSeconds} s per target and kind`,
      "CPU": `${SIZES.cpuRounds} × ${SIZES.cpuStreams} streams of 200 tokens per Worker`,
      "Durable Object storage": STATE_ROOT === "/dev/shm" ? "tmpfs (/dev/shm)" : STATE_ROOT,
    },
    ttfb, throughput: throughputRows, cpu, limiter, catalogNs, summarize, profiles,
    overhead: { floor: dist(overhead["floor"] ?? [], 0), "glm-edge": dist(overhead["glm-edge"] ?? [], 0) },
  };
  const targetChecks = checks(results);
  const md = markdown(results, targetChecks, findings(results));
  writeFileSync(join(ROOT, "BENCHMARKS.md"), md);
  console.log("\n" + md);
  log(`wrote BENCHMARKS.md in ${Math.round(results.seconds)} s`);
}

/** Each target answers a stream, and the bypassed build really holds no lease (else its column lies). */
async function selfCheck(targets: Record<TargetName, Target>): Promise<void> {
  for (const t of TARGETS) {
    const r = await streamRequest({
      url: `${targets[t].base}/chat/completions`, method: "POST", timeoutMs: 30_000,
      headers: { authorization: targets[t].authorization, "content-type": "application/json" },
      body: JSON.stringify({ model: "glm-4-flash-250414", stream: true, messages: [{ role: "user", content: SHORT }] }),
    });
    if (r.status !== 200 || !r.complete) throw new Error(`${t} did not answer a stream: ${r.status} ${r.error ?? ""}`);
    if (t === "no-limiter" && r.headers["x-concurrency-in-flight"] !== "0") throw new Error("the no-limiter build still takes slots: is the alias applied?");
    if (t === "glm-edge" && r.headers["x-concurrency-in-flight"] === "0") throw new Error("glm-edge took no slot");
  }
}

async function probeLimiter(probe: GatewayProcess): Promise<Results["limiter"]> {
  const { key } = await json<{ key: string }>(`${probe.url}/setup`, { method: "POST" });
  const headers = { authorization: `Bearer ${key}` };
  const paths = ["/noop", "/auth", "/slot", "/slot-usage"];
  const samples: Record<string, number[]> = {};
  for (let round = 0; round < SIZES.probeRounds; round++) {
    for (const p of rotate(paths, round)) {
      for (let i = 0; i < SIZES.probePerRound; i++) {
        const res = await rawRequest({ url: probe.url + p, method: "POST", headers, timeoutMs: 30_000 });
        if (res.status !== 200) throw new Error(`probe ${p}: ${res.status} ${res.body.toString()}`);
        (samples[p] ??= []).push(res.ms);
      }
    }
  }
  const latency = Object.fromEntries(Object.entries(samples).map(([p, s]) => [p, dist(s, 0)]));
  const diff = (a: string, b: string) => ({ p50: latency[a]!.p50 - latency[b]!.p50, p99: latency[a]!.p99 - latency[b]!.p99 });
  const rates: Record<string, number> = {};
  const modes: [string, string][] = [
    ["as the gateway (key's object, upstream slots from its block)", "slot"],
    ["as the gateway, release with a usage record", "slot-usage"],
    ["key's object RPCs alone (no Worker-side wrapper)", "key"],
    ["upstream guard per request (the round trip blocks avoid)", "guard"],
  ];
  for (const [label, mode] of modes) {
    const r = await json<{ n: number; ms: number }>(`${probe.url}/loop?mode=${mode}&n=${SIZES.loopPairs}&c=50`, { method: "POST", headers });
    rates[label] = (r.n * 1000) / Math.max(1, r.ms);
  }
  return { latency, acquireRelease: diff("/slot", "/auth"), usageRecord: diff("/slot-usage", "/slot"), rates };
}

async function probeCatalog(probe: GatewayProcess): Promise<number> {
  const pids = workerdPids(probe.child.pid!).runtime;
  const c0 = cpuMs(pids);
  await json(`${probe.url}/catalog?n=${SIZES.catalogLookups}`, { method: "POST" });
  return ((cpuMs(pids) - c0) * 1e6) / SIZES.catalogLookups;
}

/**
 * Summaries of a 1,000,000-character text (Chinese and English) against their critical path, by
 * bench/summarize.ts (the summarize feature's own benchmark, run here against the running gateway).
 */
async function measureSummarize(edge: GatewayProcess, key: string, sim: SimProcess): Promise<Results["summarize"]> {
  const doc = await json<{ paths: Record<string, unknown> }>(`${edge.url}/openapi.json`);
  if (!doc.paths["/v1/summarize"]) return { note: "not measured: the gateway has no /v1/summarize yet", runs: [] };
  const runs: Results["summarize"]["runs"] = [];
  for (const language of ["zh", "en"] as const) {
    const r = await benchSummarize({ gatewayUrl: edge.url, key, simUrl: sim.url, language, runs: SIZES.summaries });
    runs.push({ language, chars: r.chars, pieces: r.pieces, wallMs: r.wallMs, criticalMs: r.criticalPathMs });
  }
  return {
    note: `Streamed, read to the last byte; median of ${SIZES.summaries} run(s) after a warm-up. The simulator paced like GLM-4-Flash (first token 800 ms, 15 ms per token); ` +
      "the critical path is the slowest map call plus the merge levels and the final step, as the simulator timed them (bench/summarize.ts).",
    runs,
  };
}

/** Plain statements read off the numbers, so the report says what the tables mean. */
function findings(r: Results): string[] {
  const out: string[] = [];
  const c1 = r.ttfb[1];
  if (c1?.["glm-edge"] && c1.floor && c1["no-limiter"]) {
    const added = c1["glm-edge"].p50 - c1.floor.p50;
    const limiter = c1["glm-edge"].p50 - c1["no-limiter"].p50;
    const routing = r.overhead["glm-edge"].p50 - r.overhead.floor.p50;
    const auth = r.limiter.latency["/auth"]!.p50 - r.limiter.latency["/noop"]!.p50;
    // A difference smaller than the run's noise can come out negative: say so rather than print it.
    const ms = (x: number) => (x >= 0 ? `${x.toFixed(2)} ms` : "no measurable part (below this run's noise)");
    const rest = added - Math.max(0, limiter) - Math.max(0, routing) - Math.max(0, auth);
    out.push(
      `Time to first byte at concurrency 1: glm-edge adds ${ms(added)} over the floor (p50). Of that, ${ms(limiter)} is the limiter ` +
        `(glm-edge − no-limiter; the probe puts one acquire + release at ${r.limiter.acquireRelease.p50.toFixed(2)} ms: one round trip to the key's object each, ` +
        `which hands out the upstream slot from its block of the guard's); about ${ms(routing)} is what every gateway request pays before its route runs (/healthz, glm-edge − floor: ` +
        `the static-assets router in front of the Worker, the middleware, the log line); about ${ms(auth)} is the key check in the key's object (probe /auth − /noop, ` +
        `which the no-limiter build still does); ${rest >= 0 ? `the remaining ${rest.toFixed(2)} ms is` : "within this run's noise are"} validation, the catalog and the relay of the first chunk.`,
    );
  }
  const e = r.cpu["glm-edge"]?.runtimeMs;
  const f = r.cpu.floor?.runtimeMs;
  const n = r.cpu["no-limiter"]?.runtimeMs;
  if (e !== undefined && f !== undefined && n !== undefined) {
    const relay = r.profiles[0]?.functions.find((h) => h.name.startsWith("pull — src/upstream/relay.ts"));
    out.push(
      `CPU per 200-token stream: the gateway's runtime spends ${(e - f).toFixed(2)} ms more than the floor's, of which ${e - n >= 0 ? `${(e - n).toFixed(2)} ms` : "no measurable part"} is the limiter. ` +
        "The floor hands the upstream body to the runtime, which pumps it without entering JavaScript; the gateway relays it through a JavaScript ReadableStream " +
        `(src/upstream/relay.ts), so every chunk costs a read, an observe and an enqueue in the isolate${relay ? ` — \`pull\` alone is ${(relay.share * 100).toFixed(0)} % of the samples in the first profile below, the runtime's stream built-ins most of the rest` : ""}.`,
    );
  }
  const plain = r.throughput["plain requests (20 tokens)"];
  if (plain?.["glm-edge"]?.cpuMs !== undefined && plain.floor?.cpuMs !== undefined) {
    out.push(
      `Throughput is bound by the runtime's CPU: locally one isolate thread runs the Worker and all its Durable Objects, and a plain request costs glm-edge ${plain["glm-edge"].cpuMs.toFixed(2)} ms of it ` +
        `against the floor's ${plain.floor.cpuMs.toFixed(2)} ms (key check, two leases, the usage record, validation, the log line); in production the objects run in their own isolates.`,
    );
  }
  return out;
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await stopAll();
}
