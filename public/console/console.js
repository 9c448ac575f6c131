// The operator console: the admin token (kept in this tab's sessionStorage only, sent only as
// Authorization: Bearer to this origin's /admin API), five pages, and the refresh loop that keeps the
// live numbers current while the page is visible.
/* global sessionStorage, setInterval */
import { request } from "../lib/api.js";
import { h, initTabs, initTheme } from "../lib/dom.js";
import { createCatalogPage } from "./catalog.js";
import { createKeysPage, keyGauges, keyLoad } from "./keys.js";
import { renderRequests } from "./requests.js";
import { renderBudgets, renderSpend, spendRange } from "./spend.js";
import { clearError, gauge, showError } from "./ui.js";

const TOKEN_KEY = "glm-edge:admin-token";
const LOAD_EVERY_MS = 3_000;
const SPEND_EVERY_MS = 10_000;
const PAGES = ["keys", "load", "spend", "requests", "catalog"];
/** Pages that show the /admin/load snapshot (and so refresh it every few seconds). */
const LIVE = new Set(["keys", "load", "spend"]);

const $ = (id) => document.getElementById(id);
const state = { page: "keys", load: null, spend: null, spendAt: 0, busy: false };

function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

/** A call to /admin/*: parsed JSON, or the response itself for other content (the CSV export). */
async function api(path, options = {}) {
  try {
    const res = await request(`/admin${path}`, { ...options, credential: token() });
    return (res.headers.get("content-type") ?? "").includes("application/json") ? res.json() : res;
  } catch (err) {
    if (err.name === "ApiError" && err.status === 401) signOut(err.message);
    throw err;
  }
}

const errorSlot = (page = state.page) => $(`${page}-error`);
const showPageError = (err) => showError(errorSlot(), err);

// ---------------------------------------------------------------- sign in and out

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  state.load = null;
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("admin-token").focus();
}

async function signIn() {
  $("signin").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  await selectPage(state.page);
}

function initSignIn() {
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("admin-token").value.trim();
    $("admin-token").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("signin-error").textContent = "";
    // A wrong token comes back as 401 and signs out again, with the API's message.
    void signIn();
  });
  $("sign-out").addEventListener("click", () => signOut());
}

// ---------------------------------------------------------------- pages

const keysPage = createKeysPage({
  api,
  root: $("keys-list"),
  secretSlot: $("key-secret"),
  refresh: () => refreshLoad(),
  showError: showPageError,
});
const catalogPage = createCatalogPage({
  api,
  root: $("catalog-list"),
  versionNote: $("catalog-version"),
  showError: showPageError,
});

function renderLoad(load) {
  $("account-tier").textContent = `· tier ${load.account.tier}`;
  $("load-account").replaceChildren(
    ...load.account.models.map((m) =>
      h(
        "div",
        { class: "gauge-row", "data-testid": `account-${m.model}` },
        h("span", { class: "gauge-label mono" }, m.model),
        gauge(m.in_flight, m.limit, `Upstream account: ${m.model} in flight`),
      ),
    ),
  );
  const keys = load.keys
    .filter((k) => !k.revoked_at)
    .map((k) => ({ k, ...keyLoad(k) }))
    .sort(
      (a, b) => Number(b.atLimit) - Number(a.atLimit) || b.inFlight - a.inFlight || a.k.name.localeCompare(b.k.name),
    );
  $("load-keys").replaceChildren(
    ...(keys.length === 0
      ? [h("p", { class: "empty-note" }, "No active keys.")]
      : keys.map(({ k, inFlight, atLimit }) =>
          h(
            "article",
            {
              class: `card load-key${atLimit ? " at-limit" : ""}`,
              "data-testid": `load-key-${k.id}`,
              dataset: { inFlight: String(inFlight) },
              "aria-label": `${k.name}: ${inFlight} in flight${atLimit ? ", at its limit" : ""}`,
            },
            h(
              "header",
              {},
              h("b", {}, k.name),
              h("span", { class: "muted" }, k.tier),
              atLimit ? h("span", { class: "badge warn" }, "at limit") : null,
              h("span", { class: "load-total" }, `${inFlight} in flight`),
            ),
            ...keyGauges(k),
          ),
        )),
  );
  $("load-updated").textContent =
    `Updated ${new Date(load.at).toLocaleTimeString()} · every ${LOAD_EVERY_MS / 1000} s while visible`;
}

/** Keeps the key pickers of the spend and requests pages in step with the key list. */
function fillKeySelects(keys) {
  for (const [id, first] of [
    ["spend-scope", "All keys"],
    ["requests-key", null],
  ]) {
    const select = $(id);
    const current = select.value;
    const opts = keys.map((k) => h("option", { value: k.id }, k.revoked_at ? `${k.name} (revoked)` : k.name));
    select.replaceChildren(...(first ? [h("option", { value: "" }, first)] : []), ...opts);
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }
}

function scopedKeys(load) {
  const scope = $("spend-scope").value;
  return scope ? load.keys.filter((k) => k.id === scope) : load.keys;
}

/**
 * Runs one of the page refreshes: its failure is shown on the current page as the API's message, tagged
 * with `source` so that its next success clears it (and leaves other errors alone). Never throws.
 */
async function refreshing(source, pages, fn) {
  try {
    await fn();
    for (const page of pages) clearError(errorSlot(page), source);
  } catch (err) {
    if (token()) showError(errorSlot(), err, source);
  }
}

const refreshLoad = () =>
  refreshing("load", LIVE, async () => {
    const load = await api("/load");
    state.load = load;
    fillKeySelects(load.keys);
    keysPage.render(load);
    renderLoad(load);
    renderBudgets($("budgets"), scopedKeys(load));
  });

function drawSpend() {
  if (!state.spend) return;
  renderSpend({
    ...state.spend,
    totalsRoot: $("spend-totals"),
    costFigure: $("chart-cost"),
    tokensFigure: $("chart-tokens"),
  });
}

const refreshSpend = () =>
  refreshing("usage", ["spend"], async () => {
    const range = spendRange();
    const scope = $("spend-scope").value;
    state.spendAt = Date.now();
    state.spend = {
      report: await api(`/usage?from=${range.from}&to=${range.to}${scope ? `&key_id=${scope}` : ""}`),
      range,
    };
    drawSpend();
  });

const refreshRequests = () =>
  refreshing("requests", ["requests"], async () => {
    const id = $("requests-key").value;
    if (!id) $("requests-list").replaceChildren(h("p", { class: "empty-note" }, "No keys yet."));
    else renderRequests($("requests-list"), (await api(`/keys/${id}/requests?limit=100`)).data);
  });

async function downloadCsv() {
  const range = spendRange();
  const scope = $("spend-scope").value;
  const res = await api(`/usage?format=csv&from=${range.from}&to=${range.to}${scope ? `&key_id=${scope}` : ""}`);
  const url = URL.createObjectURL(await res.blob());
  const name = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") ?? "")?.[1] ?? "glm-edge-usage.csv";
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** What a page needs when it is shown (force) or on a tick of the refresh loop. */
async function refreshPage(page, { force = false } = {}) {
  if (LIVE.has(page) || (page === "requests" && !state.load)) await refreshLoad();
  if (page === "spend" && (force || Date.now() - state.spendAt >= SPEND_EVERY_MS)) await refreshSpend();
  if (page === "requests") await refreshRequests();
  if (page === "catalog") await refreshing("catalog", ["catalog"], () => catalogPage.load());
}

function selectPage(page) {
  state.page = page;
  return refreshPage(page, { force: true });
}

/** The refresh loop: only while signed in, the tab is visible and the page shows live numbers. */
async function tick() {
  if (state.busy || !token() || document.hidden || $("app").hidden || !LIVE.has(state.page)) return;
  state.busy = true;
  await refreshPage(state.page).finally(() => (state.busy = false));
}

function initPages() {
  const select = initTabs(PAGES, (page) => void selectPage(page));
  $("key-new").addEventListener("click", () => void keysPage.create());
  $("spend-scope").addEventListener("change", () => {
    if (state.load) renderBudgets($("budgets"), scopedKeys(state.load));
    void refreshSpend();
  });
  $("spend-csv").addEventListener("click", () => downloadCsv().catch(showPageError));
  $("requests-key").addEventListener("change", () => void refreshRequests());
  $("requests-refresh").addEventListener("click", () => void refreshRequests());
  setInterval(() => void tick(), LOAD_EVERY_MS);
  document.addEventListener("visibilitychange", () => void tick());
  return select;
}

initTheme($("theme-toggle"), () => drawSpend());
initSignIn();
initPages();
if (token()) void signIn();
else signOut();
