// The operator console in Chromium against `wrangler dev` with the GLM simulator upstream: sign in with the
// admin token, create a key, load it with requests and watch its gauge, spend and chart follow, read its
// requests, edit the catalog, export CSV, revoke the key; on a desktop and on a phone in the dark theme.
// The admin token must never show up in a URL, in localStorage or in the page's HTML.
import { readFileSync } from "node:fs";
import type { Browser, BrowserContextOptions, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { browserAvailability, launchBrowser, openPage, shot } from "./browser.ts";
import { ADMIN_TOKEN, startE2E, type E2E } from "../test-support/harness.ts";

const availability = browserAvailability();
if (!availability.run) console.warn(availability.reason);

const AIR = "glm-4-air-250414";
const PLUS = "glm-4-plus";
const PHONE: BrowserContextOptions = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  colorScheme: "dark",
};

describe.skipIf(!availability.run)("the operator console in Chromium", () => {
  let e2e: E2E;
  let browser: Browser;
  /** Every URL the pages requested, to check the admin token never went into one. */
  const urls: string[] = [];

  beforeAll(async () => {
    e2e = await startE2E();
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await e2e?.close();
  });

  async function open(options: BrowserContextOptions = {}) {
    const opened = await openPage(browser, `${e2e.url}/console`, {
      name: "console-failed",
      textOf: "body",
      gatewayOutput: () => e2e.gateway.output(),
      options,
      onPage: (page) => page.on("request", (r) => urls.push(r.url())),
    });
    expect(new URL(opened.page.url()).pathname).toBe("/console/");
    return opened;
  }

  async function signIn(page: Page) {
    await page.getByLabel("Admin token").fill(ADMIN_TOKEN);
    await page.getByRole("button", { name: "Open" }).click();
    await page.getByRole("tab", { name: "Keys" }).waitFor();
  }

  /** The token is in this tab's sessionStorage only: not in localStorage, the HTML, or any URL. */
  async function expectTokenKeptSecret(page: Page) {
    expect(await page.evaluate(() => JSON.stringify(window.sessionStorage))).toContain(ADMIN_TOKEN);
    expect(await page.evaluate(() => JSON.stringify(window.localStorage))).not.toContain(ADMIN_TOKEN);
    expect(await page.content()).not.toContain(ADMIN_TOKEN);
    expect(page.url()).not.toContain(ADMIN_TOKEN);
    expect(urls.length).toBeGreaterThan(0);
    expect(urls.filter((u) => u.includes(ADMIN_TOKEN) || u.includes(encodeURIComponent(ADMIN_TOKEN)))).toEqual([]);
  }

  const unexpected = (errors: string[]) =>
    errors.filter((e) => !/^Failed to load resource: the server responded with a status of \d{3}/.test(e));
  const noSideScroll = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

  function chat(key: string, model: string, content: string, stream = false): Promise<Response> {
    return fetch(`${e2e.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model, stream, messages: [{ role: "user", content }] }),
    });
  }

  async function keyInfo(id: string): Promise<{ fallback_models: string[] | null; max_upstream_share: number | null }> {
    return (await (
      await fetch(`${e2e.url}/admin/keys/${id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as never;
  }

  async function usageToday(id: string): Promise<{ cost_cny: number; requests: number }> {
    const res = await fetch(`${e2e.url}/admin/usage?key_id=${id}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const body = (await res.json()) as { by_day: { day: string; cost_cny: number; requests: number }[] };
    return body.by_day.find((d) => d.day === new Date().toISOString().slice(0, 10)) ?? { cost_cny: 0, requests: 0 };
  }

  it("manages a key end to end: create, live load, spend and chart, requests, catalog, CSV, revoke", async () => {
    const { page, context, blocked, errors } = await open();
    const csp = (await page.request.get(`${e2e.url}/console/`)).headers()["content-security-policy"] ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect((await page.request.get(`${e2e.url}/vendor/uplot/uPlot.esm.js`)).status()).toBe(200);

    // A wrong token: the API's own message, and back to the sign-in form.
    await page.getByLabel("Admin token").fill("not-the-token");
    await page.getByRole("button", { name: "Open" }).click();
    await expect
      .poll(() => page.locator("#signin-error").textContent())
      .toContain("authentication failed: admin routes need the admin token");
    expect(await page.evaluate(() => window.sessionStorage.length)).toBe(0);
    await signIn(page);
    await shot(page, "console-01-keys-empty");

    // Create: the API's validation message for a bad value, then the key and webhook secret shown once.
    await page.getByRole("button", { name: "New key" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Name").fill("checkout");
    await dialog.getByLabel("Max concurrency").fill("0");
    await dialog.getByRole("button", { name: "Create key" }).click();
    await expect
      .poll(() => dialog.getByTestId("api-error").textContent())
      .toMatch(/400 · 121\d.*invalid field max_concurrency/s);
    await dialog.getByLabel("Max concurrency").fill("2");
    await dialog.getByLabel("Daily budget (CNY)").fill("0.5");
    await dialog.getByLabel("Fallback models").fill(PLUS);
    await dialog.getByLabel("Max upstream share").fill("0.5");
    await dialog.getByRole("button", { name: "Create key" }).click();
    const key = await page.getByTestId("new-key-value").inputValue();
    expect(key).toMatch(/^[0-9a-f]{32}\.[A-Za-z0-9_-]+$/);
    expect(await page.getByTestId("new-webhook-secret").inputValue()).toMatch(/^whsec_/);
    const id = key.split(".")[0]!;
    const row = page.getByTestId(`key-row-${id}`);
    await expect.poll(() => row.textContent()).toContain("checkout");
    expect(await row.textContent()).toContain("never");
    await shot(page, "console-02-key-created");
    await page.getByRole("button", { name: "Done" }).click();

    // Edit: fallback models and the upstream share are shown as set at creation, and saved as edited.
    await page.getByRole("button", { name: "Edit checkout" }).click();
    expect(await dialog.getByLabel("Fallback models").inputValue()).toBe(PLUS);
    expect(await dialog.getByLabel("Max upstream share").inputValue()).toBe("0.5");
    await dialog.getByLabel("Max upstream share").fill("1.5");
    await dialog.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => dialog.getByTestId("api-error").textContent()).toMatch(/400 · 1214.*max_upstream_share/s);
    await dialog.getByLabel("Max upstream share").fill("0.25");
    await dialog.getByLabel("Fallback models").fill(`${AIR}, ${PLUS}`);
    await dialog.getByRole("button", { name: "Save" }).click();
    await expect.poll(async () => (await keyInfo(id)).max_upstream_share).toBe(0.25);
    expect((await keyInfo(id)).fallback_models).toEqual([AIR, PLUS]);

    // Spend before any request: nothing today.
    await page.getByRole("tab", { name: "Spend" }).click();
    await expect.poll(() => page.getByTestId("spend-today-cost").textContent()).toBe("¥0");

    // Load: two long streams hold both of the key's slots; the live page shows it at its limit.
    await page.getByRole("tab", { name: "Live load" }).click();
    const held = await Promise.all([0, 1].map((i) => chat(key, AIR, `hold ${i} [[sim: tokens=60 delay=150]]`, true)));
    expect(held.map((r) => r.status)).toEqual([200, 200]);
    const card = page.getByTestId(`load-key-${id}`);
    await expect.poll(() => card.getAttribute("class"), { timeout: 8_000 }).toContain("at-limit");
    expect(await card.getByTestId("gauge").getAttribute("data-value")).toBe("2");
    expect(await card.getByTestId("gauge").getAttribute("aria-valuemax")).toBe("2");
    expect(await card.textContent()).toContain("at limit");
    // Polled: a snapshot may read the guards before the keys' objects, so the account can lag a refresh behind.
    await expect
      .poll(
        async () => Number(await page.getByTestId(`account-${AIR}`).getByTestId("gauge").getAttribute("data-value")),
        { timeout: 8_000 },
      )
      .toBeGreaterThanOrEqual(2);
    expect((await chat(key, AIR, "a third one")).status).toBe(429);
    await shot(page, "console-03-live-load-at-limit");
    await page.getByRole("tab", { name: "Keys" }).click();
    await expect.poll(() => row.getByTestId("key-in-flight").textContent()).toBe("2 · at limit");
    await Promise.all(held.map((r) => r.text()));
    await expect.poll(() => row.getByTestId("key-in-flight").textContent(), { timeout: 8_000 }).toBe("0");
    expect(await row.textContent()).toContain("just now");

    // Spend: a few paid requests; today's total and the chart follow without a reload.
    for (let i = 0; i < 3; i++)
      expect((await chat(key, PLUS, `spend ${i} [[sim: tokens=${40 + i * 10}]]`)).status).toBe(200);
    // Two streams and three plain requests reached upstream (the refused third stream did not).
    await expect.poll(async () => (await usageToday(id)).requests).toBe(5);
    const today = await usageToday(id);
    await page.getByRole("tab", { name: "Spend" }).click();
    const todayCost = page.getByTestId("spend-today-cost");
    await expect.poll(() => todayCost.textContent()).not.toBe("¥0");
    const shown = Number((await todayCost.textContent())!.replace("¥", ""));
    expect(Math.abs(shown - today.cost_cny) / today.cost_cny).toBeLessThan(0.01);
    expect(await page.getByTestId("spend-today-tokens").textContent()).not.toBe("0");
    const chart = page.getByTestId("chart-cost");
    await expect.poll(() => chart.getAttribute("data-today-x")).not.toBeNull();
    expect(Number(await chart.getAttribute("data-today"))).toBeCloseTo(today.cost_cny, 9);
    // The bar of today is really painted: the canvas pixel in its middle is one of the models' colours.
    const pixel = await chart.evaluate((fig) => {
      const canvas = fig.querySelector("canvas")!;
      const x = Number((fig as HTMLElement).dataset["todayX"]);
      const y = Number((fig as HTMLElement).dataset["todayY"]);
      return [...canvas.getContext("2d")!.getImageData(x, y, 1, 1).data];
    });
    expect(pixel[3]).toBe(255);
    expect(await chart.locator(".u-legend").textContent()).toContain(PLUS);
    const budget = page.getByTestId(`budget-${id}`);
    expect(await budget.textContent()).toContain("of ¥0.5");
    await shot(page, "console-04-spend", true);

    // One key's spend; the CSV export of what is shown.
    await page.getByLabel("Keys shown").selectOption(id);
    await expect.poll(() => page.getByTestId("spend-today-cost").textContent()).toBe(await todayCost.textContent());
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download CSV" }).click(),
    ]);
    expect(download.suggestedFilename()).toMatch(/^glm-edge-usage-.*\.csv$/);
    const csv = readFileSync((await download.path())!, "utf8")
      .trim()
      .split("\r\n");
    expect(csv[0]).toBe(
      "day,key_id,key_name,model,requests,prompt_tokens,completion_tokens,cached_tokens,cost_cny,estimated,errors,incomplete",
    );
    expect(csv.slice(1).map((l) => l.split(",").slice(1, 5))).toEqual([
      [id, "checkout", AIR, "2"],
      [id, "checkout", PLUS, "3"],
    ]);

    // Recent requests of the key.
    await page.getByRole("tab", { name: "Requests" }).click();
    await page.getByLabel("Requests of key").selectOption(id);
    await expect.poll(() => page.getByTestId("request-row").count()).toBe(5);
    const first = (await page.getByTestId("request-row").first().textContent()) ?? "";
    expect(first).toContain(PLUS);
    expect(first).toContain("completed");
    await shot(page, "console-05-requests");

    // Catalog: the API's validation message for a bad price, then a good one.
    await page.getByRole("tab", { name: "Catalog" }).click();
    await page.getByRole("button", { name: "Edit glm-4-airx" }).click();
    await dialog.getByLabel("Input price (CNY per 1M tokens)", { exact: true }).fill("-1");
    await dialog.getByRole("button", { name: "Save" }).click();
    await expect
      .poll(() => dialog.getByTestId("api-error").textContent())
      .toMatch(/400 · 121\d.*invalid field pricing\.input/s);
    await dialog.getByLabel("Input price (CNY per 1M tokens)", { exact: true }).fill("12");
    await dialog.getByLabel("V3 limit (in flight)").fill("77");
    await dialog.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => page.getByTestId("model-row-glm-4-airx").textContent()).toContain("¥12 / 1M");
    expect(await page.getByTestId("model-row-glm-4-airx").textContent()).toContain("/ 77");
    const catalog = (await (await fetch(`${e2e.url}/v1/models/glm-4-airx`)).json()) as {
      pricing: { input: number };
      concurrency: { V3: number };
    };
    expect(catalog).toMatchObject({ pricing: { input: 12 }, concurrency: { V3: 77 } });
    await shot(page, "console-06-catalog");

    // Keyboard: arrows move between pages.
    await page.getByRole("tab", { name: "Catalog" }).focus();
    await page.keyboard.press("Home");
    await expect.poll(() => page.getByRole("tab", { name: "Keys" }).getAttribute("aria-selected")).toBe("true");
    await page.keyboard.press("ArrowRight");
    await expect.poll(() => page.getByRole("tab", { name: "Live load" }).getAttribute("aria-selected")).toBe("true");
    await page.keyboard.press("ArrowLeft");

    // Revoke after a confirmation; the key is refused on its next request.
    await page.getByRole("button", { name: "Revoke checkout" }).click();
    expect(await dialog.textContent()).toContain("cannot be used again");
    await dialog.getByRole("button", { name: "Revoke key" }).click();
    await expect.poll(() => row.getByText(/^revoked/).count()).toBe(1);
    const refused = await chat(key, AIR, "after revoke");
    expect(refused.status).toBe(401);
    expect(await refused.text()).toContain("revoked");
    await shot(page, "console-07-revoked");

    await expectTokenKeptSecret(page);
    expect(blocked).toEqual([]);
    expect(unexpected(errors)).toEqual([]);
    await context.close();
  });

  it("fits a phone in the dark theme, and signing out forgets the token", async () => {
    const k = await e2e.createKey({ name: "phone-key", daily_token_limit: 100_000 });
    expect((await chat(k.key, PLUS, "spend [[sim: tokens=30]]")).status).toBe(200);
    const { page, context, errors } = await open(PHONE);
    await signIn(page);
    await expect.poll(() => page.getByTestId(`key-row-${k.id}`).count()).toBe(1);
    expect(await noSideScroll(page)).toBe(true);
    await shot(page, "console-phone-01-keys", true);
    await page.getByRole("tab", { name: "Spend" }).click();
    await expect.poll(() => page.getByTestId("chart-cost").getAttribute("data-today-x")).not.toBeNull();
    expect(await noSideScroll(page)).toBe(true);
    await shot(page, "console-phone-02-spend", true);
    await page.getByRole("tab", { name: "Live load" }).click();
    await page.getByTestId(`load-key-${k.id}`).waitFor();
    expect(await noSideScroll(page)).toBe(true);
    await shot(page, "console-phone-03-load", true);
    await page.getByRole("tab", { name: "Catalog" }).click();
    await page.getByTestId("model-row-glm-4-plus").waitFor();
    expect(await noSideScroll(page)).toBe(true);
    await page.getByRole("tab", { name: "Keys" }).click();
    await page.getByRole("button", { name: "Edit phone-key" }).click();
    expect(await noSideScroll(page)).toBe(true);
    await shot(page, "console-phone-04-edit");
    await page.getByRole("dialog").getByLabel("Tier").selectOption("V2");
    await page.getByRole("dialog").getByRole("button", { name: "Save" }).click();
    await expect.poll(() => page.getByTestId(`key-row-${k.id}`).textContent()).toContain("V2");

    await expectTokenKeptSecret(page);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Admin token").waitFor();
    expect(await page.evaluate(() => window.sessionStorage.length)).toBe(0);
    expect(unexpected(errors)).toEqual([]);
    await context.close();
  });
});
