// The lint rule that keeps src/'s folders acyclic (eslint-rules/folder-cycles.js), run by ESLint itself on
// small trees written to a temporary folder.
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ESLint } from "eslint";
import folderCycles from "../eslint-rules/folder-cycles.js";

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** Writes the files under <tmp>/src and lints them all with only the folder rule. */
async function lint(files: Record<string, string>): Promise<Record<string, string[]>> {
  dir = mkdtempSync(path.join(tmpdir(), "folder-cycles-"));
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, "src", name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  const eslint = new ESLint({
    cwd: dir,
    overrideConfigFile: true,
    overrideConfig: [
      {
        files: ["src/**/*.js"],
        plugins: { house: { rules: { "folder-cycles": folderCycles } } },
        rules: { "house/folder-cycles": ["error", { root: "src" }] },
      },
    ],
  });
  const results = await eslint.lintFiles(["src/**/*.js"]);
  return Object.fromEntries(
    results.map((r) => [path.relative(path.join(dir!, "src"), r.filePath), r.messages.map((m) => m.message)]),
  );
}

describe("folder-cycles lint rule", () => {
  it("accepts imports that flow one way, within a folder and from root files", async () => {
    const out = await lint({
      "a/one.js": 'import { b } from "../b/one.js"; import { x } from "./two.js"; export const a = b + x;',
      "a/two.js": 'import { e } from "../errors.js"; export const x = e;',
      "b/one.js": 'import { e } from "../errors.js"; export const b = e;',
      "errors.js": "export const e = 1;",
    });
    expect(Object.values(out).flat()).toEqual([]);
  });

  it("reports both imports of a two-folder cycle, naming the way back", async () => {
    const out = await lint({
      "a/one.js": 'import { b } from "../b/one.js"; export const a = b;',
      "b/one.js": "export const b = 1;",
      "b/two.js": 'import { a } from "../a/one.js"; export const c = a;',
    });
    expect(out["a/one.js"]).toEqual([
      "import cycle between folders: a/ → b/ → a/ (the way back: b/two.js → ../a/one.js)",
    ]);
    expect(out["b/two.js"]).toEqual([
      "import cycle between folders: b/ → a/ → b/ (the way back: a/one.js → ../b/one.js)",
    ]);
    expect(out["b/one.js"]).toEqual([]);
  });

  it("finds a cycle through a file in the root and through type-only and re-exporting imports", async () => {
    const out = await lint({
      "a/one.js": 'export * from "../config.js";',
      "config.js": 'import { z } from "./b/zod.js"; export const c = z;',
      "b/zod.js": "export const z = 1;",
      "b/mid.js": 'import("../a/one.js"); export const m = 1;',
    });
    expect(out["a/one.js"]).toEqual([expect.stringContaining("a/ → config.js → b/ → a/")]);
    expect(out["b/mid.js"]).toEqual([expect.stringContaining("b/ → a/ → config.js → b/")]);
  });

  it("ignores imports in comments and packages", async () => {
    const out = await lint({
      "a/one.js": '// import { b } from "../b/one.js"\nimport x from "node:path"; export const a = x;',
      "b/one.js": 'import { a } from "../a/one.js"; export const b = a;',
    });
    expect(Object.values(out).flat()).toEqual([]);
  });
});
