// Turns the benchmark's measurements into BENCHMARKS.md: the machine, the tables (glm-edge against the limiter
// floor, and against the floor and the simulator for context), issue 11's targets met or missed, where
// glm-edge's CPU time goes, and findings read off the numbers. Sections that were not run (BENCH_ONLY) are
// left out; a second build of the gateway (BENCH_BASELINE, "glm-edge (before)") gets its own columns.
import type { Machine } from "./procs.ts";
import type { Hot } from "./profile.ts";

/** Every target in column order; a run measures a subset (the baseline only when asked for). */
export const ALL_TARGETS = ["direct", "floor", "limiter floor", "glm-edge (before)", "glm-edge"] as const;
export type TargetName = (typeof ALL_TARGETS)[number];
/** The builds of the gateway held to the targets. */
export const GATEWAYS = ["glm-edge (before)", "glm-edge"] as const satisfies readonly TargetName[];
export type Gateway = (typeof GATEWAYS)[number];
/** The reference the targets are measured against, and the one kept as context. */
const REF = "limiter floor" as const;
const FLOOR = "floor" as const;

export const SECTIONS = ["ttfb", "throughput", "cpu", "profile", "probe", "summarize"] as const;
export type Section = (typeof SECTIONS)[number];

export const SHORT_STREAMS = "short streams (20 tokens)";
export const PLAIN = "plain requests (20 tokens)";

export interface Dist {
  p50: number;
  p99: number;
  n: number;
  errors: number;
}

export interface Results {
  date: string;
  seconds: number;
  machine: Machine;
  loadAtEnd: number[];
  sizes: Record<string, number | string>;
  /** The targets this run measured, in column order. */
  targets: TargetName[];
  sections: Section[];
  /** The before build (BENCH_BASELINE): its path and commit. */
  baseline?: string;
  ttfb?: Record<number, Partial<Record<TargetName, Dist>>>;
  throughput?: Record<string, Partial<Record<TargetName, { rps: number; failed: number; cpuMs?: number }>>>;
  /** GET /healthz at concurrency 1: what every request pays before its route runs. */
  overhead?: Partial<Record<TargetName, Dist>>;
  cpu?: Partial<Record<TargetName, { runtimeMs: number; proxyMs: number }>>;
  limiter?: {
    latency: Record<string, Dist>;
    acquireRelease: { p50: number; p99: number };
    usageRecord: { p50: number; p99: number };
    rates: Record<string, number>;
  };
  /** Why the probe section has no numbers, when it was asked for and failed. */
  probeNote?: string;
  catalogNs?: number;
  summarize?: {
    note: string;
    runs: { language: string; chars: number; pieces: number; wallMs: number; criticalMs: number }[];
  };
  profiles?: { title: string; total: number; modules: Hot[]; functions: Hot[] }[];
}

export interface TargetCheck {
  name: string;
  goal: string;
  /** Per gateway build: the measured value against the limiter floor, and whether it meets the goal. */
  measured: Partial<Record<Gateway, { value: string; met: boolean }>>;
  /** The same measure against the floor, for context (no goal). */
  context: Partial<Record<Gateway, string>>;
}

const f1 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(1));
const f2 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(2));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? "–" : (a / b).toFixed(2);
const diff = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? "–" : (a - b).toFixed(2);
const ok = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x);

function gatewaysOf(r: Results): Gateway[] {
  return GATEWAYS.filter((g) => r.targets.includes(g));
}

/** Issue 11's targets, each against the limiter floor, for every gateway build measured. */
export function checks(r: Results): TargetCheck[] {
  const out: TargetCheck[] = [];
  const gateways = gatewaysOf(r);
  for (const kind of [SHORT_STREAMS, PLAIN]) {
    const row = r.throughput?.[kind];
    if (!row) continue;
    const c: TargetCheck = {
      name: `throughput, ${kind}, concurrency 50`,
      goal: "≥ 0.80 × the limiter floor's",
      measured: {},
      context: {},
    };
    for (const g of gateways) {
      const share = (row[g]?.rps ?? NaN) / (row[REF]?.rps ?? NaN);
      if (ok(share)) c.measured[g] = { value: `${share.toFixed(2)} ×`, met: share >= 0.8 };
      const vsFloor = (row[g]?.rps ?? NaN) / (row[FLOOR]?.rps ?? NaN);
      if (ok(vsFloor)) c.context[g] = `${vsFloor.toFixed(2)} × the floor's`;
    }
    out.push(c);
  }
  const c1 = r.ttfb?.[1];
  if (c1) {
    const c: TargetCheck = {
      name: "time to first byte, streamed, concurrency 1, p50",
      goal: "≤ the limiter floor's + 1 ms",
      measured: {},
      context: {},
    };
    for (const g of gateways) {
      const added = (c1[g]?.p50 ?? NaN) - (c1[REF]?.p50 ?? NaN);
      if (ok(added)) c.measured[g] = { value: `${added >= 0 ? "+" : ""}${added.toFixed(2)} ms`, met: added <= 1 };
      const vsFloor = (c1[g]?.p50 ?? NaN) - (c1[FLOOR]?.p50 ?? NaN);
      if (ok(vsFloor)) c.context[g] = `${vsFloor >= 0 ? "+" : ""}${vsFloor.toFixed(2)} ms over the floor`;
    }
    out.push(c);
  }
  if (r.cpu) {
    const c: TargetCheck = {
      name: "runtime CPU per 200-token stream",
      goal: "≤ 1.3 × the limiter floor's",
      measured: {},
      context: {},
    };
    for (const g of gateways) {
      const x = (r.cpu[g]?.runtimeMs ?? NaN) / (r.cpu[REF]?.runtimeMs ?? NaN);
      if (ok(x)) c.measured[g] = { value: `${x.toFixed(2)} ×`, met: x <= 1.3 };
      const vsFloor = (r.cpu[g]?.runtimeMs ?? NaN) / (r.cpu[FLOOR]?.runtimeMs ?? NaN);
      if (ok(vsFloor)) c.context[g] = `${vsFloor.toFixed(2)} × the floor's`;
    }
    out.push(c);
  }
  return out;
}

const DESCRIPTIONS: Record<TargetName, string> = {
  direct: "the GLM simulator (sim/server.ts, its own node process), no Worker in between.",
  floor:
    "bench/floor/worker.ts under `wrangler dev` — forwards the request and returns the upstream body: what the runtime itself costs.",
  "limiter floor":
    "bench/limiter-floor/worker.ts under `wrangler dev` — the floor plus one SQLite-backed Durable Object per model (a leases table): one RPC acquire " +
    "(a lease inserted if fewer than the limit are held, else 429) before the upstream call, the body piped natively (`pipeTo` an IdentityTransformStream, " +
    "no JavaScript per chunk), one RPC release in `waitUntil` once the pipe settles, on every path. The least a gateway that counts requests in flight exactly can do; " +
    "it reads the request body to learn the model, as any per-model limiter must. The targets are measured against it.",
  "glm-edge (before)":
    "the gateway built from BENCH_BASELINE (another checkout, its own wrangler.toml and node_modules) under `wrangler dev`, account tier V3, a V3 key.",
  "glm-edge": "the gateway (src/, wrangler.toml) under `wrangler dev`, account tier V3, a V3 key.",
};

export function markdown(r: Results, targets: TargetCheck[], findings: string[]): string {
  const m = r.machine;
  const T = r.targets;
  const gateways = gatewaysOf(r);
  const workers = T.filter((t) => t !== "direct");
  const L: string[] = [];
  L.push("# Benchmarks", "");
  const partial =
    r.sections.length < SECTIONS.length
      ? ` Sections run: ${r.sections.join(", ")} (BENCH_ONLY); the others are left out.`
      : "";
  L.push(
    `Generated by \`npm run bench\` (scripts/bench.ts) on ${r.date} in ${Math.round(r.seconds)} s. Every number below is from that one run; ` +
      `run it again before and after a change and compare.${partial}`,
    "",
  );
  L.push("## Machine", "");
  L.push(`- CPU: ${m.cpu}, ${m.cores} cores; memory ${m.memoryGb} GB; ${m.kernel}`);
  L.push(`- node ${m.node}, wrangler ${m.wrangler}, ${m.workerd}`);
  L.push(
    `- load average (1, 5, 15 min) at the start ${m.load.join(", ")}, at the end ${r.loadAtEnd.join(", ")}${m.load[0]! > m.cores * 0.5 ? " — **not a quiet machine**: other work shared the cores, so absolute numbers are pessimistic and ratios noisier than on a quiet one" : ""}`,
  );
  L.push("");
  L.push("## What runs", "");
  for (const t of T) L.push(`- **${t}**: ${DESCRIPTIONS[t]}`);
  if (r.baseline) L.push("", `Before: ${r.baseline}.`);
  L.push(
    "",
    `${workers.length === 1 ? "The Worker runs" : `All ${workers.length} Workers run`} under \`wrangler dev\` (local workerd), so each request also crosses wrangler's own proxy process, which production does not have${workers.length === 1 ? "" : "; it is the same for all of them"}. ` +
      "Targets are measured in rounds, the order rotating each round, to cancel drift. Time to first byte is to the first body byte; every stream is read to its last byte.",
    "",
  );
  L.push(
    `Sizes: ${Object.entries(r.sizes)
      .map(([k, v]) => `${k} ${v}`)
      .join("; ")}.`,
    "",
  );

  if (targets.length > 0) {
    L.push("## Targets (issue 11: against the limiter floor, all from this run)", "");
    L.push(
      `| target | goal | ${gateways.join(" | ")} | ${gateways.map((g) => `${g} vs the floor (context)`).join(" | ")} |`,
    );
    L.push(`|---|---|${gateways.map(() => "---:|").join("")}${gateways.map(() => "---:|").join("")}`);
    for (const t of targets) {
      const cells = gateways.map((g) => {
        const x = t.measured[g];
        return x ? `${x.value} — ${x.met ? "met" : "**missed**"}` : "–";
      });
      L.push(
        `| ${t.name} | ${t.goal} | ${cells.join(" | ")} | ${gateways.map((g) => t.context[g] ?? "–").join(" | ")} |`,
      );
    }
    L.push("");
    for (const g of gateways) {
      const met = targets.filter((t) => t.measured[g]?.met).map((t) => t.name);
      const missed = targets.filter((t) => t.measured[g] && !t.measured[g].met).map((t) => t.name);
      L.push(
        `**${g}** meets ${met.length} of ${met.length + missed.length} targets measured${missed.length > 0 ? `; missed: ${missed.join("; ")}` : ""}.`,
        "",
      );
    }
  }

  if (r.ttfb) {
    L.push("## Time to first byte, streamed completions (ms)", "");
    const extra = gateways.flatMap((g) => [`${g} − limiter floor p50`, `${g} − floor p50`]);
    L.push(`| concurrency | ${T.map((t) => `${t} p50 / p99`).join(" | ")} | ${extra.join(" | ")} | errors |`);
    L.push(`|---:|${T.map(() => "---:|").join("")}${extra.map(() => "---:|").join("")}---:|`);
    for (const [c, row] of Object.entries(r.ttfb)) {
      const cell = (t: TargetName) => `${f1(row[t]?.p50)} / ${f1(row[t]?.p99)}`;
      const errors = T.reduce((n, t) => n + (row[t]?.errors ?? 0), 0);
      const diffs = gateways.flatMap((g) => [diff(row[g]?.p50, row[REF]?.p50), diff(row[g]?.p50, row[FLOOR]?.p50)]);
      L.push(`| ${c} | ${T.map(cell).join(" | ")} | ${diffs.join(" | ")} | ${errors} |`);
    }
    L.push("");
    if (r.overhead) {
      const parts = workers
        .filter((t) => r.overhead?.[t])
        .map((t) => `${t} ${f2(r.overhead![t]!.p50)} / ${f2(r.overhead![t]!.p99)} ms`);
      L.push(
        `Request overhead before any route runs (GET /healthz, concurrency 1, new connection each, p50 / p99): ${parts.join(", ")}.`,
        "",
      );
    }
  }

  if (r.throughput) {
    L.push("## Throughput at concurrency 50 (completed requests/s)", "");
    const extra = gateways.flatMap((g) => [`${g} / limiter floor`, `${g} / floor`]);
    L.push(
      `| requests | ${T.join(" | ")} | ${extra.join(" | ")} | failed | runtime CPU per request, ${workers.join(" / ")} (ms) |`,
    );
    L.push(`|---|${T.map(() => "---:|").join("")}${extra.map(() => "---:|").join("")}---:|---:|`);
    for (const [kind, row] of Object.entries(r.throughput)) {
      const failed = T.reduce((n, t) => n + (row[t]?.failed ?? 0), 0);
      const cpu = workers.map((t) => f2(row[t]?.cpuMs)).join(" / ");
      const ratios = gateways.flatMap((g) => [ratio(row[g]?.rps, row[REF]?.rps), ratio(row[g]?.rps, row[FLOOR]?.rps)]);
      L.push(`| ${kind} | ${T.map((t) => f1(row[t]?.rps)).join(" | ")} | ${ratios.join(" | ")} | ${failed} | ${cpu} |`);
    }
    L.push("");
  }

  if (r.cpu) {
    L.push("## CPU per 200-token stream (ms, from /proc utime + stime)", "");
    const extra = gateways.flatMap((g) => [`${g} / limiter floor`, `${g} / floor`]);
    L.push(`| process | ${workers.join(" | ")} | ${extra.join(" | ")} |`);
    L.push(`|---|${workers.map(() => "---:|").join("")}${extra.map(() => "---:|").join("")}`);
    const row = (label: string, key: "runtimeMs" | "proxyMs") => {
      const ratios = gateways.flatMap((g) => [
        ratio(r.cpu![g]?.[key], r.cpu![REF]?.[key]),
        ratio(r.cpu![g]?.[key], r.cpu![FLOOR]?.[key]),
      ]);
      L.push(`| ${label} | ${workers.map((t) => f2(r.cpu![t]?.[key])).join(" | ")} | ${ratios.join(" | ")} |`);
    };
    row("runtime (workerd running the Worker and its Durable Objects)", "runtimeMs");
    row("wrangler's proxy (workerd, local only)", "proxyMs");
    L.push("");
  }

  if (r.limiter || r.probeNote) {
    L.push("## The gateway's limiter objects, usage record, catalog", "");
    if (r.probeNote) L.push(r.probeNote, "");
  }
  if (r.limiter) {
    L.push(
      "Timed through bench/probe/worker.ts, a bench-only Worker bound to the gateway's own KeyObject and UpstreamGuard classes and calling their RPC methods " +
        "(acquire, release) the way the gateway's admission does as of this writing: one call to the key's object to admit (its block of the guard's slots hands out the upstream slot) and one to release. One operation per request, paths alternating; " +
        "a cost is the difference to a request that does everything else.",
      "",
    );
    L.push("| measure | p50 | p99 |");
    L.push("|---|---:|---:|");
    for (const [path, d] of Object.entries(r.limiter.latency))
      L.push(`| request ${path} (ms) | ${f2(d.p50)} | ${f2(d.p99)} |`);
    L.push(
      `| **acquire + release per request** (/slot − /auth, ms) | ${f2(r.limiter.acquireRelease.p50)} | ${f2(r.limiter.acquireRelease.p99)} |`,
    );
    L.push(
      `| **recording usage with the release** (/slot-usage − /slot, ms) | ${f2(r.limiter.usageRecord.p50)} | ${f2(r.limiter.usageRecord.p99)} |`,
    );
    L.push("");
    L.push("| rate inside one request, 50 at a time | acquire + release pairs/s |");
    L.push("|---|---:|");
    for (const [mode, rate] of Object.entries(r.limiter.rates)) L.push(`| ${mode} | ${rate.toFixed(0)} |`);
    L.push("");
  }
  if (r.catalogNs !== undefined) {
    L.push(
      `Catalog lookup (in-memory catalog + model resolution, as on every chat request): **${r.catalogNs.toFixed(0)} ns** of runtime CPU per lookup.`,
      "",
    );
  }
  if (r.summarize) {
    L.push("## Summarize: wall time against its critical path", "");
    if (r.summarize.runs.length > 0) {
      L.push(
        "| text | pieces | wall time (ms) | critical path (ms) | wall / critical path |",
        "|---|---:|---:|---:|---:|",
      );
      for (const s of r.summarize.runs) {
        L.push(
          `| ${s.chars.toLocaleString("en-US")} characters, ${s.language} | ${s.pieces} | ${s.wallMs.toFixed(0)} | ${s.criticalMs.toFixed(0)} | ${ratio(s.wallMs, s.criticalMs)} |`,
        );
      }
      L.push("");
    }
    L.push(r.summarize.note, "");
  }

  if (r.profiles && r.profiles.length > 0) {
    L.push("## Where glm-edge's CPU time goes", "");
    L.push(
      "CPU profiles of the gateway's isolate (V8's sampling profiler over the DevTools protocol, through wrangler's inspector), self time attributed to source modules " +
        "by esbuild's module markers in the bundle. `(program)` is the runtime's native work outside JavaScript (I/O, HTTP, the event loop); " +
        "`(runtime built-ins)` are the runtime's own JavaScript and API functions (streams, fetch, Headers, SQL).",
      "",
    );
    for (const p of r.profiles) {
      L.push(`### While ${p.title} (${p.total.toFixed(0)} ms of samples)`, "");
      L.push("| module | ms | share |", "|---|---:|---:|");
      for (const h of p.modules.slice(0, 10))
        L.push(`| ${h.name} | ${h.ms.toFixed(0)} | ${(h.share * 100).toFixed(1)} % |`);
      L.push("", "| hottest functions (self time) — module | ms | share |", "|---|---:|---:|");
      for (const h of p.functions.slice(0, 10))
        L.push(`| ${h.name.replaceAll("|", "\\|")} | ${h.ms.toFixed(0)} | ${(h.share * 100).toFixed(1)} % |`);
      L.push("");
    }
  }
  if (findings.length > 0) {
    L.push("## Findings", "", ...findings.map((x) => `- ${x}`), "");
  }
  return L.join("\n");
}

/** A difference smaller than the run's noise can come out negative: say so rather than print it. */
const ms = (x: number) => (x >= 0 ? `${x.toFixed(2)} ms` : "no measurable part (below this run's noise)");

/** Plain statements read off the numbers, so the report says what the tables mean. Nothing here is fixed text about the results. */
export function findings(r: Results): string[] {
  const out: string[] = [];
  const gateways = gatewaysOf(r);
  const c1 = r.ttfb?.[1];
  const floor1 = c1?.[FLOOR]?.p50;
  const ref1 = c1?.[REF]?.p50;
  if (ok(floor1) && ok(ref1)) {
    const counting = ref1 - floor1;
    const healthz =
      ok(r.overhead?.[REF]?.p50) && ok(r.overhead?.[FLOOR]?.p50)
        ? r.overhead[REF].p50 - r.overhead[FLOOR].p50
        : undefined;
    out.push(
      `Counting exactly costs the limiter floor ${ms(counting)} of time to first byte over the floor at concurrency 1 (p50): reading the body for the model and one acquire round trip to its Durable Object ` +
        "before the upstream call (the release comes after the body, off this path)" +
        (ok(healthz)
          ? `. The two Workers' /healthz, which takes no lease in either, differ by ${healthz.toFixed(2)} ms: a measure of this run's noise.`
          : "."),
    );
  }
  for (const g of gateways) {
    const e1 = c1?.[g]?.p50;
    if (!ok(e1) || !ok(ref1)) continue;
    const added = e1 - ref1;
    const parts: string[] = [];
    const routing =
      ok(r.overhead?.[g]?.p50) && ok(r.overhead?.[REF]?.p50) ? r.overhead[g].p50 - r.overhead[REF].p50 : undefined;
    if (ok(routing))
      parts.push(
        `${ms(routing)} is what every ${g} request pays before its route runs (/healthz, ${g} − limiter floor: routing, middleware, the log line)`,
      );
    if (r.limiter) {
      const auth = r.limiter.latency["/auth"]!.p50 - r.limiter.latency["/noop"]!.p50;
      const both = r.limiter.acquireRelease.p50;
      parts.push(
        `the probe times a key check in the key's object at ${ms(auth)} and the gateway's acquire + release (one call each way to the key's object, which hands out the upstream slot from its block) at ${ms(both)} over it, ` +
          "against the limiter floor's one acquire",
      );
    }
    out.push(
      `Time to first byte at concurrency 1: ${g} adds ${ms(added)} over the limiter floor (p50; the target allows 1 ms)${parts.length > 0 ? `. Of the gateway's own work, ${parts.join("; ")}` : ""}.`,
    );
  }

  const cpuRef = r.cpu?.[REF]?.runtimeMs;
  const cpuFloor = r.cpu?.[FLOOR]?.runtimeMs;
  if (ok(cpuRef) && ok(cpuFloor)) {
    out.push(
      `CPU per 200-token stream: the limiter floor's runtime spends ${(cpuRef - cpuFloor).toFixed(2)} ms more than the floor's (${(cpuRef / cpuFloor).toFixed(2)} ×) for its two RPCs to the Durable Object, the SQL they run, and the pipe through an IdentityTransformStream.`,
    );
  }
  for (const g of gateways) {
    const e = r.cpu?.[g]?.runtimeMs;
    if (!ok(e) || !ok(cpuRef)) continue;
    let where = "";
    const prof = g === "glm-edge" ? r.profiles?.[0] : undefined;
    if (prof) {
      const own = prof.modules.filter((h) => h.name.startsWith("src/")).slice(0, 3);
      const builtins = prof.modules.find((h) => h.name === "(runtime built-ins)");
      if (own.length > 0) {
        where =
          `; in the streaming profile below the gateway's own hottest modules are ${own.map((h) => `${h.name} (${(h.share * 100).toFixed(1)} %)`).join(", ")}` +
          (builtins
            ? `, and the runtime's built-ins (streams, fetch, SQL) take ${(builtins.share * 100).toFixed(1)} %`
            : "");
      }
    }
    out.push(
      `CPU per 200-token stream: ${g}'s runtime spends ${(e - cpuRef).toFixed(2)} ms more than the limiter floor's (${(e / cpuRef).toFixed(2)} ×; the target allows 1.3 ×)${where}.`,
    );
  }

  const tp = r.throughput;
  if (tp) {
    for (const [kind, row] of Object.entries(tp)) {
      const ref = row[REF];
      if (!ref?.cpuMs || !ok(ref.rps) || ref.rps === 0) continue;
      const busy = (t: TargetName) => (row[t]?.cpuMs !== undefined ? (row[t]!.rps * row[t]!.cpuMs!) / 1000 : undefined);
      const lines = [REF as TargetName, ...gateways]
        .filter((t) => row[t]?.cpuMs !== undefined)
        .map(
          (t) =>
            `${t} ${row[t]!.rps.toFixed(0)}/s at ${row[t]!.cpuMs!.toFixed(2)} ms of runtime CPU each (${busy(t)!.toFixed(2)} CPU-seconds per second)`,
        );
      const saturated = [REF as TargetName, ...gateways].filter((t) => (busy(t) ?? 0) >= 0.8);
      out.push(
        `Throughput, ${kind}: ${lines.join("; ")}. ` +
          (saturated.length > 0
            ? `${saturated.join(" and ")} kept its runtime's thread busy 0.8 CPU-seconds per second or more: near saturation (locally one isolate thread runs the Worker and all its Durable Objects), so there throughput is bound by CPU per request.`
            : "None reached 0.8 CPU-seconds per second, so no runtime thread was saturated: the limit lies elsewhere too (the proxy, the load generator, the simulator, or the other work on this machine)."),
      );
    }
  }

  if (r.targets.includes("glm-edge (before)")) {
    const pairs: string[] = [];
    for (const t of checks(r)) {
      const b = t.measured["glm-edge (before)"];
      const a = t.measured["glm-edge"];
      if (a && b) pairs.push(`${t.name}: ${b.value} → ${a.value}`);
    }
    if (pairs.length > 0) out.push(`Before → after, against the limiter floor, same run: ${pairs.join("; ")}.`);
  }
  return out;
}
