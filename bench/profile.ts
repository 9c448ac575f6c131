// CPU profile of a Worker under `wrangler dev`, through the DevTools protocol of wrangler's inspector proxy
// (--inspector-port), and where its time goes: self time per function and per source module. The Worker
// runs as one esbuild bundle, fetched back through the same protocol; esbuild marks where each module starts
// ("// src/chat/service.ts"), which is how a bundle line is attributed to its source file without source maps.

interface CallFrame {
  functionName: string;
  scriptId: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  /** The source of each script the samples fall in, by scriptId (added here, not part of V8's profile). */
  sources?: Record<string, string>;
}

/** Runs `during` while the Worker's isolate is being profiled (sampling every intervalUs). */
export async function profileWorker<T>(
  inspectorPort: number,
  during: () => Promise<T>,
  intervalUs = 200,
): Promise<{ profile: CpuProfile; result: T }> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as {
    webSocketDebuggerUrl: string;
  }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (!url) throw new Error("the inspector lists no Worker");
  // wrangler's proxy only admits DevTools from a local Origin; node's WebSocket takes headers as an extension.
  const ws = new WebSocket(url, { headers: { origin: "http://127.0.0.1" } } as unknown as string[]);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`cannot open the inspector at ${url}`));
  });
  let nextId = 0;
  const pending = new Map<number, (v: { result?: unknown; error?: { message: string } }) => void>();
  ws.onmessage = (m) => {
    // Answers carry our id; wrangler's proxy answers some commands without a `result`, so any reply counts.
    const msg = JSON.parse(String(m.data)) as { id?: number; result?: unknown; error?: { message: string } };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg);
  };
  const call = async (method: string, params: Record<string, unknown> = {}): Promise<unknown> => {
    const id = ++nextId;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answer = new Promise<{ result?: unknown; error?: { message: string } }>((resolve, reject) => {
      pending.set(id, resolve);
      timer = setTimeout(() => reject(new Error(`${method}: no answer from the inspector within 30 s`)), 30_000);
    });
    ws.send(JSON.stringify({ id, method, params }));
    const a = await answer.finally(() => {
      clearTimeout(timer);
      pending.delete(id);
    });
    if (a.error) throw new Error(`${method}: ${a.error.message}`);
    return a.result ?? {};
  };
  try {
    await call("Profiler.enable");
    await call("Profiler.setSamplingInterval", { interval: intervalUs });
    await call("Profiler.start");
    const result = await during();
    const { profile } = (await call("Profiler.stop")) as { profile: CpuProfile };
    await call("Profiler.disable");
    // The debugger only after the profile: enabled, it would slow what is being measured.
    await call("Debugger.enable");
    profile.sources = {};
    for (const id of new Set(profile.nodes.map((n) => n.callFrame.scriptId).filter((id) => id !== "0"))) {
      const src = (await call("Debugger.getScriptSource", { scriptId: id }).catch(() => ({}))) as {
        scriptSource?: string;
      };
      if (src.scriptSource) profile.sources[id] = src.scriptSource;
    }
    await call("Debugger.disable");
    return { profile, result };
  } finally {
    ws.close();
  }
}

export interface Hot {
  name: string;
  ms: number;
  share: number;
}

/** Maps a bundle line to the module esbuild placed there, from its "// path" markers. */
function moduleIndex(source: string | undefined): ((line: number) => string) | undefined {
  if (source === undefined) return undefined;
  const marks: { line: number; name: string }[] = [];
  source.split("\n").forEach((text, i) => {
    const m = /^\/\/ ((?:src|bench|node_modules|\.\.?)\/\S+\.[cm]?[jt]s)$/.exec(text);
    if (m) marks.push({ line: i, name: m[1]!.replace(/^.*node_modules\//, "node_modules/") });
  });
  return (line) => {
    let lo = 0;
    let hi = marks.length - 1;
    let found = "(bundle preamble)";
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (marks[mid]!.line <= line) {
        found = marks[mid]!.name;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  };
}

/** Self time by function and by module, largest first; runtime-internal frames keep their own names. */
export function hotspots(profile: CpuProfile): { total: number; functions: Hot[]; modules: Hot[] } {
  const byNode = new Map<number, number>();
  profile.samples.forEach((id, i) => byNode.set(id, (byNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const indexes = new Map<string, ((line: number) => string) | undefined>();
  const fns = new Map<string, number>();
  const mods = new Map<string, number>();
  let total = 0;
  for (const [id, ms] of byNode) {
    const f = nodes.get(id)?.callFrame;
    if (!f || f.functionName === "(idle)") continue;
    total += ms;
    let mod: string;
    if (f.url === "") mod = f.functionName.startsWith("(") ? f.functionName : "(runtime built-ins)";
    else {
      if (!indexes.has(f.scriptId)) indexes.set(f.scriptId, moduleIndex(profile.sources?.[f.scriptId]));
      mod = indexes.get(f.scriptId)?.(f.lineNumber) ?? f.url.split("/").pop()!;
    }
    const fn = `${f.functionName || "(anonymous)"} — ${mod}`;
    fns.set(fn, (fns.get(fn) ?? 0) + ms);
    mods.set(mod, (mods.get(mod) ?? 0) + ms);
  }
  const rank = (m: Map<string, number>): Hot[] =>
    [...m].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms, share: total > 0 ? ms / total : 0 }));
  return { total, functions: rank(fns), modules: rank(mods) };
}
