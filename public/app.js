// The playground page: a key or browser token, a model from /v1/models, a streamed chat and a streamed
// summary, with each answer's tokens, cost and request id, and the API's errors shown verbatim with what
// they mean. Plain DOM code, no framework; model output is rendered by lib/markdown.js (DOM only).
/* global sessionStorage, requestAnimationFrame, setInterval, clearInterval, DOMException */
import { ApiError, getJson, peekJwt, postStream } from "./lib/api.js";
import { explain } from "./lib/explain.js";
import { copyButton, h, initTabs, initTheme } from "./lib/dom.js";
import { clockTime, cny, costOf, count, duration, price, tokensShort, until } from "./lib/format.js";
import { renderMarkdown } from "./lib/markdown.js";

const $ = (id) => document.getElementById(id);
const KEY_RE = /^[0-9a-f]{32}\.[A-Za-z0-9_-]{16,128}$/;
const STORE = { credential: "glm-edge:credential", model: "glm-edge:model" };
const DEFAULT_MODEL = "glm-4-flash-250414";
const narrow = window.matchMedia("(max-width: 860px)");

const state = {
  models: [],
  /** Completed turns sent back as context: {role, content}. */
  history: [],
  controller: null,
  /** The key's effective in-flight limit per model, learned from x-concurrency-limit. */
  seenLimit: new Map(),
  tokenModels: null,
};

// ---------------------------------------------------------------- credential

function credential() {
  return $("credential").value.trim();
}

function describeCredential() {
  const value = credential();
  const status = $("credential-status");
  status.className = "hint";
  state.tokenModels = null;
  if (!value) {
    status.textContent = "Paste a key to start. In your own pages use a browser token, never a key.";
  } else if (KEY_RE.test(value)) {
    status.textContent = `Gateway key …${value.slice(-4)}. Fine here; in your own web pages use a browser token minted by your back end.`;
    status.classList.add("good");
  } else {
    const payload = peekJwt(value);
    if (payload && typeof payload.glm_edge_token === "string") {
      const exp = typeof payload.exp === "number" ? new Date(payload.exp * 1000) : null;
      const parts = [];
      const expired = exp !== null && exp.getTime() <= Date.now();
      parts.push(
        exp
          ? expired
            ? `expired at ${clockTime(exp)}`
            : `expires in ${until(exp.getTime() - Date.now())} (${clockTime(exp)})`
          : "no expiry",
      );
      if (Array.isArray(payload.models)) {
        parts.push(`models: ${payload.models.join(", ")}`);
        state.tokenModels = payload.models;
      }
      if (typeof payload.origin === "string") {
        parts.push(
          payload.origin === window.location.origin
            ? `bound to this origin`
            : `bound to ${payload.origin}: this page will be refused (403)`,
        );
      }
      status.textContent = `Browser token · ${parts.join(" · ")}`;
      status.classList.add(
        expired || (typeof payload.origin === "string" && payload.origin !== window.location.origin) ? "bad" : "good",
      );
    } else if (payload && typeof payload.api_key === "string") {
      status.textContent = "GLM-style JWT signed with a gateway key.";
      status.classList.add("good");
    } else {
      status.textContent =
        "This does not look like a key (<id>.<secret>) or a token; the gateway will say why if it refuses it.";
      status.classList.add("bad");
    }
  }
  markAllowedModels();
  updateSettingsSummary();
}

function initCredential() {
  const input = $("credential");
  const remember = $("credential-remember");
  const saved = sessionStorage.getItem(STORE.credential);
  if (saved) {
    input.value = saved;
    remember.checked = true;
  }
  const persist = () => {
    if (remember.checked && credential()) sessionStorage.setItem(STORE.credential, credential());
    else sessionStorage.removeItem(STORE.credential);
  };
  input.addEventListener("input", () => {
    describeCredential();
    persist();
  });
  remember.addEventListener("change", persist);
  $("credential-show").addEventListener("click", (e) => {
    const shown = input.type === "text";
    input.type = shown ? "password" : "text";
    e.currentTarget.setAttribute("aria-pressed", String(!shown));
    e.currentTarget.setAttribute("aria-label", shown ? "Show the key" : "Hide the key");
  });
  describeCredential();
  // Keep a token's "expires in …" current while the page stays open.
  setInterval(() => {
    if (peekJwt(credential())) describeCredential();
  }, 30_000);
}

// ---------------------------------------------------------------- models

function currentModel() {
  return state.models.find((m) => m.id === $("model").value) ?? null;
}

function markAllowedModels() {
  for (const option of $("model").options) {
    const allowed = !state.tokenModels || state.tokenModels.includes(option.value);
    option.textContent = option.dataset.label + (allowed ? "" : " — not allowed by this token");
  }
}

async function loadModels() {
  const select = $("model");
  try {
    const list = await getJson("/v1/models");
    state.models = list.data;
    select.replaceChildren(
      ...state.models.map((m) => {
        const label = `${m.id}${m.pricing.input === 0 && m.pricing.output === 0 ? " · free" : ""}${m.status === "deprecated" ? " · deprecated" : ""}`;
        return h("option", { value: m.id, dataset: { label } }, label);
      }),
    );
    const saved = window.localStorage.getItem(STORE.model);
    const pick =
      [saved, DEFAULT_MODEL].find((id) => id && state.models.some((m) => m.id === id)) ?? state.models[0]?.id;
    if (pick) select.value = pick;
    select.disabled = false;
    markAllowedModels();
    renderModelCard();
  } catch (err) {
    select.replaceChildren(h("option", {}, "Models unavailable"));
    $("model-card").replaceChildren(errorCard(asApiError(err), { retry: () => void loadModels() }));
  }
}

function renderModelCard() {
  const m = currentModel();
  const card = $("model-card");
  if (!m) {
    card.replaceChildren();
    return;
  }
  const free = m.pricing.input === 0 && m.pricing.output === 0;
  const tiers = Object.entries(m.concurrency).map(([tier, n]) => h("span", {}, `${tier} ${count(n)}`));
  const seen = state.seenLimit.get(m.id);
  const caps = [
    ["streaming", m.capabilities.streaming],
    ["tools", m.capabilities.tools],
    ["web search", m.capabilities.web_search],
    ["JSON mode", m.capabilities.json_mode],
  ].map(([name, on]) => h("span", { class: on ? "cap" : "cap off" }, name));
  if (m.status !== "active") caps.unshift(h("span", { class: "cap warn" }, m.status));
  card.replaceChildren(
    h(
      "div",
      { class: "model-facts" },
      fact(`${tokensShort(m.context_window)} tokens`, "context window", "context"),
      fact(`${tokensShort(m.max_output_tokens)} tokens`, "max output", "max-output"),
      free
        ? fact("Free", "input and output", "price", true)
        : [
            fact(price(m.pricing.input), "input", "price-input"),
            fact(price(m.pricing.output), "output", "price-output"),
          ],
      !free && m.pricing.cached_input !== null
        ? fact(price(m.pricing.cached_input), "cached input", "price-cached", true)
        : null,
      h(
        "div",
        { class: "fact wide", "data-testid": "model-limits" },
        h("span", {}, "Requests in flight at once, by account tier"),
        h("div", { class: "tiers" }, tiers),
        seen
          ? h("span", { "data-testid": "model-your-limit" }, `Your key: ${seen} at once (x-concurrency-limit)`)
          : null,
      ),
    ),
    h("div", { class: "caps" }, caps),
  );
}

function fact(value, label, testid, wide = false) {
  return h(
    "div",
    { class: wide ? "fact wide" : "fact", "data-testid": `model-${testid}` },
    h("b", {}, value),
    h("span", {}, label),
  );
}

function updateSettingsSummary() {
  const value = credential();
  const who = !value ? "no key" : KEY_RE.test(value) ? `key …${value.slice(-4)}` : "token";
  $("settings-summary").textContent = `${$("model").value || "—"} · ${who}`;
}

// ---------------------------------------------------------------- errors

function asApiError(err) {
  if (err instanceof ApiError) return err;
  return new ApiError({
    status: 0,
    code: "network",
    message: err instanceof Error ? err.message : String(err),
    raw: "",
    headers: {},
    requestId: null,
  });
}

/** An error as the API sent it (status, code, message, headers), with what it means and when to retry. */
function errorCard(err, { model, retry } = {}) {
  const info = explain(err, { model });
  const facts = Object.entries(err.headers ?? {}).map(([k, v]) => h("span", {}, `${k}: `, h("b", {}, v)));
  const card = h(
    "div",
    {
      class: info.kind === "limit" ? "alert limit" : "alert",
      role: "alert",
      "data-testid": "error",
      "data-status": String(err.status),
      "data-code": err.code,
    },
    h(
      "h3",
      {},
      h(
        "span",
        { class: "status" },
        err.inBand ? `stream error · code ${err.code}` : `HTTP ${err.status} · code ${err.code}`,
      ),
      h("span", {}, info.title),
    ),
    h("div", { class: "verbatim", "data-testid": "error-message" }, err.message),
    info.lines.map((line) => h("p", { "data-testid": "error-explanation" }, line)),
    facts.length ? h("div", { class: "facts" }, facts) : null,
  );
  if (err.raw && err.raw !== err.message) {
    card.append(
      h("details", {}, h("summary", { class: "muted" }, "Response body"), h("pre", { class: "verbatim" }, err.raw)),
    );
  }
  // Retrying helps with limits, server and network failures; a refused request needs a change first.
  const retryable = err.status === 0 || err.status === 429 || err.status >= 500 || err.inBand;
  if (retry && retryable) card.append(retryButton(info.retryAfterS, retry));
  return card;
}

function retryButton(retryAfterS, retry) {
  const button = h("button", { type: "button", class: "ghost small", "data-testid": "retry" });
  const row = h("div", { class: "actions" }, button);
  const wait = retryAfterS !== null && retryAfterS <= 120 ? Math.ceil(retryAfterS) : 0;
  let left = wait;
  const label = () => {
    button.disabled = left > 0;
    button.textContent = left > 0 ? `Retry in ${left} s` : "Retry now";
  };
  label();
  if (left > 0) {
    const timer = setInterval(() => {
      left--;
      label();
      if (left <= 0) clearInterval(timer);
    }, 1000);
  }
  button.addEventListener("click", () => {
    row.closest(".alert")?.remove();
    retry();
  });
  return row;
}

// ---------------------------------------------------------------- shared request bits

function params() {
  const maxTokens = Number($("max-tokens").value);
  const queue = Number($("queue-timeout").value);
  return {
    temperature: Number($("temperature").value),
    maxTokens: Number.isInteger(maxTokens) && maxTokens > 0 ? maxTokens : undefined,
    headers: Number.isInteger(queue) && queue > 0 ? { "x-queue-timeout-ms": String(queue) } : {},
  };
}

function needCredential() {
  if (credential()) return false;
  $("settings").open = true;
  $("credential").focus();
  const status = $("credential-status");
  status.className = "hint bad";
  status.textContent = "Paste a key or a browser token first.";
  return true;
}

function setBusy(busy, mode) {
  $("send").hidden = busy && mode === "chat";
  $("stop").hidden = !(busy && mode === "chat");
  $("sum-go").hidden = busy && mode === "summarize";
  $("sum-stop").hidden = !(busy && mode === "summarize");
  $("send").disabled = busy;
  $("sum-go").disabled = busy;
  $("clear").disabled = busy;
}

/** Renders a growing Markdown text at most once per frame. */
function liveRenderer(target) {
  let text = "";
  let queued = false;
  const flush = () => {
    queued = false;
    target.replaceChildren(renderMarkdown(text));
    target.dataset.length = String(text.length);
  };
  return {
    set(next) {
      text = next;
      if (!queued) {
        queued = true;
        requestAnimationFrame(flush);
      }
    },
    now() {
      flush();
    },
  };
}

function requestIdPart(id) {
  if (!id) return null;
  return h(
    "span",
    {},
    "request ",
    h("span", { class: "rid", "data-testid": "request-id" }, id),
    " ",
    copyButton(id, "Copy the request id"),
  );
}

function usageParts({ usage, cost, costExact, started, firstTokenAt, finish, extra = [] }) {
  const now = performance.now();
  const parts = [];
  if (usage) {
    parts.push(
      h(
        "span",
        { "data-testid": "usage" },
        h("b", {}, count(usage.prompt_tokens)),
        " in · ",
        h("b", {}, count(usage.completion_tokens)),
        " out tokens",
      ),
    );
  }
  if (cost !== null && cost !== undefined)
    parts.push(h("span", { "data-testid": "cost" }, costExact ? "cost " : "cost ≈ ", h("b", {}, cny(cost))));
  parts.push(h("span", {}, duration(now - started)));
  if (firstTokenAt) parts.push(h("span", {}, `first token ${duration(firstTokenAt - started)}`));
  if (finish && finish !== "stop") {
    const why =
      {
        length: "cut at max_tokens",
        sensitive: "stopped by moderation",
        network_error: "GLM's inference failed",
        tool_calls: "tool call",
        stopped: "stopped by you",
      }[finish] ?? finish;
    parts.push(h("span", { class: "finish" }, why));
  }
  return [...parts, ...extra];
}

// ---------------------------------------------------------------- chat

const transcript = () => $("transcript");

function nearBottom() {
  const el = document.scrollingElement;
  return el.scrollHeight - el.scrollTop - el.clientHeight < 160;
}

function scrollDown(force = false) {
  if (force || nearBottom()) window.scrollTo({ top: document.scrollingElement.scrollHeight });
}

function addUserBubble(text) {
  $("chat-empty")?.remove();
  const node = h("div", { class: "msg user" }, h("div", { class: "bubble", "data-testid": "question" }, text));
  transcript().append(node);
  return node;
}

async function sendChat(text) {
  const model = currentModel();
  if (!text || !model || needCredential()) return;
  if (narrow.matches) $("settings").open = false;
  const userNode = addUserBubble(text);
  const content = h("div", { class: "md", "data-testid": "answer-text" });
  const meta = h("div", { class: "meta", "data-testid": "answer-meta" }, h("span", {}, "waiting for the first token…"));
  const node = h(
    "div",
    { class: "msg assistant streaming", "data-testid": "answer" },
    h("div", { class: "who" }, model.id),
    h("div", { class: "bubble" }, content),
    meta,
  );
  transcript().append(node);
  scrollDown(true);

  const p = params();
  const system = $("system").value.trim();
  const messages = [
    ...(system ? [{ role: "system", content: system }] : []),
    ...state.history,
    { role: "user", content: text },
  ];
  const body = {
    model: model.id,
    messages,
    stream: true,
    temperature: p.temperature,
    ...(p.maxTokens ? { max_tokens: p.maxTokens } : {}),
  };
  const live = liveRenderer(content);
  const started = performance.now();
  let answer = "";
  let usage = null;
  let finish = null;
  let firstTokenAt = 0;
  let requestId = null;
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true, "chat");
  try {
    await postStream("/v1/chat/completions", body, {
      credential: credential(),
      signal: controller.signal,
      headers: p.headers,
      onOpen(info) {
        requestId = info.requestId;
        if (info.headers["x-concurrency-limit"]) {
          state.seenLimit.set(model.id, info.headers["x-concurrency-limit"]);
          renderModelCard();
        }
        meta.replaceChildren(h("span", {}, "streaming…"), requestIdPart(requestId));
      },
      onEvent(chunk) {
        const choice = chunk.choices?.[0];
        const delta = choice?.delta?.content ?? choice?.message?.content ?? "";
        if (delta) {
          firstTokenAt ||= performance.now();
          answer += delta;
          live.set(answer);
          scrollDown();
        }
        if (choice?.finish_reason) finish = choice.finish_reason;
        if (chunk.usage) usage = chunk.usage;
      },
    });
    live.now();
    state.history.push({ role: "user", content: text }, { role: "assistant", content: answer });
    meta.replaceChildren(
      ...usageParts({ usage, cost: costOf(usage, model.pricing), costExact: true, started, firstTokenAt, finish }),
      requestIdPart(requestId),
    );
    meta.dataset.done = "true";
  } catch (err) {
    live.now();
    const stopped = err instanceof DOMException && err.name === "AbortError";
    if (stopped || answer) {
      // Keep what arrived: it is part of the conversation the person saw.
      state.history.push({ role: "user", content: text }, { role: "assistant", content: answer });
      meta.replaceChildren(
        ...usageParts({ usage, cost: null, started, firstTokenAt, finish: stopped ? "stopped" : finish }),
        requestIdPart(requestId),
      );
    } else {
      node.remove();
    }
    if (!stopped) {
      const card = errorCard(asApiError(err), {
        model: model.id,
        retry: () => {
          if (!answer) userNode.remove();
          void sendChat(text);
        },
      });
      transcript().append(card);
      scrollDown(true);
    }
  } finally {
    node.classList.remove("streaming");
    state.controller = null;
    setBusy(false);
  }
}

function initChat() {
  const input = $("composer-input");
  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, window.innerHeight * 0.4)}px`;
  };
  const submit = () => {
    const text = input.value.trim();
    if (!text || state.controller) return;
    if (!credential()) return void needCredential();
    input.value = "";
    grow();
    void sendChat(text);
  };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("examples").addEventListener("click", (e) => {
    const chip = e.target.closest(".chip");
    if (!chip) return;
    input.value = chip.textContent;
    grow();
    input.focus();
  });
}

// ---------------------------------------------------------------- summarize

const STAGES = {
  map: "Summarizing the parts",
  combine: "Combining the part summaries",
  final: "Writing the summary",
  done: "Done",
};

function showProgress(progress) {
  const box = $("sum-progress");
  box.hidden = false;
  const fill = $("sum-progress-fill");
  if (!progress) {
    box.classList.add("indeterminate");
    $("sum-progress-text").textContent = "Sending the text…";
    for (const k of ["stage", "done", "total"]) delete box.dataset[k];
    return;
  }
  const total = Number(progress.total) || 0;
  const done = Math.min(Number(progress.done) || 0, total);
  const wasIndeterminate = box.classList.contains("indeterminate");
  box.classList.toggle("indeterminate", total === 0);
  if (wasIndeterminate && total > 0) {
    // Jump straight to the first real value instead of animating from the sliding placeholder.
    fill.style.transition = "none";
    fill.style.width = `${Math.round((done / total) * 100)}%`;
    void fill.offsetWidth;
    fill.style.transition = "";
  }
  fill.style.width = total ? `${Math.round((done / total) * 100)}%` : "0";
  const stage = STAGES[progress.stage] ?? progress.stage ?? "Working";
  $("sum-progress-text").textContent = total ? `${stage} · ${done}/${total}` : stage;
  box.dataset.stage = progress.stage ?? "";
  box.dataset.done = String(done);
  box.dataset.total = String(total);
}

/** Progress arrives as a chunk with `progress` (choices: []) or as an SSE comment "progress {json}". */
function progressFromComment(comment) {
  const m = /^progress\s*(\{.*\})\s*$/.exec(comment);
  if (!m) return null;
  try {
    return JSON.parse(m[1]);
  } catch {
    return null;
  }
}

async function summarize() {
  const model = currentModel();
  const text = $("sum-text").value;
  if (!model || needCredential()) return;
  if (!text.trim()) {
    $("sum-text").focus();
    return;
  }
  const out = $("sum-output");
  const content = h("div", { class: "md", "data-testid": "summary-text" });
  const meta = h("div", { class: "meta", "data-testid": "summary-meta" });
  const node = h(
    "div",
    { class: "msg assistant streaming" },
    h("div", { class: "who" }, `summary · ${model.id}`),
    h("div", { class: "bubble" }, content),
    meta,
  );
  out.replaceChildren(node);
  showProgress(null);
  $("sum-progress-fill").style.width = "0";

  const p = params();
  const instructions = $("sum-instructions").value.trim();
  const language = $("sum-language").value.trim() || "auto";
  const body = {
    text,
    model: model.id,
    style: $("sum-style").value,
    language,
    stream: true,
    ...(instructions ? { instructions } : {}),
    ...(p.maxTokens ? { max_tokens: p.maxTokens } : {}),
  };
  const live = liveRenderer(content);
  const started = performance.now();
  let summary = "";
  let usage = null;
  let serverCost = null;
  let chunks = null;
  let firstTokenAt = 0;
  let requestId = null;
  let finish = null;
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true, "summarize");
  try {
    await postStream("/v1/summarize", body, {
      credential: credential(),
      signal: controller.signal,
      headers: p.headers,
      onOpen(info) {
        requestId = info.requestId;
        meta.replaceChildren(requestIdPart(requestId));
        if (info.costHeader) serverCost = Number(info.costHeader);
      },
      onComment(comment) {
        const progress = progressFromComment(comment);
        if (progress) showProgress(progress);
      },
      onEvent(chunk) {
        if (chunk.progress) showProgress(chunk.progress);
        if (typeof chunk.cost_cny === "number") serverCost = chunk.cost_cny;
        if (typeof chunk.chunks === "number") chunks = chunk.chunks;
        if (chunk.usage) usage = chunk.usage;
        if (typeof chunk.summary === "string") {
          summary = chunk.summary; // a plain JSON answer
          live.set(summary);
        }
        const choice = chunk.choices?.[0];
        if (choice?.finish_reason) finish = choice.finish_reason;
        const delta = choice?.delta?.content ?? "";
        if (delta) {
          // A text short enough for one pass sends no progress: say what is happening once it starts.
          if (!firstTokenAt && $("sum-progress").dataset.stage !== "final")
            showProgress({ stage: "final", done: 0, total: 0 });
          firstTokenAt ||= performance.now();
          summary += delta;
          live.set(summary);
        }
      },
    });
    live.now();
    showProgress({ stage: "done", done: 1, total: 1 });
    const extra = chunks ? [h("span", {}, `${chunks} part${chunks === 1 ? "" : "s"}`)] : [];
    const cost = serverCost ?? costOf(usage, model.pricing);
    meta.replaceChildren(
      ...usageParts({ usage, cost, costExact: serverCost !== null, started, firstTokenAt, finish, extra }),
      requestIdPart(requestId),
    );
    meta.dataset.done = "true";
  } catch (err) {
    live.now();
    const stopped = err instanceof DOMException && err.name === "AbortError";
    $("sum-progress").hidden = true;
    if (!summary) node.remove();
    else
      meta.replaceChildren(
        ...usageParts({ usage, cost: null, started, firstTokenAt, finish: stopped ? "stopped" : finish }),
        requestIdPart(requestId),
      );
    if (!stopped) out.append(errorCard(asApiError(err), { model: model.id, retry: () => void summarize() }));
  } finally {
    node.classList.remove("streaming");
    state.controller = null;
    setBusy(false);
  }
}

function loadFile(file) {
  if (!file) return;
  if (file.size > 8 * 1024 * 1024) {
    $("sum-count").textContent = `${file.name} is larger than 8 MB, the gateway's request limit`;
    return;
  }
  file.text().then(
    (text) => {
      $("sum-text").value = text;
      updateCount(file.name);
    },
    () => ($("sum-count").textContent = `Could not read ${file.name}`),
  );
}

function updateCount(name) {
  const n = $("sum-text").value.length;
  $("sum-count").textContent = `${name ? `${name} · ` : ""}${count(n)} characters`;
}

function initSummarize() {
  const zone = $("dropzone");
  $("sum-text").addEventListener("input", () => updateCount());
  $("sum-file").addEventListener("change", (e) => loadFile(e.target.files?.[0]));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    loadFile(e.dataTransfer?.files?.[0]);
  });
  $("sum-go").addEventListener("click", () => void summarize());
  $("sum-stop").addEventListener("click", () => state.controller?.abort());
}

// ---------------------------------------------------------------- tabs, settings, start

function initModes() {
  initTabs(["chat", "summarize"]);
  $("clear").addEventListener("click", () => {
    if ($("panel-chat").hidden) {
      $("sum-output").replaceChildren();
      $("sum-progress").hidden = true;
    } else {
      state.history = [];
      transcript()
        .querySelectorAll(".msg, .alert")
        .forEach((n) => n.remove());
    }
  });
}

function initSettings() {
  const settings = $("settings");
  // Wide screens keep the settings open; phones fold them once a key is there, to leave room for the chat.
  settings.querySelector("summary").addEventListener("click", (e) => {
    if (!narrow.matches) e.preventDefault();
  });
  if (narrow.matches && credential()) settings.open = false;
  $("model").addEventListener("change", () => {
    window.localStorage.setItem(STORE.model, $("model").value);
    renderModelCard();
    updateSettingsSummary();
  });
  $("temperature").addEventListener(
    "input",
    () => ($("temperature-value").value = Number($("temperature").value).toFixed(2)),
  );
}

initTheme($("theme-toggle"));
initCredential();
initSettings();
initModes();
initChat();
initSummarize();
void loadModels();
