// The processes a benchmark starts — simulators and `wrangler dev`s — and their stopping: every one started
// is stopped on the way out, on errors and signals too, and the whole run is bounded in time. Local Durable
// Object state goes to tmpfs when the machine has one. Shared by npm run bench and npm run bench:scale.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startWranglerDev, type GatewayProcess, type StartOptions } from "../scripts/wrangler-dev.ts";
import type { SimProcess } from "./procs.ts";

const running: { name: string; stop: () => Promise<void>; pid: number | undefined }[] = [];
let stopping: Promise<void> | undefined;

export function stopAll(): Promise<void> {
  stopping ??= (async () => {
    for (const p of running.reverse())
      await p.stop().catch((err: unknown) => console.error(`stopping ${p.name}: ${String(err)}`));
  })();
  return stopping;
}

/** Stops everything on signals, on exit (kill outright), and after `deadlineMs` (then fails the run). */
export function guardRun(deadlineMs: number, label: string): void {
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
  setTimeout(() => {
    console.error(`[${label}] still running after ${deadlineMs / 60_000} minutes: stopping everything`);
    void stopAll().then(() => process.exit(1));
  }, deadlineMs).unref();
}

export function track<T extends GatewayProcess | SimProcess>(name: string, p: T): T {
  running.push({ name, stop: p.stop, pid: p.child.pid });
  return p;
}

export const logger = (label: string) => (msg: string) =>
  console.log(`[${label} ${new Date().toISOString().slice(11, 19)}] ${msg}`);

/**
 * Local Durable Object state goes to memory when the machine has a tmpfs: SQLite's fsync on a shared disk
 * would be measured otherwise, a cost of this machine's disk and not of the gateway (production storage is
 * not a local file). The folders are removed when their process stops.
 */
export const STATE_ROOT = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();

/**
 * Starts a `wrangler dev`, again on other ports if a free port it was given was taken meanwhile. Each gets
 * its own inspector port: left to itself, every wrangler reaches for 9229 at the same moment.
 */
export async function startOne(
  name: string,
  opts: Omit<StartOptions, "port" | "persistTo">,
  log: (msg: string) => void,
): Promise<GatewayProcess> {
  for (let attempt = 1; ; attempt++) {
    const extraArgs = opts.extraArgs?.includes("--inspector-port")
      ? opts.extraArgs
      : [...(opts.extraArgs ?? []), "--inspector-port", String(await freePort())];
    const persistTo = mkdtempSync(join(STATE_ROOT, `glm-edge-bench-${name.replace(/\W+/g, "-")}-`));
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
export async function startAll(
  specs: [string, Omit<StartOptions, "port" | "persistTo">][],
  log: (msg: string) => void,
): Promise<GatewayProcess[]> {
  const settled = await Promise.allSettled(specs.map(([name, opts]) => startOne(name, opts, log)));
  settled.forEach((r, i) => {
    if (r.status === "fulfilled") track(specs[i]![0], r.value);
  });
  const failed = settled.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<GatewayProcess>).value);
}

/** Runs a benchmark's main: an error fails the run, and every process started is stopped either way. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    await stopAll();
  }
}
