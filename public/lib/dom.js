// DOM helpers shared by the playground and the console: element building, the theme toggle, keyboard
// tabs and copy buttons. No framework and no innerHTML: text always goes in as text.

/** h("a", { href, class, text, onclick, dataset }, ...children): an element; false/null props and children are skipped. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

const THEME_KEY = "glm-edge:theme";

function applyTheme(button, mode) {
  if (mode === "light" || mode === "dark") document.documentElement.dataset.theme = mode;
  else delete document.documentElement.dataset.theme;
  const label = `Theme: ${mode === "light" || mode === "dark" ? mode : "automatic"}`;
  button.setAttribute("aria-label", label);
  button.title = label;
}

/** The header's theme button: automatic → light → dark, remembered in localStorage (a preference, not a secret). */
export function initTheme(button, onChange = () => undefined) {
  let mode = window.localStorage.getItem(THEME_KEY) ?? "auto";
  applyTheme(button, mode);
  button.addEventListener("click", () => {
    mode = { auto: "light", light: "dark", dark: "auto" }[mode] ?? "auto";
    window.localStorage.setItem(THEME_KEY, mode);
    applyTheme(button, mode);
    onChange(mode);
  });
}

/**
 * ARIA tabs over elements #tab-<name> and #panel-<name>: click or Left/Right/Home/End to switch.
 * Returns select(name); onSelect(name) runs after every switch.
 */
export function initTabs(names, onSelect = () => undefined) {
  const select = (name) => {
    for (const tab of names) {
      const on = tab === name;
      document.getElementById(`tab-${tab}`).setAttribute("aria-selected", String(on));
      document.getElementById(`tab-${tab}`).tabIndex = on ? 0 : -1;
      document.getElementById(`panel-${tab}`).hidden = !on;
    }
    onSelect(name);
  };
  for (const name of names) {
    const tab = document.getElementById(`tab-${name}`);
    tab.addEventListener("click", () => select(name));
    tab.addEventListener("keydown", (e) => {
      const i = names.indexOf(name);
      const to = { ArrowRight: i + 1, ArrowLeft: i + names.length - 1, Home: 0, End: names.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      const next = names[to % names.length];
      select(next);
      document.getElementById(`tab-${next}`).focus();
    });
  }
  return select;
}

/** A small button that copies `text` and says so. */
export function copyButton(text, label, className = "copy") {
  const button = h("button", { type: "button", class: className, "aria-label": label }, "copy");
  button.addEventListener("click", () => {
    navigator.clipboard?.writeText(text).then(
      () => (button.textContent = "copied"),
      () => (button.textContent = "select and copy"),
    );
  });
  return button;
}
