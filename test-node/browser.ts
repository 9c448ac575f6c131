// Browser tests' helpers: Debian's Chromium driven by playwright-core (no downloaded browser builds), kept
// off the network except loopback, and screenshots written to artifacts/screenshots/ for CI to keep.
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";
import { expect, onTestFailed } from "vitest";

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
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

/**
 * A context whose requests may only reach loopback: anything else is aborted and remembered, so a test
 * can assert that a page (the playground, the docs) works offline and sends nothing to third parties.
 */
export async function loopbackContext(
  browser: Browser,
  options: BrowserContextOptions = {},
): Promise<{ context: BrowserContext; blocked: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  const blocked: string[] = [];
  await context.route("**/*", async (route) => {
    const url = new URL(route.request().url());
    if (
      url.protocol === "data:" ||
      url.protocol === "blob:" ||
      url.hostname === "127.0.0.1" ||
      url.hostname === "localhost"
    )
      return route.continue();
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

export interface OpenedPage {
  page: Page;
  context: BrowserContext;
  /** Requests the context refused: anything not on loopback. */
  blocked: string[];
  errors: string[];
}

/**
 * A fresh page at `url` (which must answer 200) in a loopback-only context. If the test fails, it keeps a
 * screenshot named after the test and prints the page's text (`textOf`), its console errors and the end of
 * the gateway's output: enough to diagnose a CI run.
 */
export async function openPage(
  browser: Browser,
  url: string,
  o: {
    name: string;
    textOf: string;
    gatewayOutput: () => string;
    options?: BrowserContextOptions;
    onPage?: (page: Page) => void;
  },
): Promise<OpenedPage> {
  const { context, blocked } = await loopbackContext(browser, o.options);
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const errors = pageErrors(page);
  o.onPage?.(page);
  onTestFailed(async ({ task }) => {
    await shot(page, `${o.name}-${task.name.replace(/\W+/g, "-").slice(0, 60)}`, true).catch(() => undefined);
    console.error(
      `page text:\n${await page
        .locator(o.textOf)
        .innerText()
        .catch(
          () => "(page closed)",
        )}\nconsole errors: ${JSON.stringify(errors)}\ngateway output:\n${o.gatewayOutput().slice(-6000)}`,
    );
  });
  const res = await page.goto(url);
  expect(res?.status()).toBe(200);
  return { page, context, blocked, errors };
}
