// Starts the gateway under `wrangler dev` as a child process and waits until it answers /healthz.
// Shared by `npm run dev`, the end-to-end tests and the benchmark, so all three run the gateway the
// same way. Configuration is passed with --var (how scripted runs configure the gateway).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export interface GatewayProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Everything the process printed, for diagnosing a failed start. */
  output(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  port: number;
  vars: Record<string, string>;
  /** wrangler config file (default: the gateway's wrangler.toml). */
  config?: string;
  /** Keep local state in this folder; a fresh temporary one when omitted. */
  persistTo?: string;
  /** Print the child's output as it comes (npm run dev). */
  inherit?: boolean;
  logLevel?: "debug" | "info" | "log" | "warn" | "error" | "none";
  readyTimeoutMs?: number;
  extraArgs?: string[];
  /** Aborting it stops the child, also while it is still starting (Ctrl+C during start-up). */
  signal?: AbortSignal;
  /**
   * Another checkout of the gateway to run instead of this one, with its own node_modules (wrangler and
   * workerd) and its own wrangler.toml: the benchmark's before/after comparison (BENCH_BASELINE).
   */
  root?: string;
}

const ROOT = resolve(import.meta.dirname, "..");
// Run wrangler's JS entry on the project's own Node (node_modules/.bin/node, from the `node` package):
// the machine's Node may be too old for wrangler, and a bare `wrangler` would pick it up from PATH.
const PROJECT_NODE = join(ROOT, "node_modules", ".bin", "node");
const NODE = existsSync(PROJECT_NODE) ? PROJECT_NODE : process.execPath;

export async function startWranglerDev(opts: StartOptions): Promise<GatewayProcess> {
  const root = opts.root ?? ROOT;
  const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
  const projectNode = join(root, "node_modules", ".bin", "node");
  const node = existsSync(projectNode) ? projectNode : NODE;
  const ownState = opts.persistTo === undefined;
  const persistTo = opts.persistTo ?? mkdtempSync(join(tmpdir(), "glm-edge-state-"));
  const args = [
    "dev",
    "--config",
    opts.config ?? join(root, "wrangler.toml"),
    "--ip",
    "127.0.0.1",
    "--port",
    String(opts.port),
    "--persist-to",
    persistTo,
    "--show-interactive-dev-session=false",
    "--log-level",
    opts.logLevel ?? "warn",
    ...Object.entries(opts.vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn(node, [wrangler, ...args], {
    cwd: root,
    env: {
      ...process.env,
      PATH: `${join(root, "node_modules", ".bin")}:${process.env["PATH"] ?? ""}`,
      WRANGLER_SEND_METRICS: "false",
      NO_COLOR: "1",
      CI: process.env["CI"] ?? "true",
    },
    stdio: opts.inherit ? ["ignore", "inherit", "inherit"] : ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${opts.port}`;

  let exited = false;
  child.once("exit", () => (exited = true));
  const stop = async () => {
    if (!exited && child.pid !== undefined) {
      const gone = new Promise<void>((r) => child.once("exit", () => r()));
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      }, 3_000);
      await gone;
      clearTimeout(timer);
    }
    if (ownState) rmSync(persistTo, { recursive: true, force: true });
  };

  opts.signal?.addEventListener("abort", () => void stop(), { once: true });
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
  for (;;) {
    if (opts.signal?.aborted) throw new Error("wrangler dev: start-up cancelled");
    if (exited) throw new Error(`wrangler dev exited before it was ready:\n${out}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev did not answer /healthz within the time allowed:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, port: opts.port, child, output: () => out, stop };
}

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}
