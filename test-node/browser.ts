// Browser tests' helpers: Debian's Chromium driven by playwright-core (no downloaded browser builds), kept
// off the network except loopback, and screenshots written to artifacts/screenshots/ for CI to keep.
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const SCREENSHOTS = resolve(import.meta.dirname, "..", "artifacts", "screenshots");

/** Absent Chromium skips the browser tests locally; CI installs it (.ci/run), so there it must run. */
export function browserAvailability(): { run: boolean; reason: string } {
  if (existsSync(CHROMIUM)) return { run: true, reason: "" };
  if (process.env["CI"]) return { run: true, reason: `${CHROMIUM} is missing in CI: .ci/run should have installed it` };
  return { run: false, reason: `skipping browser tests: ${CHROMIUM} not found (apt-get install -y chromium)` };
}

export async function launchBrowser(): Promise<Browser> {
  const { reason } = browserAvailability();
  if (reason) throw new Error(reason);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}

/**
 * A context whose requests may only reach loopback: anything else is aborted and remembered, so a test
 * can assert that a page (the playground, the docs) works offline and sends nothing to third parties.
 */
export async function loopbackContext(browser: Browser, options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; blocked: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  const blocked: string[] = [];
  await context.route("**/*", async (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === "data:" || url.protocol === "blob:" || url.hostname === "127.0.0.1" || url.hostname === "localhost") return route.continue();
    blocked.push(url.href);
    return route.abort("blockedbyclient");
  });
  return { context, blocked };
}

/** Collects console errors and uncaught exceptions of a page (CSP violations show up here too). */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text());
  });
  page.on("pageerror", (err) => errors.push(`${err.name}: ${err.message}`));
  return errors;
}

export async function shot(page: Page, name: string, fullPage = false): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage });
  return path;
}
