// Keys: the list (settings, last use, in flight now), create (the key and webhook secret shown once),
// edit tier, max_concurrency, budgets, fallback models and upstream share, revoke after a confirmation,
// rotate the webhook secret.
import { copyButton, h } from "../lib/dom.js";
import { ago, compact, dateTime } from "../lib/format.js";
import { field, gauge, numberOrNull, openDialog, options, table } from "./ui.js";

const TIERS = ["V0", "V1", "V2", "V3"];

/** Total in flight over a key's models, and whether any model is at the key's limit. */
export function keyLoad(key) {
  const inFlight = key.models.reduce((n, m) => n + m.in_flight, 0);
  const atLimit = key.models.some((m) => m.limit > 0 && m.in_flight >= m.limit);
  return { inFlight, atLimit };
}

function budgetText(key) {
  const parts = [];
  if (key.daily_budget_cny !== null) parts.push(`¥${key.daily_budget_cny}/day`);
  if (key.daily_token_limit !== null) parts.push(`${compact(key.daily_token_limit)} tokens/day`);
  return parts.length ? parts.join(" · ") : "none";
}

/** The form fields shared by create and edit; values of an existing key prefill them. */
function settingsFields(key) {
  const tier = field(
    "Tier",
    "select",
    {},
    "Sets the in-flight limit per model from the catalog",
    options(
      TIERS.map((t) => [t, t]),
      key?.tier ?? "V0",
    ),
  );
  const max = field(
    "Max concurrency",
    "input",
    {
      type: "number",
      min: 1,
      step: 1,
      inputmode: "numeric",
      value: key?.max_concurrency ?? "",
      placeholder: "tier limit",
    },
    "Lowers the tier's limit for every model; empty for none",
  );
  const budget = field("Daily budget (CNY)", "input", {
    type: "number",
    min: 0,
    step: "any",
    inputmode: "decimal",
    value: key?.daily_budget_cny ?? "",
    placeholder: "none",
  });
  const tokens = field("Daily token limit", "input", {
    type: "number",
    min: 0,
    step: 1,
    inputmode: "numeric",
    value: key?.daily_token_limit ?? "",
    placeholder: "none",
  });
  const fallbacks = field(
    "Fallback models",
    "input",
    {
      type: "text",
      autocomplete: "off",
      spellcheck: "false",
      value: key?.fallback_models?.join(", ") ?? "",
      placeholder: "none",
    },
    "Model ids tried in order when the requested model fails before its first byte, separated by commas; empty for none",
  );
  const share = field(
    "Max upstream share",
    "input",
    {
      type: "number",
      min: 0,
      max: 1,
      step: "any",
      inputmode: "decimal",
      value: key?.max_upstream_share ?? "",
      placeholder: "no cap",
    },
    "Fraction (0–1] of an upstream account's limit for a model this key may hold while other keys wait for it; empty for no cap",
  );
  const values = () => {
    const models = fallbacks.control.value.split(/[\s,]+/).filter(Boolean);
    return {
      tier: tier.control.value,
      max_concurrency: numberOrNull(max.control),
      daily_budget_cny: numberOrNull(budget.control),
      daily_token_limit: numberOrNull(tokens.control),
      fallback_models: models.length ? models : null,
      max_upstream_share: numberOrNull(share.control),
    };
  };
  return { nodes: [tier.node, max.node, budget.node, tokens.node, fallbacks.node, share.node], values };
}

/** A secret shown once: readonly, selectable, with a copy button. */
function secretLine(label, value, testid) {
  const f = field(label, "input", {
    type: "text",
    readonly: true,
    value,
    class: "secret",
    "data-testid": testid,
    spellcheck: "false",
  });
  const row = h("div", { class: "input-row" });
  f.control.replaceWith(row);
  row.append(f.control, copyButton(value, `Copy the ${label.toLowerCase()}`, "ghost small"));
  return f.node;
}

export function createKeysPage({ api, root, secretSlot, refresh, showError }) {
  function showSecret(title, lines) {
    const panel = h(
      "div",
      { class: "card secret-panel", role: "status" },
      h("h3", {}, title),
      h("p", { class: "muted" }, "Copy it now: it is not shown again (the gateway keeps only a hash)."),
      lines,
      h("button", { type: "button", class: "ghost small", onclick: () => panel.remove() }, "Done"),
    );
    secretSlot.replaceChildren(panel);
    panel.querySelector("input")?.focus();
    panel.querySelector("input")?.select();
  }

  async function create() {
    const name = field("Name", "input", {
      type: "text",
      required: true,
      maxlength: 100,
      autocomplete: "off",
      placeholder: "e.g. web-frontend",
    });
    const settings = settingsFields(null);
    let created;
    const ok = await openDialog({
      title: "New key",
      body: [name.node, ...settings.nodes],
      ok: "Create key",
      onSubmit: async () => {
        const body = { name: name.control.value, ...settings.values() };
        for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
        created = await api("/keys", { method: "POST", body });
      },
    });
    if (!ok) return;
    showSecret(`Key “${created.name}” created`, [
      secretLine("Key", created.key, "new-key-value"),
      secretLine("Webhook secret", created.webhook_secret, "new-webhook-secret"),
    ]);
    await refresh();
  }

  async function edit(key) {
    const settings = settingsFields(key);
    const ok = await openDialog({
      title: `Edit “${key.name}”`,
      body: settings.nodes,
      onSubmit: () => api(`/keys/${key.id}`, { method: "PATCH", body: settings.values() }),
    });
    if (ok) await refresh();
  }

  async function revoke(key) {
    const ok = await openDialog({
      title: `Revoke “${key.name}”?`,
      body: [h("p", {}, "Its very next request is refused, and it cannot be used again. Its usage stays on record.")],
      ok: "Revoke key",
      danger: true,
      onSubmit: () => api(`/keys/${key.id}`, { method: "DELETE" }),
    });
    if (ok) await refresh();
  }

  async function rotate(key) {
    let rotated;
    const ok = await openDialog({
      title: `Rotate the webhook secret of “${key.name}”?`,
      body: [
        h(
          "p",
          {},
          "Webhooks are signed with the new secret from now on; receivers still checking the old one will reject them.",
        ),
      ],
      ok: "Rotate secret",
      onSubmit: async () => {
        rotated = await api(`/keys/${key.id}/webhook-secret`, { method: "POST" });
      },
    });
    if (ok)
      showSecret(`New webhook secret for “${key.name}”`, [
        secretLine("Webhook secret", rotated.webhook_secret, "new-webhook-secret"),
      ]);
  }

  const columns = [
    { label: "Name", cell: (k) => h("div", {}, h("b", {}, k.name), h("div", { class: "mono muted" }, k.id)) },
    { label: "Tier", cell: (k) => k.tier },
    { label: "Max concurrency", cell: (k) => (k.max_concurrency === null ? "tier limit" : String(k.max_concurrency)) },
    { label: "Budget", cell: (k) => budgetText(k) },
    {
      label: "Created",
      cell: (k) => h("time", { datetime: k.created_at, title: dateTime(k.created_at) }, ago(k.created_at)),
    },
    {
      label: "Last used",
      cell: (k) =>
        k.last_used_at
          ? h("time", { datetime: k.last_used_at, title: dateTime(k.last_used_at) }, ago(k.last_used_at))
          : "never",
    },
    {
      label: "In flight",
      cell: (k) => {
        if (k.revoked_at) return h("span", { class: "badge off" }, `revoked ${ago(k.revoked_at)}`);
        const { inFlight, atLimit } = keyLoad(k);
        return h(
          "span",
          { "data-testid": "key-in-flight", class: atLimit ? "badge warn" : "" },
          atLimit ? `${inFlight} · at limit` : String(inFlight),
        );
      },
    },
    {
      label: "Actions",
      class: "actions",
      cell: (k) =>
        k.revoked_at
          ? null
          : h(
              "div",
              { class: "row-actions" },
              h(
                "button",
                {
                  type: "button",
                  class: "ghost small",
                  onclick: () => void edit(k).catch(showError),
                  "aria-label": `Edit ${k.name}`,
                },
                "Edit",
              ),
              h(
                "button",
                {
                  type: "button",
                  class: "ghost small",
                  onclick: () => void rotate(k).catch(showError),
                  "aria-label": `Rotate the webhook secret of ${k.name}`,
                },
                "Webhook secret",
              ),
              h(
                "button",
                {
                  type: "button",
                  class: "danger small",
                  onclick: () => void revoke(k).catch(showError),
                  "aria-label": `Revoke ${k.name}`,
                },
                "Revoke",
              ),
            ),
    },
  ];

  return {
    create: () => create().catch(showError),
    render(load) {
      // Active keys first (newest first, as the API sorts them), revoked ones after.
      const keys = [...load.keys.filter((k) => !k.revoked_at), ...load.keys.filter((k) => k.revoked_at)];
      if (keys.length === 0) {
        root.replaceChildren(
          h("p", { class: "empty-note" }, "No keys yet. Create one to let a client call the gateway."),
        );
        return;
      }
      root.replaceChildren(
        table(columns, keys, {
          caption: "Keys",
          rowProps: (k) => ({
            "data-testid": `key-row-${k.id}`,
            class: k.revoked_at ? "revoked" : keyLoad(k).atLimit ? "at-limit" : undefined,
          }),
        }),
      );
    },
  };
}

/** The key's gauges for models with requests in flight (for the live load page). */
export function keyGauges(key) {
  const busy = key.models.filter((m) => m.in_flight > 0);
  if (busy.length === 0) return [h("p", { class: "muted idle" }, "idle")];
  return busy.map((m) =>
    h(
      "div",
      { class: "gauge-row" },
      h("span", { class: "gauge-label" }, m.model),
      gauge(m.in_flight, m.limit, `${key.name}: ${m.model} in flight`),
    ),
  );
}
