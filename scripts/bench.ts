// npm run bench: the numbers glm-edge is held to. Starts the GLM simulator, the gateway, a floor Worker that
// only forwards, the limiter floor (the floor plus one exact lease in a Durable Object), optionally an older
// build of the gateway, and a probe Worker for the gateway's limiter objects, all under `wrangler dev`;
// measures time to first byte, throughput, CPU per stream, the limiter's and the catalog's costs and a
// summary's wall time, in rotating rounds; prints the tables and writes BENCHMARKS.md. Bounded to a few
// minutes; every process it starts is stopped on the way out, on errors and signals too.
//
// Environment:
//   BENCH_QUICK=1       tiny sizes (a smoke test of the benchmark itself; its numbers mean little).
//   BENCH_ONLY=a,b      only these sections: ttfb, throughput, cpu, profile, probe, summarize.
//   BENCH_OUT=path      write the markdown there. Without it, a full-size run of every section writes
//                       BENCHMARKS.md, and a BENCH_ONLY or BENCH_QUICK run only prints it.
//   BENCH_BASELINE=dir  another checkout of the gateway (a git worktree of an older commit, with its own
//                       node_modules) measured in the same run as "glm-edge (before)".
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { freePort, type GatewayProcess, type StartOptions } from "./wrangler-dev.ts";
import {
  guardRun,
  logger,
  runMain,
  startAll as startAllLogged,
  startOne as startOneLogged,
  STATE_ROOT,
  track,
} from "../bench/lifecycle.ts";
import { percentile, rawRequest, streamRequest, type AbortPoint } from "../test-support/http.ts";
import { chatBody, streams, throughput, type Target } from "../bench/load.ts";
import { cpuMs, machine, startSimProcess, workerdPids, type SimProcess } from "../bench/procs.ts";
import { hotspots, profileWorker } from "../bench/profile.ts";
import {
  ALL_TARGETS,
  PLAIN,
  SECTIONS,
  SHORT_STREAMS,
  checks,
  findings,
  markdown,
  type Dist,
  type Results,
  type Section,
  type TargetName,
} from "../bench/report.ts";
import { benchSummarize } from "../bench/summarize.ts";

const ROOT = resolve(import.meta.dirname, "..");
const QUICK = process.env["BENCH_QUICK"] === "1";
const SIZES = QUICK
  ? {
      rounds: 1,
      c1: 10,
      c50: 50,
      c200: 200,
      tpRounds: 1,
      tpSeconds: 2,
      cpuRounds: 1,
      cpuStreams: 20,
      probeRounds: 1,
      probePerRound: 20,
      loopPairs: 200,
      catalogLookups: 50_000,
      profileStreams: 20,
      summaries: 1,
    }
  : {
      rounds: 3,
      c1: 60,
      c50: 250,
      c200: 400,
      tpRounds: 2,
      tpSeconds: 3,
      cpuRounds: 2,
      cpuStreams: 150,
      probeRounds: 4,
      probePerRound: 100,
      loopPairs: 2_000,
      catalogLookups: 500_000,
      profileStreams: 150,
      summaries: 3,
    };

function parseSections(value: string | undefined): Section[] {
  if (value === undefined || value.trim() === "") return [...SECTIONS];
  const asked = value
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  const unknown = asked.filter((x) => !(SECTIONS as readonly string[]).includes(x));
  if (unknown.length > 0)
    throw new Error(`BENCH_ONLY: unknown section(s) ${unknown.join(", ")}; known: ${SECTIONS.join(", ")}`);
  return SECTIONS.filter((x) => asked.includes(x));
}
const ONLY = process.env["BENCH_ONLY"]?.trim() || undefined;
const SECTIONS_RUN = parseSections(ONLY);
const run = (s: Section) => SECTIONS_RUN.includes(s);
const OUT = process.env["BENCH_OUT"];
/** BENCHMARKS.md is the record of full runs: a partial or quick run never replaces it unless BENCH_OUT says so. */
const DESTINATION = OUT ? resolve(OUT) : ONLY === undefined && !QUICK ? join(ROOT, "BENCHMARKS.md") : undefined;
const BASELINE = process.env["BENCH_BASELINE"] ? resolve(process.env["BENCH_BASELINE"]) : undefined;
if (BASELINE && !existsSync(join(BASELINE, "node_modules", "wrangler"))) {
  throw new Error(`BENCH_BASELINE=${BASELINE}: no node_modules/wrangler there; run npm ci in that checkout first`);
}
const ADMIN = "bench-admin-token";
const UPSTREAM_KEY = "bench-upstream.key";
const MODEL = "glm-4-flash-250414";
const SHORT = "bench [[sim: tokens=20]]";
const LONG = "bench [[sim: tokens=200]]";

guardRun(15 * 60_000, "bench");
const log = logger("bench");

const startOne = (name: string, opts: Omit<StartOptions, "port" | "persistTo">) => startOneLogged(name, opts, log);
const startAll = (specs: [string, Omit<StartOptions, "port" | "persistTo">][]) => startAllLogged(specs, log);

// ---------------------------------------------------------------------------------------------------------

function dist(samples: number[], errors: number): Dist {
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), n: samples.length, errors };
}

/** The targets in a different order each round, so slow drift does not favour one of them. */
function rotate<T>(xs: readonly T[], round: number): T[] {
  const k = round % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

async function json<T>(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<T> {
  const res = await rawRequest({
    url,
    method: init.method ?? "GET",
    headers: init.headers ?? {},
    ...(init.body ? { body: init.body } : {}),
    timeoutMs: 30_000,
  });
  if (res.status >= 300)
    throw new Error(`${init.method ?? "GET"} ${url}: ${res.status} ${res.body.toString().slice(0, 300)}`);
  return JSON.parse(res.body.toString()) as T;
}

async function createKey(gateway: GatewayProcess): Promise<string> {
  const k = await json<{ key: string }>(`${gateway.url}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", tier: "V3" }),
  });
  return k.key;
}

/** The before build's path and commit, for the report. */
function describeBaseline(dir: string): string {
  try {
    const commit = execFileSync("git", ["-C", dir, "log", "-1", "--format=%h %s"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    return `${dir} at ${commit}`;
  } catch {
    return dir;
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const box = machine();
  log(`machine: ${box.cpu}, ${box.cores} cores, load ${box.load.join(" ")}`);
  log(
    `sections: ${SECTIONS_RUN.join(", ")}${QUICK ? " (quick sizes)" : ""}; markdown to ${DESTINATION ?? "stdout only"}`,
  );

  // The comparison sections run every target; profile and summarize need only the gateway.
  const compare = run("ttfb") || run("throughput") || run("cpu");
  const sim = track("simulator", await startSimProcess(await freePort()));
  const gatewayVars = {
    GLM_BASE_URL: sim.baseUrl,
    GLM_API_KEY: UPSTREAM_KEY,
    ADMIN_TOKEN: ADMIN,
    KEY_ENCRYPTION_SECRET: "bench-key-encryption-secret",
    GLM_ACCOUNT_TIER: "V3",
  };
  const inspectorPort = await freePort();
  const specs: [TargetName, Omit<StartOptions, "port" | "persistTo">][] = [
    ["glm-edge", { vars: gatewayVars, extraArgs: ["--inspector-port", String(inspectorPort)] }],
  ];
  if (compare) {
    specs.push(
      ["floor", { vars: { UPSTREAM: sim.baseUrl }, config: join(ROOT, "bench", "floor", "wrangler.toml") }],
      [
        "limiter floor",
        { vars: { UPSTREAM: sim.baseUrl }, config: join(ROOT, "bench", "limiter-floor", "wrangler.toml") },
      ],
    );
    if (BASELINE) specs.push(["glm-edge (before)", { vars: gatewayVars, root: BASELINE }]);
  }
  log(`starting ${[...specs.map(([n]) => n), ...(run("probe") ? ["probe"] : [])].join(", ")} under wrangler dev`);
  // The probe binds the gateway's limiter classes: if they changed under it, say so and measure the rest.
  const probeStart = run("probe")
    ? startOne("probe", {
        vars: { ADMIN_TOKEN: ADMIN, KEY_ENCRYPTION_SECRET: "bench-key-encryption-secret" },
        config: join(ROOT, "bench", "probe", "wrangler.toml"),
      })
        .then((p) => track("probe", p))
        .catch((err: unknown) => {
          log(`the probe did not start: ${String(err).slice(0, 2000)}`);
          return `not measured: the probe Worker (bench/probe/worker.ts) did not start: ${String(err).split("\n")[0]}`;
        })
    : undefined;
  const started2 = await startAll(specs.map(([n, o]) => [n, o]));
  const procs = Object.fromEntries(specs.map(([n], i) => [n, started2[i]!])) as Partial<
    Record<TargetName, GatewayProcess>
  >;
  const edge = procs["glm-edge"]!;

  const targetNames = ALL_TARGETS.filter(
    (t) => t === "glm-edge" || (compare && (t === "direct" || procs[t] !== undefined)),
  );
  const targets: Partial<Record<TargetName, Target>> = {
    direct: { name: "direct", base: sim.baseUrl, authorization: `Bearer ${UPSTREAM_KEY}` },
  };
  for (const t of targetNames) {
    const p = procs[t];
    if (!p) continue;
    const gateway = t === "glm-edge" || t === "glm-edge (before)";
    targets[t] = {
      name: t,
      base: `${p.url}/v1`,
      authorization: `Bearer ${gateway ? await createKey(p) : UPSTREAM_KEY}`,
    };
  }
  const target = (t: TargetName) => targets[t]!;
  await selfCheck(targetNames, target, procs["limiter floor"]);

  log("warming up");
  for (const t of targetNames) await streams(target(t), QUICK ? 10 : 100, 10, SHORT);

  const workers = targetNames.filter((t) => t !== "direct");
  const runtimeOf = (t: TargetName) => (t === "direct" ? [] : workerdPids(procs[t]!.child.pid!).runtime);
  const results: Omit<Results, "seconds" | "loadAtEnd"> = {
    date: new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC",
    machine: { ...box, workerd: machine(workerdPids(edge.child.pid!).runtime[0]).workerd },
    sizes: {},
    targets: targetNames,
    sections: SECTIONS_RUN,
    ...(BASELINE && compare ? { baseline: describeBaseline(BASELINE) } : {}),
  };

  if (run("ttfb")) {
    const ttfbSamples: Record<number, Partial<Record<TargetName, { ttfb: number[]; errors: number }>>> = {};
    const levels: [number, number][] = [
      [1, SIZES.c1],
      [50, SIZES.c50],
      [200, SIZES.c200],
    ];
    for (let round = 0; round < SIZES.rounds; round++) {
      for (const t of rotate(targetNames, round)) {
        for (const [c, n] of levels) {
          const r = await streams(target(t), n, c, SHORT);
          const cell = ((ttfbSamples[c] ??= {})[t] ??= { ttfb: [], errors: 0 });
          cell.ttfb.push(...r.ttfb);
          cell.errors += r.errors.length;
          if (r.errors.length > 0) log(`  ${t} c=${c}: ${r.errors.length} errors, e.g. ${r.errors[0]}`);
        }
      }
      log(`time to first byte: round ${round + 1}/${SIZES.rounds} done`);
    }
    results.ttfb = {};
    for (const [c, row] of Object.entries(ttfbSamples)) {
      results.ttfb[Number(c)] = Object.fromEntries(Object.entries(row).map(([t, x]) => [t, dist(x.ttfb, x.errors)]));
    }

    // Request overhead before any upstream work: /healthz on every Worker, alternating.
    const overhead: Partial<Record<TargetName, number[]>> = {};
    for (let round = 0; round < SIZES.probeRounds; round++) {
      for (const t of rotate(workers, round)) {
        for (let i = 0; i < SIZES.probePerRound; i++) {
          const res = await rawRequest({ url: `${procs[t]!.url}/healthz`, method: "GET", timeoutMs: 30_000 });
          if (res.status !== 200) throw new Error(`${t} /healthz answered ${res.status}`);
          (overhead[t] ??= []).push(res.ms);
        }
      }
    }
    results.overhead = Object.fromEntries(Object.entries(overhead).map(([t, x]) => [t, dist(x, 0)]));
    results.sizes["rounds (time to first byte)"] = SIZES.rounds;
    results.sizes["streams per round at concurrency 1 / 50 / 200"] = `${SIZES.c1} / ${SIZES.c50} / ${SIZES.c200}`;
  }

  if (run("throughput")) {
    const kinds: [string, boolean][] = [
      [SHORT_STREAMS, true],
      [PLAIN, false],
    ];
    const tp: Record<
      string,
      Partial<Record<TargetName, { ok: number; failed: number; seconds: number; cpu: number }>>
    > = {};
    for (let round = 0; round < SIZES.tpRounds; round++) {
      for (const t of rotate(targetNames, round)) {
        for (const [kind, stream] of kinds) {
          // The runtime's CPU per completed request says why one Worker's throughput is lower than another's.
          const pids = runtimeOf(t);
          const c0 = cpuMs(pids);
          const r = await throughput(target(t), stream, SHORT, 50, SIZES.tpSeconds);
          const cell = ((tp[kind] ??= {})[t] ??= { ok: 0, failed: 0, seconds: 0, cpu: 0 });
          cell.cpu += cpuMs(pids) - c0;
          cell.ok += r.ok;
          cell.failed += r.failed;
          cell.seconds += r.ok / (r.rps || 1);
        }
      }
      log(`throughput: round ${round + 1}/${SIZES.tpRounds} done`);
    }
    results.throughput = {};
    for (const [kind, row] of Object.entries(tp)) {
      results.throughput[kind] = Object.fromEntries(
        Object.entries(row).map(([t, c]) => [
          t,
          {
            rps: c.ok / (c.seconds || 1),
            failed: c.failed,
            ...(t === "direct" || c.ok === 0 ? {} : { cpuMs: c.cpu / c.ok }),
          },
        ]),
      );
    }
    results.sizes["throughput"] = `${SIZES.tpRounds} × ${SIZES.tpSeconds} s per target and kind`;
  }

  if (run("cpu")) {
    // CPU per 200-token stream, from /proc, for every Worker.
    const cpuTotals: Partial<Record<TargetName, { runtime: number; proxy: number; streams: number }>> = {};
    for (let round = 0; round < SIZES.cpuRounds; round++) {
      for (const t of rotate(workers, round)) {
        const pids = workerdPids(procs[t]!.child.pid!);
        const r0 = cpuMs(pids.runtime);
        const p0 = cpuMs(pids.proxy);
        const r = await streams(target(t), SIZES.cpuStreams, 10, LONG);
        // Work a Worker does after the response (releases, usage, logs) belongs to the request too.
        await new Promise((res) => setTimeout(res, 500));
        const cell = (cpuTotals[t] ??= { runtime: 0, proxy: 0, streams: 0 });
        cell.runtime += cpuMs(pids.runtime) - r0;
        cell.proxy += cpuMs(pids.proxy) - p0;
        cell.streams += r.ttfb.length;
      }
      log(`CPU: round ${round + 1}/${SIZES.cpuRounds} done`);
    }
    results.cpu = Object.fromEntries(
      Object.entries(cpuTotals).map(([t, c]) => [
        t,
        { runtimeMs: c.runtime / c.streams, proxyMs: c.proxy / c.streams },
      ]),
    );
    results.sizes["CPU"] = `${SIZES.cpuRounds} × ${SIZES.cpuStreams} streams of 200 tokens per Worker`;
  }

  if (run("profile")) {
    // Where glm-edge's CPU goes: profiles while it relays long streams and while it answers plain requests.
    log("profiling glm-edge");
    results.profiles = [];
    const profiled: [string, () => Promise<unknown>][] = [
      [
        `relaying ${SIZES.profileStreams} streams of 200 tokens, 10 at a time`,
        () => streams(target("glm-edge"), SIZES.profileStreams, 10, LONG),
      ],
      [
        `answering plain requests (20 tokens) at concurrency 50 for ${SIZES.tpSeconds} s`,
        () => throughput(target("glm-edge"), false, SHORT, 50, SIZES.tpSeconds),
      ],
    ];
    for (const [title, during] of profiled) {
      try {
        const { profile } = await profileWorker(inspectorPort, during);
        results.profiles.push({ title, ...hotspots(profile) });
      } catch (err) {
        log(`profile failed (${title}): ${String(err)}`);
      }
    }
  }

  if (probeStart) {
    const probe = await probeStart;
    if (typeof probe === "string") {
      results.probeNote = probe;
    } else {
      log("limiter and catalog, through the probe");
      try {
        results.limiter = await probeLimiter(probe);
        results.catalogNs = await probeCatalog(probe);
      } catch (err) {
        results.probeNote = `not measured: the probe failed: ${String(err).split("\n")[0]}`;
        log(results.probeNote);
      }
    }
  }

  if (run("summarize")) {
    log("summarize");
    results.summarize = await measureSummarize(
      edge,
      target("glm-edge").authorization.slice("Bearer ".length),
      sim,
    ).catch((err: unknown) => ({ note: `not measured: ${String(err)}`, runs: [] }));
  }

  results.sizes["Durable Object storage"] = STATE_ROOT === "/dev/shm" ? "tmpfs (/dev/shm)" : STATE_ROOT;
  const full: Results = { ...results, seconds: (performance.now() - started) / 1000, loadAtEnd: machine().load };
  const md = markdown(full, checks(full), findings(full));
  console.log("\n" + md);
  if (DESTINATION) {
    writeFileSync(DESTINATION, md + startupSection(DESTINATION));
    log(`wrote ${DESTINATION} in ${Math.round(full.seconds)} s`);
  } else {
    log(
      `done in ${Math.round(full.seconds)} s; BENCHMARKS.md left as it was (set BENCH_OUT to write the markdown to a file)`,
    );
  }
}

/**
 * What follows the generated report — the hand-written analysis of the targets, the Startup section
 * (npm run bench:startup) and the Scale section (npm run bench:scale) — is its own record: a run of this
 * benchmark carries it over.
 */
function startupSection(path: string): string {
  if (!existsSync(path)) return "";
  const old = readFileSync(path, "utf8");
  const analysis = old.indexOf("\n## Why the targets are missed");
  const from = analysis !== -1 ? analysis : old.indexOf("\n## Startup");
  const marks = ["<!-- startup:end -->", "<!-- scale:end -->"]
    .map((m) => [old.indexOf(m), m.length] as const)
    .filter(([i]) => i !== -1);
  if (from === -1 || marks.length === 0) return "";
  const end = Math.max(...marks.map(([i, n]) => i + n));
  return "\n" + old.slice(from, end) + "\n";
}

async function held(limiterFloor: GatewayProcess): Promise<number> {
  return (await json<{ held: number }>(`${limiterFloor.url}/_held?model=${MODEL}`)).held;
}

/**
 * Each target answers a stream; the gateway takes a slot; and the limiter floor is exact: once every request
 * has ended — completed, cut off by the upstream midway, refused by the upstream, upstream unreachable,
 * client gone midway or before the answer's headers — it holds no lease (else its column would flatter the gateway).
 */
async function selfCheck(
  names: TargetName[],
  target: (t: TargetName) => Target,
  limiterFloor: GatewayProcess | undefined,
): Promise<void> {
  for (const t of names) {
    const r = await streamRequest({
      url: `${target(t).base}/chat/completions`,
      method: "POST",
      timeoutMs: 30_000,
      headers: { authorization: target(t).authorization, "content-type": "application/json" },
      body: chatBody(SHORT, true),
    });
    if (r.status !== 200 || !r.complete) throw new Error(`${t} did not answer a stream: ${r.status} ${r.error ?? ""}`);
    if (t.startsWith("glm-edge") && r.headers["x-concurrency-in-flight"] === "0") throw new Error(`${t} took no slot`);
  }
  if (!limiterFloor) return;
  const base = target("limiter floor").base;
  const ask = (content: string, abort?: AbortPoint) =>
    streamRequest({
      url: `${base}/chat/completions`,
      method: "POST",
      timeoutMs: 30_000,
      headers: { authorization: target("limiter floor").authorization, "content-type": "application/json" },
      body: chatBody(content, true),
      ...(abort ? { abort } : {}),
    });
  // While a stream is in flight its lease is held (a 3 s stream, looked at until the lease shows).
  let done = false;
  const inFlight = ask("bench [[sim: tokens=100 delay=30]]").finally(() => (done = true));
  let seen = 0;
  while (seen === 0 && !done) {
    await new Promise((res) => setTimeout(res, 25));
    seen = await held(limiterFloor);
  }
  await inFlight;
  await Promise.all([
    ask("bench [[sim: tokens=40 break_after=5]]"),
    ask("bench [[sim: error=500]]"),
    ask("bench [[sim: break]]"),
    ask("bench [[sim: tokens=200 delay=20]]", { at: "after-events", events: 3 }),
    ask("bench [[sim: ttft=1500]]", { at: "before-headers", afterMs: 200 }),
  ]);
  let left = await held(limiterFloor);
  for (let i = 0; i < 40 && left !== 0; i++) {
    await new Promise((res) => setTimeout(res, 50));
    left = await held(limiterFloor);
  }
  if (seen !== 1 || left !== 0)
    throw new Error(
      `the limiter floor is not exact: ${seen} lease(s) held during one stream (want 1), ${left} left after every request ended (want 0)`,
    );
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
  const diff = (a: string, b: string) => ({
    p50: latency[a]!.p50 - latency[b]!.p50,
    p99: latency[a]!.p99 - latency[b]!.p99,
  });
  const rates: Record<string, number> = {};
  const modes: [string, string][] = [
    ["as the gateway (key's object, upstream slots from its block)", "slot"],
    ["as the gateway, release with a usage record", "slot-usage"],
    ["key's object RPCs alone (no Worker-side wrapper)", "key"],
    ["upstream guard per request (the round trip blocks avoid)", "guard"],
  ];
  for (const [label, mode] of modes) {
    const r = await json<{ n: number; ms: number }>(`${probe.url}/loop?mode=${mode}&n=${SIZES.loopPairs}&c=50`, {
      method: "POST",
      headers,
    });
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
async function measureSummarize(
  edge: GatewayProcess,
  key: string,
  sim: SimProcess,
): Promise<NonNullable<Results["summarize"]>> {
  const doc = await json<{ paths: Record<string, unknown> }>(`${edge.url}/openapi.json`);
  if (!doc.paths["/v1/summarize"]) return { note: "not measured: the gateway has no /v1/summarize yet", runs: [] };
  const runs: NonNullable<Results["summarize"]>["runs"] = [];
  for (const language of ["zh", "en"] as const) {
    const r = await benchSummarize({ gatewayUrl: edge.url, key, simUrl: sim.url, language, runs: SIZES.summaries });
    runs.push({ language, chars: r.chars, pieces: r.pieces, wallMs: r.wallMs, criticalMs: r.criticalPathMs });
  }
  return {
    note:
      `Streamed, read to the last byte; median of ${SIZES.summaries} run(s) after a warm-up. The simulator paced like GLM-4-Flash (first token 800 ms, 15 ms per token); ` +
      "the critical path is the slowest map call plus the merge levels and the final step, as the simulator timed them (bench/summarize.ts).",
    runs,
  };
}

await runMain(main);
