// The playground, the API reference and the README's browser example in a real browser (Debian's Chromium
// through playwright-core) against `wrangler dev` with the GLM simulator upstream. Each state the page
// goes through is kept as a screenshot in artifacts/screenshots/.
import type { Browser, BrowserContextOptions, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { browserAvailability, launchBrowser, loopbackContext, openPage, pageErrors, shot } from "./browser.ts";
import { startFrontendApp } from "./frontend-example.ts";
import { ADMIN_TOKEN, startE2E, type E2E } from "../test-support/harness.ts";

const availability = browserAvailability();
if (!availability.run) console.warn(availability.reason);

const FLASH = "glm-4-flash-250414";
const AIR = "glm-4-air-250414";
/** 8K context: a text of a few tens of thousands of characters is summarized in several pieces. */
const SMALL_CONTEXT = "glm-4-airx";

interface Models {
  data: {
    id: string;
    context_window: number;
    max_output_tokens: number;
    pricing: { input: number; output: number; cached_input: number | null };
    concurrency: Record<string, number>;
  }[];
}

describe.skipIf(!availability.run)("the playground and docs in Chromium", () => {
  let e2e: E2E;
  let browser: Browser;
  let key: string;
  let models: Models;

  beforeAll(async () => {
    e2e = await startE2E();
    browser = await launchBrowser();
    key = (await e2e.createKey({ name: "browser" })).key;
    models = (await (await fetch(`${e2e.url}/v1/models`)).json()) as Models;
  });

  afterAll(async () => {
    await browser?.close();
    await e2e?.close();
  });

  /** A fresh page on the playground, cut off from everything but loopback. */
  async function open(options: BrowserContextOptions = {}) {
    const opened = await openPage(browser, `${e2e.url}/`, {
      name: "failed",
      textOf: "main",
      gatewayOutput: () => e2e.gateway.output(),
      options,
    });
    await opened.page.locator("#model:not([disabled])").waitFor();
    return opened;
  }

  /** Console errors other than the browser's own line for each HTTP error response the page handled. */
  const unexpected = (errors: string[]) =>
    errors.filter((e) => !/^Failed to load resource: the server responded with a status of \d{3}/.test(e));

  async function send(page: Page, text: string) {
    await page.locator("#composer-input").fill(text);
    await page.locator("#composer-input").press("Enter");
  }

  const lastAnswer = (page: Page) => page.getByTestId("answer").last();

  it("loads the page, and shows the chosen model's context, prices and limits", async () => {
    const { page, context, blocked, errors } = await open();
    // Static assets with their security headers; the headers file itself is configuration, not content.
    const csp = (await page.request.get(`${e2e.url}/`)).headers()["content-security-policy"] ?? "";
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect((await page.request.get(`${e2e.url}/_headers`)).status()).toBe(404);
    expect((await page.request.get(`${e2e.url}/vendor/scalar/standalone.js`)).status()).toBe(200);
    await shot(page, "01-loaded");

    await page.getByLabel("API key or browser token").fill(key);
    await expect.poll(() => page.getByTestId("credential-status").textContent()).toContain("Gateway key");
    await page.getByLabel("Model").selectOption(AIR);
    const air = models.data.find((m) => m.id === AIR)!;
    const card = page.getByTestId("model-card");
    await expect.poll(() => card.getByTestId("model-context").textContent()).toContain("128K tokens");
    expect(await card.getByTestId("model-max-output").textContent()).toContain("16K tokens");
    expect(await card.getByTestId("model-price-input").textContent()).toContain(`¥${air.pricing.input} / 1M`);
    expect(await card.getByTestId("model-price-output").textContent()).toContain(`¥${air.pricing.output} / 1M`);
    expect(await card.getByTestId("model-price-cached").textContent()).toContain(`¥${air.pricing.cached_input} / 1M`);
    const limits = (await card.getByTestId("model-limits").textContent()) ?? "";
    for (const [tier, n] of Object.entries(air.concurrency))
      expect(limits).toContain(`${tier} ${n.toLocaleString("en-US")}`);
    await shot(page, "02-model-picked");
    expect(blocked).toEqual([]);
    expect(unexpected(errors)).toEqual([]);
    await context.close();
  });

  it("streams a chat answer token by token, then shows its tokens, cost and request id", async () => {
    const { page, context, errors } = await open();
    await page.getByLabel("API key or browser token").fill(key);
    await page.getByLabel("Model").selectOption(AIR);
    await send(page, "Tell me about the edge. [[sim: tokens=30 delay=60]]");

    // Sample the answer's length each time it changes until the answer is complete.
    const text = lastAnswer(page).getByTestId("answer-text");
    const done = page.locator('[data-testid="answer-meta"][data-done="true"]');
    const lengths: number[] = [];
    for (;;) {
      const length = ((await text.textContent()) ?? "").length;
      if (length !== lengths.at(-1)) lengths.push(length);
      if (lengths.length === 4) await shot(page, "03-chat-streaming");
      if ((await done.count()) > 0) break;
      expect(await page.getByTestId("error").count(), "an error instead of the answer").toBe(0);
      await page.waitForFunction(
        ([prev]) => {
          const answers = document.querySelectorAll('[data-testid="answer-text"]');
          const current = answers[answers.length - 1]?.textContent?.length ?? 0;
          return (
            current !== prev ||
            document.querySelector('[data-testid="answer-meta"][data-done="true"], [data-testid="error"]') !== null
          );
        },
        [length],
      );
    }
    const final = ((await text.textContent()) ?? "").length;
    if (final !== lengths.at(-1)) lengths.push(final);
    // It grew in many steps, never shrinking: the page rendered the stream as it came.
    expect(lengths.filter((n) => n > 0 && n < final).length).toBeGreaterThanOrEqual(5);
    expect([...lengths].sort((a, b) => a - b)).toEqual(lengths);

    const meta = lastAnswer(page).getByTestId("answer-meta");
    expect(await meta.getByTestId("usage").textContent()).toMatch(/\d+ in · 30 out tokens/);
    const requestId = (await meta.getByTestId("request-id").textContent()) ?? "";
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    // The cost shown is the one the gateway recorded for that request (catalog price × GLM's usage).
    const shown = Number(/¥([\d.]+)/.exec((await meta.getByTestId("cost").textContent()) ?? "")?.[1]);
    const recorded = await recordedCost(requestId);
    expect(recorded).toBeGreaterThan(0);
    expect(Math.abs(shown - recorded)).toBeLessThanOrEqual(recorded * 0.01);
    await shot(page, "04-chat-done");
    expect(unexpected(errors)).toEqual([]);
    await context.close();
  });

  it("reads a stream framed with CRLF and bare CR line ends, comments and multi-line data (as proxies may re-frame it)", async () => {
    const { page, context, errors } = await open();
    await page.getByLabel("API key or browser token").fill(key);
    await page.getByLabel("Model").selectOption(AIR);
    const chunk = (delta: object) =>
      JSON.stringify({ id: "c", object: "chat.completion.chunk", model: AIR, choices: [{ index: 0, ...delta }] });
    const body = [
      `: keep-alive\r\n\r\n`,
      `data: ${chunk({ delta: { role: "assistant", content: "Hello" } })}\r\n\r\n`,
      // One JSON text over two data lines: the parser joins them with a newline, which JSON allows.
      `data: {"choices":\r\ndata: [{"index":0,"delta":{"content":", CRLF"}}]}\r\n\r\n`,
      `data: ${chunk({ delta: { content: " world" } })}\r\r`,
      `data: ${chunk({ delta: {}, finish_reason: "stop" })}\r\n\r\n`,
      `data: ${JSON.stringify({ id: "c", choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } })}\r\n\r\n`,
      `data: [DONE]\r\n\r\n`,
    ].join("");
    await page.route("**/v1/chat/completions", (route) =>
      route.fulfill({
        status: 200,
        headers: { "content-type": "text/event-stream", "x-request-id": "crlf-framed" },
        body,
      }),
    );
    await send(page, "Frame it with CRLF");
    await page.locator('[data-testid="answer-meta"][data-done="true"]').waitFor();
    expect(await lastAnswer(page).getByTestId("answer-text").textContent()).toBe("Hello, CRLF world");
    expect(await lastAnswer(page).getByTestId("usage").textContent()).toMatch(/3 in · 4 out tokens/);
    expect(await page.getByTestId("error").count()).toBe(0);
    expect(unexpected(errors)).toEqual([]);
    await context.close();
  });

  /** The cost the gateway recorded for one request, from the admin API (polled: usage is written after the stream). */
  async function recordedCost(requestId: string): Promise<number> {
    const keys = (await (
      await fetch(`${e2e.url}/admin/keys`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as { data: { id: string }[] };
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      for (const k of keys.data) {
        const rows = (await (
          await fetch(`${e2e.url}/admin/keys/${k.id}/requests`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
        ).json()) as { data: { request_id: string; cost_cny: number }[] };
        const row = rows.data.find((r) => r.request_id === requestId);
        if (row) return row.cost_cny;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no usage record for request ${requestId}`);
  }

  it("summarizes a dropped text, showing progress and then the streamed summary", async () => {
    const { page, context, errors } = await open();
    await page.getByLabel("API key or browser token").fill(key);
    await page.getByLabel("Model").selectOption(SMALL_CONTEXT);
    await page.getByRole("tab", { name: "Summarize" }).click();

    // Drop a file of about 60,000 characters: several pieces for an 8K-token model. The simulator marker
    // in the text slows each piece's first token, so the map stage is on screen long enough to be seen.
    const paragraph = (i: number) =>
      `Paragraph ${i}. The gateway keeps the upstream key, counts tokens and streams answers to browsers at the edge. `.repeat(
        6,
      ) + "[[sim: ttft=400]]";
    const text = Array.from({ length: 100 }, (_, i) => paragraph(i + 1)).join("\n\n");
    await page.evaluate((content) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([content], "report.txt", { type: "text/plain" }));
      document
        .getElementById("dropzone")!
        .dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, text);
    await expect.poll(() => page.locator("#sum-text").inputValue()).toBe(text);
    expect(await page.locator("#sum-count").textContent()).toContain("report.txt");

    // Record every progress state the page shows.
    await page.evaluate(() => {
      const box = document.getElementById("sum-progress")!;
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      new MutationObserver(() =>
        seen.push(`${box.dataset["stage"]} ${box.dataset["done"]}/${box.dataset["total"]}`),
      ).observe(box, { attributes: true });
    });
    await page.getByRole("button", { name: "Summarize", exact: true }).click();
    await page.getByTestId("sum-progress").waitFor();
    await page.waitForFunction(() => (window as unknown as { seen: string[] }).seen.some((s) => s.startsWith("map ")));
    await shot(page, "05-summarize-progress");
    await page
      .locator('[data-testid="summary-meta"][data-done="true"], #sum-output [data-testid="error"]')
      .first()
      .waitFor({ timeout: 45_000 });
    expect(
      await page.locator("#sum-output [data-testid=error]").count(),
      (await page.locator("#sum-output").textContent()) ?? "",
    ).toBe(0);
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    const maps = seen.filter((s) => s.startsWith("map "));
    expect(maps.length).toBeGreaterThan(0);
    expect(Number(maps.at(-1)!.split("/")[1])).toBeGreaterThanOrEqual(2);
    expect(seen.at(-1)).toBe("done 1/1");
    // The simulator answers a summary request with digests: the streamed summary is there, complete.
    const summary = (await page.getByTestId("summary-text").textContent()) ?? "";
    expect(summary).toMatch(/⟦digest [0-9a-f]{8} len=\d+⟧/);
    const meta = page.getByTestId("summary-meta");
    expect(await meta.textContent()).toMatch(/\d+ parts/);
    expect(await meta.getByTestId("usage").textContent()).toMatch(/\d+ in · \d+ out tokens/);
    expect(await meta.getByTestId("cost").textContent()).toMatch(/^cost ¥0\.\d+$/);
    expect(await meta.getByTestId("request-id").textContent()).toMatch(/^[0-9a-f-]{36}$/);
    await shot(page, "06-summarize-done", true);
    expect(unexpected(errors)).toEqual([]);
    await context.close();
  });

  it("explains a 429 from a key with max_concurrency 1, and recovers on retry", async () => {
    const low = await e2e.createKey({ name: "low", max_concurrency: 1 });
    const { page, context } = await open();
    await page.getByLabel("API key or browser token").fill(low.key);
    // Hold the key's only slot with a slow stream from elsewhere.
    const ac = new AbortController();
    const held = await fetch(`${e2e.url}/v1/chat/completions`, {
      method: "POST",
      signal: ac.signal,
      headers: { authorization: `Bearer ${low.key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: FLASH,
        stream: true,
        messages: [{ role: "user", content: "hold [[sim: tokens=400 delay=50]]" }],
      }),
    });
    const reader = held.body!.getReader();
    await reader.read();
    try {
      await send(page, "Am I too early? [[sim: tokens=5]]");
      const card = page.getByTestId("error");
      await card.waitFor();
      expect(await card.getAttribute("data-status")).toBe("429");
      expect(await card.getAttribute("data-code")).toBe("1302");
      const explanation = (await card.getByTestId("error-explanation").allTextContents()).join(" ");
      expect(explanation).toContain("429 means a limit");
      expect(explanation).toContain("was not started");
      expect(explanation).toContain("1 request in flight at once");
      expect(explanation).toMatch(/retry after 1 s \(Retry-After\)/);
      expect(await card.textContent()).toContain("retry-after: 1");
      expect(await card.getByTestId("error-message").textContent()).toContain("too many requests in flight");
      await shot(page, "07-limit-429");
    } finally {
      ac.abort();
      await reader.cancel().catch(() => undefined);
    }
    // The slot frees once the gateway has seen the held stream go; then the countdown's retry goes through.
    await expect
      .poll(
        async () => {
          const info = (await (
            await fetch(`${e2e.url}/admin/keys/${low.id}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
          ).json()) as { in_flight: Record<string, number> };
          return Object.values(info.in_flight).reduce((a, b) => a + b, 0);
        },
        { timeout: 15_000 },
      )
      .toBe(0);
    await page.locator('[data-testid="retry"]:not([disabled])').click();
    await page.locator('[data-testid="answer-meta"][data-done="true"]').waitFor();
    expect(await page.getByTestId("error").count()).toBe(0);
    expect(await page.getByTestId("question").count()).toBe(1);
    await context.close();
  });

  it("shows an API error exactly as the API sent it", async () => {
    const { page, context } = await open();
    await page.getByLabel("API key or browser token").fill(key);
    await page.getByLabel("Model").selectOption(FLASH);
    await page.locator("#params summary").click();
    await page.getByLabel("Max tokens").fill("999999");
    await send(page, "Write a book.");
    const card = page.getByTestId("error");
    await card.waitFor();
    const direct = await fetch(`${e2e.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: FLASH,
        stream: true,
        max_tokens: 999999,
        messages: [{ role: "user", content: "Write a book." }],
      }),
    });
    const { error } = (await direct.json()) as { error: { code: string; message: string } };
    expect(await card.getByTestId("error-message").textContent()).toBe(error.message);
    expect(await card.getAttribute("data-status")).toBe(String(direct.status));
    expect(await card.getAttribute("data-code")).toBe(error.code);
    expect(await card.textContent()).toContain(`HTTP 400 · code ${error.code}`);
    await shot(page, "08-api-error");
    await context.close();
  });

  it("works with a browser token from a back end, and shows the token's refusals", async () => {
    const minted = await fetch(`${e2e.url}/v1/tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ ttl_seconds: 600, models: [FLASH], origin: e2e.url }),
    });
    const { token } = (await minted.json()) as { token: string };
    const { page, context } = await open();
    await page.getByLabel("API key or browser token").fill(token);
    const status = page.getByTestId("credential-status");
    await expect.poll(() => status.textContent()).toContain("Browser token · expires in 10 min");
    expect(await status.textContent()).toContain(`models: ${FLASH}`);
    expect(await status.textContent()).toContain("bound to this origin");
    expect(await page.locator(`#model option[value="${AIR}"]`).textContent()).toContain("not allowed by this token");
    await page.getByLabel("Model").selectOption(FLASH);
    await send(page, "Hello from a token [[sim: tokens=8]]");
    await page.locator('[data-testid="answer-meta"][data-done="true"]').waitFor();
    await shot(page, "09-token-chat");

    // A model outside the token's list: the gateway's 403, verbatim.
    await page.getByLabel("Model").selectOption(AIR);
    await send(page, "And now another model [[sim: tokens=2]]");
    const card = page.getByTestId("error");
    await card.waitFor();
    expect(await card.getAttribute("data-status")).toBe("403");
    expect(await card.getByTestId("error-message").textContent()).toBe(`this token may not use model ${AIR}`);
    await shot(page, "10-token-refused");
    await context.close();
  });

  it("fits a phone (390×844, dark): every control reachable, nothing wider than the screen", async () => {
    const { page, context, errors } = await open({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      colorScheme: "dark",
    });
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = (background.match(/\d+/g) ?? []).map(Number);
    expect(r! + g! + b!).toBeLessThan(120);
    await shot(page, "11-phone-settings");
    const noSideScroll = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    expect(await noSideScroll()).toBe(true);
    for (const selector of ["#credential", "#model", "#composer-input", "#send", "#tab-summarize", "#theme-toggle"]) {
      const box = await page.locator(selector).boundingBox();
      expect(box, selector).not.toBeNull();
      expect(box!.x, selector).toBeGreaterThanOrEqual(0);
      expect(box!.x + box!.width, selector).toBeLessThanOrEqual(390);
      expect(box!.height, `${selector} is big enough to tap`).toBeGreaterThanOrEqual(32);
    }
    await page.locator("#credential").tap();
    await page.locator("#credential").fill(key);
    await page.locator("#composer-input").tap();
    await page.locator("#composer-input").fill("Hi from a phone [[sim: tokens=25]]");
    await page.locator("#send").tap();
    await page.locator('[data-testid="answer-meta"][data-done="true"]').waitFor();
    // Sending folds the settings away so the conversation has the screen.
    expect(await page.locator("#settings").getAttribute("open")).toBeNull();
    expect(await page.locator("#settings-summary").textContent()).toContain(FLASH);
    expect(await noSideScroll()).toBe(true);
    expect(await page.locator("#composer-input").isVisible()).toBe(true);
    await shot(page, "12-phone-chat");
    await page.locator("#tab-summarize").tap();
    expect(await page.locator("#sum-go").isVisible()).toBe(true);
    expect(await noSideScroll()).toBe(true);
    await shot(page, "13-phone-summarize");
    expect(unexpected(errors)).toEqual([]);
    await context.close();
  });

  it("renders the API reference from /openapi.json with no network beyond the gateway", async () => {
    const { context, blocked } = await loopbackContext(browser);
    const page = await context.newPage();
    const errors = pageErrors(page);
    expect((await page.goto(`${e2e.url}/docs`))?.status()).toBe(200);
    await page.getByRole("heading", { name: "glm-edge" }).first().waitFor({ timeout: 30_000 });
    await shot(page, "14-docs");
    // Open the tokens section from the sidebar: the operation, its schema and a fetch example for this server.
    await page.getByText("tokens", { exact: true }).first().click();
    await page.getByRole("heading", { name: "Mint a short-lived browser token" }).first().waitFor();
    expect(await page.getByText("ttl_seconds", { exact: true }).count()).toBeGreaterThan(0);
    await page.getByText(`${e2e.url}/v1/tokens`).first().waitFor();
    await shot(page, "15-docs-tokens");
    expect(blocked).toEqual([]);
    expect(errors.filter((e) => /Content Security Policy|Refused to/.test(e))).toEqual([]);
    await context.close();
  });

  it("the README's example page streams a chat from another origin with a token its back end minted", async () => {
    const app = await startFrontendApp(e2e.url, key);
    try {
      const { context, blocked } = await loopbackContext(browser);
      const page = await context.newPage();
      await page.goto(app.url);
      await page.locator("#q").fill("Stream to my page [[sim: tokens=20 delay=40]]");
      await page.getByRole("button", { name: "Ask" }).click();
      const lengths = new Set<number>();
      while (((await page.locator("#status").textContent()) ?? "") === "…" || lengths.size === 0) {
        lengths.add(((await page.locator("#answer").textContent()) ?? "").length);
        await page.waitForFunction(
          ([prev]) =>
            (document.getElementById("answer")?.textContent?.length ?? 0) !== prev ||
            document.getElementById("status")?.textContent !== "…",
          [[...lengths].at(-1)],
        );
      }
      expect(await page.locator("#status").textContent()).toBe("done: 20 tokens");
      expect(lengths.size).toBeGreaterThanOrEqual(3);
      expect(app.lastMint()).toMatchObject({ origin: app.url, models: [FLASH] });
      expect(blocked).toEqual([]);
      await shot(page, "16-readme-example");
    } finally {
      await app.close();
    }
  });

  it("the openai SDK streams a chat from another origin's page: the preflight allows its x-stainless-* headers", async () => {
    const app = await startFrontendApp(e2e.url, key);
    try {
      // No request routing here: with routing on, Playwright answers CORS preflights itself (allowing every
      // header), which would hide the gateway's answer. The page loads only from loopback anyway.
      const context = await browser.newContext();
      const page = await context.newPage();
      const errors = pageErrors(page);
      const preflights: string[] = [];
      page.on("request", (r) => {
        if (r.url().endsWith("/v1/chat/completions"))
          preflights.push(
            Object.keys(r.headers())
              .filter((h) => h.startsWith("x-stainless"))
              .join(","),
          );
      });
      await page.goto(`${app.url}/sdk.html?q=${encodeURIComponent("Hello from the SDK [[sim: tokens=12 delay=20]]")}`);
      await page.waitForFunction(() => document.getElementById("status")?.textContent !== "…", undefined, {
        timeout: 20_000,
      });
      expect(await page.locator("#status").textContent(), JSON.stringify(errors)).toBe("done");
      expect(((await page.locator("#answer").textContent()) ?? "").length).toBeGreaterThan(12);
      // The SDK did send its own headers, cross-origin.
      expect(preflights.some((h) => h.includes("x-stainless-lang"))).toBe(true);
      await context.close();
    } finally {
      await app.close();
    }
  });

  it("the README's example page shows the gateway's refusal of a token bound to another origin", async () => {
    const app = await startFrontendApp(e2e.url, key, () => ({ origin: "https://elsewhere.example.com" }));
    try {
      const { context } = await loopbackContext(browser);
      const page = await context.newPage();
      await page.goto(app.url);
      await page.getByRole("button", { name: "Ask" }).click();
      await page.waitForFunction(() => document.getElementById("status")?.textContent?.startsWith("error"));
      expect(await page.locator("#status").textContent()).toBe(
        `error: 403 1000: this token may only be used from https://elsewhere.example.com, not from ${app.url}`,
      );
    } finally {
      await app.close();
    }
  });
});
