// The OpenAPI document is generated at build time (scripts/openapi.ts → public/openapi.json): what `wrangler dev`
// serves at /openapi.json must be exactly a fresh generation from the code (plus `servers`, this origin), so a
// stale or missing generated file, or serving that alters it, fails here. /docs still points at it.
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startE2E, type E2E } from "../test-support/harness.ts";

const ROOT = resolve(import.meta.dirname, "..");
let e2e: E2E;

beforeAll(async () => {
  e2e = await startE2E();
});

afterAll(async () => {
  await e2e?.close();
});

/** What the build writes, generated now in a process of its own. */
function freshDocument(): Record<string, unknown> {
  const out = execFileSync(
    process.execPath,
    ["--experimental-transform-types", "--disable-warning=ExperimentalWarning", "scripts/openapi.ts", "--stdout"],
    { cwd: ROOT, encoding: "utf8" },
  );
  return JSON.parse(out) as Record<string, unknown>;
}

describe("/openapi.json under wrangler dev", () => {
  it("is the document a fresh generation from the code makes, with this gateway as its server", async () => {
    const res = await fetch(`${e2e.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    const { servers, ...served } = (await res.json()) as Record<string, unknown>;
    expect(servers).toEqual([{ url: e2e.url, description: "this gateway" }]);
    const fresh = freshDocument();
    expect(Object.keys(fresh).length).toBeGreaterThan(3);
    const [a, b] = [JSON.stringify(served), JSON.stringify(fresh)];
    let at = 0;
    while (at < a.length && a[at] === b[at]) at++;
    // The documents are 100 KiB: on a difference, show where, not both whole.
    expect(
      a === b,
      `served and fresh differ at ${at}: …${a.slice(at - 60, at + 60)}… vs …${b.slice(at - 60, at + 60)}…`,
    ).toBe(true);
  });

  it("/docs renders it", async () => {
    const res = await fetch(`${e2e.url}/docs`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('href="/openapi.json"');
  });
});
