// The benchmark's processes and the machine: starts the simulator in its own process (so its event loop
// does not share the load generator's), finds the workerd processes of a `wrangler dev` by process group,
// reads their CPU time from /proc, and describes the machine for BENCHMARKS.md.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");

export interface SimProcess {
  url: string;
  baseUrl: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** The GLM simulator as a child process (own process group), ready when it answers /_sim/stats. */
export async function startSimProcess(port: number): Promise<SimProcess> {
  const child = spawn(process.execPath, [join(ROOT, "sim", "server.ts"), "--port", String(port)], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
    detached: true,
  });
  const url = `http://127.0.0.1:${port}`;
  let exited = false;
  child.once("exit", () => (exited = true));
  const stop = async () => {
    if (exited || child.pid === undefined) return;
    const gone = new Promise<void>((r) => child.once("exit", () => r()));
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await gone;
  };
  for (let i = 0; i < 150; i++) {
    if (exited) throw new Error("the simulator exited before it was ready");
    try {
      if ((await fetch(`${url}/_sim/stats`)).ok) return { url, baseUrl: `${url}/api/paas/v4`, child, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error("the simulator did not start within 15 s");
}

interface ProcStat {
  pid: number;
  comm: string;
  pgrp: number;
  /** utime + stime, in clock ticks. */
  ticks: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm may hold spaces and parentheses: the fields after it start after the last ")".
    const close = text.lastIndexOf(")");
    const comm = text.slice(text.indexOf("(") + 1, close);
    const f = text.slice(close + 2).split(" ");
    // After comm: state(0) ppid(1) pgrp(2) … utime(11) stime(12).
    return { pid, comm, pgrp: Number(f[2]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

export interface RuntimePids {
  /** The workerd that runs the Worker (and its Durable Objects): the one with the inspector. */
  runtime: number[];
  /** wrangler dev's own proxy workerd in front of it, which production does not have. */
  proxy: number[];
}

/** The workerd processes in a process group (a `wrangler dev` started detached leads its own group). */
export function workerdPids(pgrp: number): RuntimePids {
  const out: RuntimePids = { runtime: [], proxy: [] };
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (!st || st.pgrp !== pgrp || st.comm !== "workerd") continue;
    (cmdline(st.pid).includes("--inspector-addr") ? out.runtime : out.proxy).push(st.pid);
  }
  return out;
}

export const CLOCK_TICKS_PER_S = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time used so far by these processes, in ms. */
export function cpuMs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += readStat(pid)?.ticks ?? 0;
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  kernel: string;
  node: string;
  wrangler: string;
  workerd: string;
  load: number[];
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string })
      .version;
  } catch {
    return "unknown";
  }
}

/** The runtime's version, from the binary a runtime process runs (wrangler may carry its own workerd). */
export function workerdVersion(pid: number | undefined): string {
  const binary = pid === undefined ? join(ROOT, "node_modules", ".bin", "workerd") : cmdline(pid).split(" ")[0]!;
  try {
    return execFileSync(binary, ["--version"]).toString().trim();
  } catch {
    return pkgVersion("workerd");
  }
}

export function machine(runtimePid?: number): Machine {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "unknown";
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0);
  return {
    cpu: model.trim(),
    cores: (cpuinfo.match(/^processor\s*:/gm) ?? []).length || os.cpus().length,
    memoryGb: Math.round(memKb / 1024 / 102.4) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    wrangler: pkgVersion("wrangler"),
    workerd: workerdVersion(runtimePid),
    load: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
