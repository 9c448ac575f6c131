// npm run bench:startup: what a cold isolate costs. Bundles the Worker once (`wrangler deploy --dry-run`), runs
// `wrangler check startup` on that bundle several times and reports the median busy CPU of the startup profile
// (active samples, idle excluded — the figure wrangler prints as "Active"), the bundle size raw and gzipped, and
// the functions with the most inclusive time. With --first-request it also starts `wrangler dev` a few times
// and compares each route's first answer on the fresh isolate with its warm answers. With --profile it records a CPU
// profile (through wrangler's inspector) of the first chat request on a fresh, unminified `wrangler dev` of this
// checkout (and of each --baseline) and names where that request's busy time goes, by inclusive and by self time, beside
// a warm request's busy time (no startup profile then).
//
//   npm run bench:startup -- [--runs 7] [--first-request] [--sessions 3] [--baseline DIR] [--write]
//   npm run bench:startup -- --profile [--baseline DIR] [--outfile first-request.cpuprofile]
//
// --baseline DIR (repeatable) measures other checkouts too (e.g. an older commit, extracted with `git archive` and
// given this checkout's node_modules), alternating their runs with this one's so that all see the same load (an
// extracted tree's bundle is a few KiB larger: its module path comments are longer); --write puts the
// report into BENCHMARKS.md between the "startup" markers (adding a "Startup" section if there is none), leaving
// the rest of the file alone.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { startSimProcess } from "../bench/procs.ts";
import { freePort } from "./wrangler-dev.ts";

const HERE = resolve(import.meta.dirname, "..");
const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "7" },
    "first-request": { type: "boolean", default: false },
    sessions: { type: "string", default: "3" },
    baseline: { type: "string", multiple: true },
    write: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    outfile: { type: "string" },
  },
});
interface Target {
  label: string;
  root: string;
}
const TARGETS: Target[] = [
  ...(args.baseline ?? []).map((dir, i, all) => ({
    label: all.length > 1 ? `baseline ${i + 1}` : "baseline",
    root: resolve(dir),
  })),
  { label: "this checkout", root: HERE },
];
const RUNS = Number(args.runs);
const SESSIONS = Number(args.sessions);
// The tools of this checkout (the measured one may be an extracted tree without node_modules of its own).
const WRANGLER = join(HERE, "node_modules", "wrangler", "bin", "wrangler.js");
const NODE = existsSync(join(HERE, "node_modules", ".bin", "node"))
  ? join(HERE, "node_modules", ".bin", "node")
  : process.execPath;
const ENV = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CI: "true" };

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const ms = (us: number): number => Math.round(us / 100) / 10;
const log = (s: string) => process.stderr.write(s + "\n");

function wrangler(root: string, argv: string[]): string {
  const r = spawnSync(NODE, [WRANGLER, ...argv], { cwd: root, env: ENV, encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`wrangler ${argv.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

interface Profile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; scriptId?: string };
    children?: number[];
  }[];
  samples?: number[];
  timeDeltas?: number[];
}

/** Busy time as wrangler computes it: every sampled interval except the idle ones (GC included). */
function busy(p: Profile): { busyUs: number; gcUs: number } {
  const name = new Map(p.nodes.map((n) => [n.id, n.callFrame.functionName]));
  let busyUs = 0;
  let gcUs = 0;
  (p.timeDeltas ?? []).forEach((dt, i) => {
    const fn = name.get(p.samples?.[i] ?? -1);
    if (fn !== "(idle)") busyUs += dt;
    if (fn === "(garbage collector)") gcUs += dt;
  });
  return { busyUs, gcUs };
}

type Frame = Profile["nodes"][number]["callFrame"];

/**
 * Inclusive time per function (name file:line, or as `label` names it), each sample counted once per function on
 * its stack; with `self`, only the function the sample was taken in.
 */
function inclusive(p: Profile, into: Map<string, number>, self = false, label?: (f: Frame) => string): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  (p.samples ?? []).forEach((leaf, i) => {
    const dt = p.timeDeltas?.[i] ?? 0;
    const seen = new Set<string>();
    for (let id: number | undefined = leaf; id !== undefined; id = self ? undefined : parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      if (f.functionName === "(root)" || f.functionName === "(idle)") continue;
      const file = f.url.split("/").pop() ?? "";
      const key =
        label?.(f) ?? `${f.functionName || "(module top level)"}${file ? ` ${file}:${f.lineNumber + 1}` : ""}`;
      if (seen.has(key)) continue;
      seen.add(key);
      into.set(key, (into.get(key) ?? 0) + dt);
    }
  });
}

interface StartupResult {
  target: Target;
  bundle: { rawKiB: number; gzipKiB: number; files: string[] };
  runs: { busyMs: number; gcMs: number }[];
  medianBusyMs: number;
  top: { fn: string; ms: number }[];
}

function measureStartup(): StartupResult[] {
  const tmp = mkdtempSync(join(tmpdir(), "glm-edge-startup-"));
  try {
    const prepared = TARGETS.map((target, t) => {
      log(`bundling ${target.root} …`);
      const dist = join(tmp, `dist-${t}`);
      wrangler(target.root, ["deploy", "--dry-run", "--outdir", dist]);
      const files = readdirSync(dist)
        .filter((f) => !f.endsWith(".map") && f !== "README.md")
        .sort();
      const bytes = Buffer.concat(files.map((f) => readFileSync(join(dist, f))));
      // One multipart bundle for `check startup --worker`, so every run profiles the very same code.
      const bundleFile = join(tmp, `worker-${t}.bundle`);
      wrangler(target.root, ["deploy", "--dry-run", "--outfile", bundleFile]);
      return {
        target,
        bundleFile,
        bundle: { rawKiB: bytes.length / 1024, gzipKiB: gzipSync(bytes).length / 1024, files },
        runs: [] as StartupResult["runs"],
        incl: new Map<string, number>(),
      };
    });
    for (let i = 0; i < RUNS; i++) {
      for (const [t, p] of prepared.entries()) {
        const out = join(tmp, `startup-${t}-${i}.cpuprofile`);
        wrangler(p.target.root, ["check", "startup", "--worker", p.bundleFile, "--outfile", out]);
        const profile = JSON.parse(readFileSync(out, "utf8")) as Profile;
        const { busyUs, gcUs } = busy(profile);
        p.runs.push({ busyMs: ms(busyUs), gcMs: ms(gcUs) });
        inclusive(profile, p.incl);
        log(`  ${p.target.label} run ${i + 1}/${RUNS}: busy ${ms(busyUs)} ms (GC ${ms(gcUs)} ms)`);
      }
    }
    return prepared.map((p) => ({
      target: p.target,
      bundle: p.bundle,
      runs: p.runs,
      medianBusyMs: median(p.runs.map((r) => r.busyMs)),
      top: [...p.incl]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 12)
        .map(([fn, us]) => ({ fn, ms: ms(us / RUNS) })),
    }));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ---- first request on a fresh `wrangler dev` against warm requests -------------------------------------------

const ADMIN = "bench-admin-token";
interface Probe {
  name: string;
  init: (key: string) => { path: string; init: RequestInit };
}
const PROBES: Probe[] = [
  {
    name: "POST /v1/chat/completions",
    init: (key) => ({
      path: "/v1/chat/completions",
      init: {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({
          model: "glm-4-flash-250414",
          messages: [{ role: "user", content: "hi [[sim: tokens=5]]" }],
        }),
      },
    }),
  },
  { name: "GET /v1/models", init: () => ({ path: "/v1/models", init: {} }) },
  { name: "GET /openapi.json", init: () => ({ path: "/openapi.json", init: {} }) },
];

/**
 * `wrangler dev` on persisted state. Ready when wrangler says so ("Ready on"), plus a few seconds of settling:
 * no HTTP request reaches the Worker before the measured ones.
 */
async function devSession<T>(
  root: string,
  vars: Record<string, string>,
  state: string,
  body: (url: string) => Promise<T>,
  extra: string[] = [],
): Promise<T> {
  const port = await freePort();
  const child = spawn(
    NODE,
    [
      WRANGLER,
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      state,
      "--show-interactive-dev-session=false",
      "--log-level",
      "info",
      ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      ...extra,
    ],
    { cwd: root, env: ENV, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  try {
    const deadline = Date.now() + 120_000;
    while (!out.includes("Ready on")) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`wrangler dev did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 3_000));
    return await body(`http://127.0.0.1:${port}`);
  } finally {
    const gone = new Promise((r) => child.once("exit", r));
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch {
      // already gone
    }
    await gone;
  }
}

async function timed(url: string, path: string, init: RequestInit): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url + path, init);
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return performance.now() - t0;
}

interface FirstRequest {
  name: string;
  firstMs: number[];
  warmMs: number[];
}

async function measureFirstRequests(): Promise<FirstRequest[][]> {
  const sim = await startSimProcess(await freePort());
  const vars = {
    GLM_BASE_URL: sim.baseUrl,
    GLM_API_KEY: "bench.upstream",
    ADMIN_TOKEN: ADMIN,
    KEY_ENCRYPTION_SECRET: "bench-secret",
    GLM_ACCOUNT_TIER: "V3",
  };
  const states = TARGETS.map(() => mkdtempSync(join(tmpdir(), "glm-edge-startup-state-")));
  try {
    // A key in each persisted state, created in a session of its own so that later sessions start cold.
    const keys: string[] = [];
    for (const [t, target] of TARGETS.entries()) {
      keys.push(
        await devSession(target.root, vars, states[t]!, async (url) => {
          const res = await fetch(`${url}/admin/keys`, {
            method: "POST",
            headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
            body: JSON.stringify({ name: "startup-bench", tier: "V3" }),
          });
          return ((await res.json()) as { key: string }).key;
        }),
      );
    }
    const results = TARGETS.map(() =>
      PROBES.map((p) => ({ name: p.name, firstMs: [] as number[], warmMs: [] as number[] })),
    );
    for (let s = 0; s < SESSIONS; s++) {
      for (const [t, target] of TARGETS.entries()) {
        // Rotate which route meets the fresh isolate first; the others are still first for their own route.
        const order = PROBES.map((_, i) => (i + s) % PROBES.length);
        await devSession(target.root, vars, states[t]!, async (url) => {
          for (const i of order) {
            const { path, init } = PROBES[i]!.init(keys[t]!);
            results[t]![i]!.firstMs.push(await timed(url, path, init));
            const warm: number[] = [];
            for (let k = 0; k < 10; k++) warm.push(await timed(url, path, init));
            results[t]![i]!.warmMs.push(median(warm));
          }
        });
        log(
          `  ${target.label} session ${s + 1}/${SESSIONS}: ${results[t]!.map((r) => `${r.name} first ${r.firstMs.at(-1)!.toFixed(1)} ms, warm ${r.warmMs.at(-1)!.toFixed(1)} ms`).join("; ")}`,
        );
      }
    }
    return results;
  } finally {
    await sim.stop();
    for (const state of states) rmSync(state, { recursive: true, force: true });
  }
}

// ---- profile of the first chat request ----------------------------------------------------------------------------

/** A Chrome DevTools Protocol session on wrangler's inspector (which relays it to the Worker's isolate). */
async function inspector(port: number) {
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as { webSocketDebuggerUrl: string }[];
  if (!target) throw new Error(`the inspector on port ${port} lists no Worker`);
  // The proxy accepts only local origins; Node's WebSocket sends none unless told (undici's `headers` option).
  const ws = new WebSocket(target.webSocketDebuggerUrl, {
    headers: { origin: "http://localhost" },
  } as unknown as string[]);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`could not connect to ${target.webSocketDebuggerUrl}`));
  });
  let next = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.onmessage = (e) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const p = m.id === undefined ? undefined : pending.get(m.id);
    if (!p) return;
    pending.delete(m.id!);
    if (m.error) p.reject(new Error(m.error.message));
    else p.resolve(m.result);
  };
  const send = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = ++next;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close() };
}

/**
 * The CPU profiles of the first chat request on a fresh isolate (key created in an earlier session) and of a warm
 * one after it, unminified so that functions keep their names. The profiler is started after "Ready on", so startup
 * is not in them.
 */
async function profileFirstRequest(target: Target): Promise<FirstRequestProfile> {
  const sim = await startSimProcess(await freePort());
  const vars = {
    GLM_BASE_URL: sim.baseUrl,
    GLM_API_KEY: "bench.upstream",
    ADMIN_TOKEN: ADMIN,
    KEY_ENCRYPTION_SECRET: "bench-secret",
    GLM_ACCOUNT_TIER: "V3",
  };
  const state = mkdtempSync(join(tmpdir(), "glm-edge-startup-state-"));
  const extra = ["--minify=false"];
  try {
    const key = await devSession(
      target.root,
      vars,
      state,
      async (url) => {
        const res = await fetch(`${url}/admin/keys`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
          body: JSON.stringify({ name: "startup-bench", tier: "V3" }),
        });
        return ((await res.json()) as { key: string }).key;
      },
      extra,
    );
    const inspectorPort = await freePort();
    return await devSession(
      target.root,
      vars,
      state,
      async (url) => {
        const cdp = await inspector(inspectorPort);
        try {
          await cdp.send("Profiler.enable");
          await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
          const { path, init } = PROBES[0]!.init(key);
          const profiled = async () => {
            await cdp.send("Profiler.start");
            const ms = await timed(url, path, init);
            return { ms, profile: (await cdp.send<{ profile: Profile }>("Profiler.stop")).profile };
          };
          const { profile, ms } = await profiled();
          for (let i = 0; i < 5; i++) await timed(url, path, init);
          const warm = await profiled();
          // The bundle's text, to name each function's module by the bundler's `// src/…` comments (after the profile,
          // so that the debugger costs the request nothing).
          await cdp.send("Debugger.enable");
          const sources = new Map<string, string>();
          for (const id of new Set(profile.nodes.map((n) => n.callFrame.scriptId ?? ""))) {
            if (!id || id === "0") continue;
            const got = await cdp
              .send<{ scriptSource: string }>("Debugger.getScriptSource", { scriptId: id })
              .catch(() => undefined);
            if (got) sources.set(id, got.scriptSource);
          }
          return { target, profile, ms, warm, sources };
        } finally {
          cdp.close();
        }
      },
      [...extra, "--inspector-port", String(inspectorPort)],
    );
  } finally {
    await sim.stop();
    rmSync(state, { recursive: true, force: true });
  }
}

interface FirstRequestProfile {
  target: Target;
  profile: Profile;
  ms: number;
  /** The sixth request, for comparison. */
  warm: { profile: Profile; ms: number };
  /** Script id → source, for naming modules. */
  sources: Map<string, string>;
}

/** `name module @bundle line`, the module from the last `// path` comment esbuild wrote above the function's line. */
function moduleLabeller(sources: Map<string, string>): (f: Frame) => string {
  const starts = new Map<string, { line: number; module: string }[]>();
  for (const [id, text] of sources) {
    const list: { line: number; module: string }[] = [];
    text.split("\n").forEach((line, i) => {
      const m = /^\/\/ ((?:src|node_modules|\.\.\/)\S*)$/.exec(line);
      if (m) list.push({ line: i, module: m[1]!.replace(/^(\.\.\/)*node_modules\//, "") });
    });
    starts.set(id, list);
  }
  return (f) => {
    const list = starts.get(f.scriptId ?? "") ?? [];
    let module = f.url.split("/").pop() ?? "";
    for (const s of list) {
      if (s.line > f.lineNumber) break;
      module = s.module;
    }
    const name = f.functionName || (f.lineNumber === 0 ? "(module top level)" : "(anonymous)");
    return `${name} ${module} @${f.lineNumber + 1}`;
  };
}

function profileReport({ target, profile, ms: took, warm, sources }: FirstRequestProfile): string {
  const { busyUs, gcUs } = busy(profile);
  const warmBusy = busy(warm.profile);
  const label = moduleLabeller(sources);
  const table = (self: boolean) => {
    const by = new Map<string, number>();
    inclusive(profile, by, self, label);
    return [...by]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 25)
      .map(([fn, us]) => `| ${ms(us).toFixed(1)} | \`${fn}\` |`);
  };
  return [
    `First ${PROBES[0]!.name} on a fresh, unminified \`wrangler dev\` of ${target.root === HERE ? commitOf(HERE) : target.root} (${target.label}): ` +
      `answered in ${took.toFixed(1)} ms, busy CPU in the Worker's isolate ${ms(busyUs)} ms (GC ${ms(gcUs)} ms); the sixth request: ` +
      `${warm.ms.toFixed(1)} ms, busy ${ms(warmBusy.busyUs)} ms. Sampled every 0.1 ms (the profiler inflates every figure); ` +
      "the isolate runs the Durable Objects too.",
    "",
    "| inclusive ms | function |",
    "|---:|---|",
    ...table(false),
    "",
    "| self ms | function |",
    "|---:|---|",
    ...table(true),
  ].join("\n");
}

// ---- report ------------------------------------------------------------------------------------------------------

function commitOf(dir: string): string {
  const r = spawnSync("git", ["-C", dir, "log", "-1", "--format=%h %s"], { encoding: "utf8" });
  return r.status === 0 ? `\`${r.stdout.trim().slice(0, 60)}\`` : dir;
}

function report(results: StartupResult[], first: FirstRequest[][] | null): string {
  const f1 = (x: number) => x.toFixed(1);
  const head = (cols: string[]) => [
    `| | ${results.map((r) => `${r.target.label}`).join(" | ")} |`,
    `|---|${results.map(() => "---:").join("|")}|`,
    ...cols,
  ];
  const lines = [
    `Measured by \`npm run bench:startup${args.baseline ? " -- --baseline DIR" : ""}\` (scripts/bench-startup.ts) on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC; ` +
      `load average at the end ${loadavg()
        .map((x) => x.toFixed(2))
        .join(", ")}. ` +
      results.map((r) => `${r.target.label}: ${r.target.root === HERE ? commitOf(HERE) : r.target.root}`).join("; ") +
      ".",
    "",
    ...head([
      `| bundle, raw (KiB) | ${results.map((r) => f1(r.bundle.rawKiB)).join(" | ")} |`,
      `| bundle, gzip (KiB) | ${results.map((r) => f1(r.bundle.gzipKiB)).join(" | ")} |`,
      `| startup busy CPU, median (ms) | ${results.map((r) => `**${f1(r.medianBusyMs)}**`).join(" | ")} |`,
      `| startup busy CPU, runs (ms) | ${results.map((r) => r.runs.map((x) => f1(x.busyMs)).join(", ")).join(" | ")} |`,
    ]),
    "",
    `Bundle: \`wrangler deploy --dry-run --outdir\` (every module, source maps excluded). Startup: \`wrangler check startup --worker\` on that bundle, ${RUNS} runs ` +
      'alternating between the checkouts; busy = sampled time minus idle samples (garbage collection included), as wrangler reports "Active".',
  ];
  for (const r of results) {
    lines.push(
      "",
      `Top functions by inclusive time, ${r.target.label} (mean ms per run; "(program)" is V8 outside JavaScript, mostly compiling the bundle):`,
      "",
      "| ms | function |",
      "|---:|---|",
      ...r.top.map((t) => `| ${f1(t.ms)} | \`${t.fn}\` |`),
    );
  }
  if (first) {
    lines.push(
      "",
      `First request on a fresh \`wrangler dev\` (after "Ready on" and 3 s of settling) against the median of the next 10, ${SESSIONS} sessions per checkout; ` +
        "medians over sessions, ms. Each route's first request is the first for that route; which route meets the fresh isolate first rotates.",
      "",
      `| request | ${results.map((r) => `${r.target.label}: first / warm / first − warm`).join(" | ")} |`,
      `|---|${results.map(() => "---:").join("|")}|`,
      ...PROBES.map(
        (p, i) =>
          `| ${p.name} | ${first
            .map((rs) => {
              const x = rs[i]!;
              return `${f1(median(x.firstMs))} / ${f1(median(x.warmMs))} / ${f1(median(x.firstMs.map((v, k) => v - x.warmMs[k]!)))}`;
            })
            .join(" | ")} |`,
      ),
    );
  }
  return lines.join("\n");
}

const BEGIN = "<!-- startup:begin (npm run bench:startup -- --write) -->";
const END = "<!-- startup:end -->";

if (args.profile) {
  for (const target of TARGETS) {
    const result = await profileFirstRequest(target);
    if (args.outfile && target.root === HERE) writeFileSync(resolve(args.outfile), JSON.stringify(result.profile));
    process.stdout.write(profileReport(result) + "\n\n");
  }
  process.exit(0);
}

const startup = measureStartup();
const first = args["first-request"] ? await measureFirstRequests() : null;
const md = report(startup, first);
process.stdout.write(md + "\n");
if (args.write) {
  const path = join(HERE, "BENCHMARKS.md");
  const doc = existsSync(path) ? readFileSync(path, "utf8") : "# Benchmarks\n";
  const section = `${BEGIN}\n${md}\n${END}`;
  const at = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  writeFileSync(
    path,
    at >= 0 && end > at
      ? doc.slice(0, at) + section + doc.slice(end + END.length)
      : `${doc.trimEnd()}\n\n## Startup\n\n${section}\n`,
  );
  log("wrote the Startup section of BENCHMARKS.md");
}
