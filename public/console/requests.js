// Recent requests of one key (the per-request records, kept 8 days): time, model, status, how it ended,
// tokens, cost, whether the tokens were estimated, and the request id to quote.
import { copyButton, h } from "../lib/dom.js";
import { count, dateTime, spent } from "../lib/format.js";
import { table } from "./ui.js";

const columns = [
  { label: "Time", cell: (r) => h("time", { datetime: new Date(r.ts).toISOString() }, dateTime(r.ts)) },
  { label: "Model", cell: (r) => h("span", { class: "mono" }, r.model) },
  { label: "Status", cell: (r) => h("span", { class: r.status >= 400 ? "badge bad" : "badge ok" }, String(r.status)) },
  {
    label: "Ended",
    cell: (r) => h("span", { class: r.ended === "completed" ? "" : "badge warn" }, r.ended.replace(/_/g, " ")),
  },
  {
    label: "Tokens",
    cell: (r) =>
      `${count(r.prompt_tokens)} in · ${count(r.completion_tokens)} out${r.cached_tokens ? ` · ${count(r.cached_tokens)} cached` : ""}`,
  },
  { label: "Cost", cell: (r) => spent(r.cost_cny) },
  {
    label: "Estimated",
    cell: (r) =>
      r.estimated
        ? h("span", { class: "badge warn", title: "GLM did not report usage; tokens were estimated" }, "estimated")
        : "no",
  },
  {
    label: "Request id",
    cell: (r) =>
      h(
        "span",
        { class: "rid" },
        h("span", { class: "mono" }, r.request_id),
        " ",
        copyButton(r.request_id, "Copy the request id"),
      ),
  },
];

export function renderRequests(root, records) {
  if (records.length === 0) {
    root.replaceChildren(h("p", { class: "empty-note" }, "No requests from this key in the last 8 days."));
    return;
  }
  root.replaceChildren(
    table(columns, records, {
      caption: "Recent requests, newest first",
      rowProps: () => ({ "data-testid": "request-row" }),
    }),
  );
}
