// The console's building blocks: API errors shown verbatim, gauges, tables that become cards on phones,
// form fields and the one modal dialog every form and confirmation uses.
import { h } from "../lib/dom.js";

/**
 * Shows an error in its slot exactly as the API sent it (status, GLM code, message, request id). `source`
 * names what failed, so a later success of the same thing clears it and nothing else does.
 */
export function showError(slot, err, source = "action") {
  const api = err && err.name === "ApiError";
  slot.dataset.source = source;
  slot.replaceChildren(
    h(
      "div",
      { class: "alert", role: "alert", "data-testid": "api-error" },
      h(
        "h3",
        {},
        api ? h("span", { class: "status" }, `${err.status} · ${err.code}`) : null,
        api ? "The API refused this" : "Could not reach the gateway",
      ),
      h("p", { class: "verbatim" }, err?.message ?? String(err)),
      api && err.requestId ? h("p", { class: "facts" }, "request ", h("b", {}, err.requestId)) : null,
    ),
  );
}

/** Clears the slot's error (only when it came from `source`, if given). */
export function clearError(slot, source) {
  if (source === undefined || slot.dataset.source === source) slot.replaceChildren();
}

/** A horizontal gauge: value of max, "full" once max is reached (a key at its limit). */
export function gauge(value, max, label) {
  const full = max > 0 && value >= max;
  const fill = h("div", { class: "gauge-fill" });
  fill.style.width = `${max > 0 ? Math.min(100, (value / max) * 100) : 0}%`;
  return h(
    "div",
    {
      class: `gauge${full ? " full" : ""}`,
      role: "meter",
      "aria-label": label,
      "aria-valuemin": 0,
      "aria-valuemax": max,
      "aria-valuenow": value,
      "aria-valuetext": `${value} of ${max}`,
      "data-testid": "gauge",
      dataset: { value: String(value), max: String(max) },
    },
    h("div", { class: "gauge-track" }, fill),
    h("span", { class: "gauge-text" }, `${value} / ${max}`),
  );
}

/**
 * A table whose rows turn into labelled cards on narrow screens (each cell carries its column's label).
 * columns: [{ label, cell(row) → Node|string, class? }]; rowProps(row) → extra attributes of the row.
 */
export function table(columns, rows, { caption, rowProps = () => ({}) } = {}) {
  return h(
    "table",
    { class: "rtable" },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          rowProps(row),
          columns.map((c) => h("td", { class: c.class, dataset: { label: c.label } }, c.cell(row))),
        ),
      ),
    ),
  );
}

let fieldSeq = 0;

/** A labelled input, select or the like; props go to the control. Returns { node, control }. */
export function field(label, tag, props = {}, hint = "", ...children) {
  const id = `f${++fieldSeq}`;
  const hintId = hint ? `${id}-hint` : undefined;
  const control = h(tag, { id, name: props.name ?? id, "aria-describedby": hintId, ...props }, ...children);
  const node = h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
  );
  return { node, control };
}

export function options(values, selected) {
  return values.map(([value, text]) => h("option", { value, selected: value === selected }, text));
}

/** An optional number from an input: "" → null; anything else as typed (the API validates it). */
export function numberOrNull(input) {
  const v = input.value.trim();
  return v === "" ? null : Number(v);
}

const $ = (id) => document.getElementById(id);

/**
 * Opens the modal dialog with a form. onSubmit() runs on OK; the dialog closes when it resolves and shows
 * the API's error (staying open) when it throws. Escape and Cancel close it. Resolves true when submitted.
 */
export function openDialog({ title, body, ok = "Save", danger = false, onSubmit }) {
  const dialog = $("dialog");
  const form = $("dialog-form");
  $("dialog-title").textContent = title;
  $("dialog-body").replaceChildren(...body);
  clearError($("dialog-error"));
  $("dialog-ok").textContent = ok;
  $("dialog-ok").className = danger ? "danger" : "primary";
  $("dialog-ok").disabled = false;
  return new Promise((resolve) => {
    const done = (submitted) => {
      form.removeEventListener("submit", submit);
      $("dialog-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("close", cancel);
      if (dialog.open) dialog.close();
      resolve(submitted);
    };
    const cancel = () => done(false);
    const submit = async (e) => {
      e.preventDefault();
      $("dialog-ok").disabled = true;
      try {
        await onSubmit();
        done(true);
      } catch (err) {
        showError($("dialog-error"), err);
        $("dialog-ok").disabled = false;
      }
    };
    form.addEventListener("submit", submit);
    $("dialog-cancel").addEventListener("click", cancel);
    dialog.addEventListener("close", cancel);
    dialog.showModal();
    (dialog.querySelector("#dialog-body input, #dialog-body select") ?? $("dialog-ok")).focus();
  });
}
