// Copies the browser bundle of the API reference (Scalar's standalone build, from node_modules) into
// public/vendor/, so GET /docs works offline and `wrangler deploy` uploads it with the other static
// assets. Runs as npm's "prepare" step (after `npm ci` / `npm install`); the copy is not committed.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const PKG = join(ROOT, "node_modules", "@scalar", "api-reference");
const OUT = join(ROOT, "public", "vendor", "scalar");

const files: [from: string, to: string][] = [[join(PKG, "dist", "browser", "standalone.js"), join(OUT, "standalone.js")]];

if (!existsSync(files[0]![0])) {
  console.error(`vendor-assets: ${files[0]![0]} is missing; run npm ci (the API reference page needs @scalar/api-reference)`);
  process.exit(1);
}

mkdirSync(OUT, { recursive: true });
for (const [from, to] of files) {
  // Skip an identical copy so repeated installs do not touch the file (and wrangler's asset watcher).
  if (existsSync(to) && statSync(to).size === statSync(from).size && readFileSync(to).equals(readFileSync(from))) continue;
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
}
const version = (JSON.parse(readFileSync(join(PKG, "package.json"), "utf8")) as { version: string }).version;
console.log(`vendor-assets: @scalar/api-reference ${version} → public/vendor/scalar/`);
