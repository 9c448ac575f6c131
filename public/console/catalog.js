// Catalog: every model with its prices and per-tier limits; edit a price or a limit, or disable a model.
// The gateway validates the change (PATCH /admin/catalog/models/{id}); its message is shown as sent.
import { h } from "../lib/dom.js";
import { count, price, tokensShort } from "../lib/format.js";
import { field, numberOrNull, openDialog, options, table } from "./ui.js";

const TIERS = ["V0", "V1", "V2", "V3"];
const STATUSES = ["active", "deprecated", "disabled"];

/** Only what changed, nested as the API merges it. */
function patchOf(model, next) {
  const patch = {};
  const pricing = Object.fromEntries(Object.entries(next.pricing).filter(([k, v]) => model.pricing[k] !== v));
  const concurrency = Object.fromEntries(
    Object.entries(next.concurrency).filter(([k, v]) => model.concurrency[k] !== v),
  );
  if (Object.keys(pricing).length) patch.pricing = pricing;
  if (Object.keys(concurrency).length) patch.concurrency = concurrency;
  if (next.status !== model.status) patch.status = next.status;
  return patch;
}

function editFields(model) {
  const money = (label, value, hint) =>
    field(
      label,
      "input",
      {
        type: "number",
        step: "any",
        inputmode: "decimal",
        value: value ?? "",
        placeholder: value === null ? "not offered" : "",
      },
      hint,
    );
  const input = money("Input price (CNY per 1M tokens)", model.pricing.input);
  const output = money("Output price (CNY per 1M tokens)", model.pricing.output);
  const cached = money(
    "Cached input price (CNY per 1M tokens)",
    model.pricing.cached_input,
    "Empty when the model has no cached price",
  );
  const limits = TIERS.map((t) =>
    field(`${t} limit (in flight)`, "input", {
      type: "number",
      step: 1,
      inputmode: "numeric",
      value: model.concurrency[t],
    }),
  );
  const status = field(
    "Status",
    "select",
    {},
    "Disabled models are refused (1211) and hidden from /v1/models",
    options(
      STATUSES.map((s) => [s, s]),
      model.status,
    ),
  );
  const values = () => ({
    pricing: {
      input: numberOrNull(input.control),
      output: numberOrNull(output.control),
      cached_input: numberOrNull(cached.control),
    },
    concurrency: Object.fromEntries(TIERS.map((t, i) => [t, numberOrNull(limits[i].control)])),
    status: status.control.value,
  });
  const tiers = h(
    "div",
    { class: "grid-2" },
    limits.map((l) => l.node),
  );
  return { nodes: [input.node, output.node, cached.node, tiers, status.node], values };
}

export function createCatalogPage({ api, root, versionNote, showError }) {
  let catalog = null;

  async function edit(model) {
    const form = editFields(model);
    const ok = await openDialog({
      title: `Edit ${model.id}`,
      body: form.nodes,
      onSubmit: async () => {
        const patch = patchOf(model, form.values());
        if (Object.keys(patch).length === 0) return;
        catalog = await api(`/catalog/models/${encodeURIComponent(model.id)}`, { method: "PATCH", body: patch });
      },
    });
    if (ok) render();
  }

  const columns = [
    {
      label: "Model",
      cell: (m) =>
        h(
          "div",
          {},
          h("b", { class: "mono" }, m.id),
          " ",
          m.status === "active"
            ? null
            : h("span", { class: `badge ${m.status === "disabled" ? "off" : "warn"}` }, m.status),
        ),
    },
    { label: "Context", cell: (m) => `${tokensShort(m.context_window)} · out ${tokensShort(m.max_output_tokens)}` },
    { label: "Input", cell: (m) => price(m.pricing.input) },
    { label: "Output", cell: (m) => price(m.pricing.output) },
    { label: "Cached input", cell: (m) => price(m.pricing.cached_input) },
    {
      label: "In-flight limit V0 / V1 / V2 / V3",
      cell: (m) => h("span", { class: "mono" }, TIERS.map((t) => count(m.concurrency[t])).join(" / ")),
    },
    {
      label: "Actions",
      class: "actions",
      cell: (m) =>
        h(
          "button",
          {
            type: "button",
            class: "ghost small",
            "aria-label": `Edit ${m.id}`,
            onclick: () => void edit(m).catch(showError),
          },
          "Edit",
        ),
    },
  ];

  function render() {
    versionNote.textContent = `version ${catalog.version} · updated ${catalog.updated_at}`;
    root.replaceChildren(
      table(columns, catalog.models, { caption: "Models", rowProps: (m) => ({ "data-testid": `model-row-${m.id}` }) }),
    );
  }

  return {
    async load() {
      catalog = await api("/catalog");
      render();
    },
  };
}
