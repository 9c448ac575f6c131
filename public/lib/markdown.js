// A small, safe Markdown renderer for model answers: paragraphs, headings, lists, quotes, fenced code,
// inline code, bold, italics and http(s) links. It builds DOM nodes with textContent only (never innerHTML),
// so nothing a model writes can run as markup. It is re-run on the growing text while an answer streams,
// so an unfinished code fence renders as code straight away.

/** @param {string} text @returns {DocumentFragment} */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w+#.-]*)\s*$/.exec(line);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++; // the closing fence (absent while streaming)
      const pre = el("pre");
      const code = el("code", body.join("\n"));
      if (fence[2]) code.dataset.lang = fence[2];
      pre.append(code);
      out.append(pre);
      continue;
    }
    if (/^\s*$/.test(line)) {
      i++;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      const h = el(`h${Math.min(heading[1].length + 1, 4)}`);
      inline(h, heading[2]);
      out.append(h);
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      out.append(el("hr"));
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      const q = el("blockquote");
      q.append(renderMarkdown(quoted.join("\n")));
      out.append(q);
      continue;
    }
    const item = listItem(line);
    if (item) {
      const list = el(item.ordered ? "ol" : "ul");
      if (item.ordered && item.start !== 1) list.start = item.start;
      while (i < lines.length) {
        const it = listItem(lines[i]);
        if (it && it.ordered === item.ordered) {
          const li = el("li");
          inline(li, it.text);
          list.append(li);
          i++;
        } else if (lines[i].trim() !== "" && /^\s{2,}\S/.test(lines[i]) && list.lastChild) {
          // A continuation line of the previous item.
          list.lastChild.append(el("br"));
          inline(list.lastChild, lines[i].trim());
          i++;
        } else break;
      }
      out.append(list);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() !== "" && !startsBlock(lines[i])) para.push(lines[i++]);
    if (para.length === 0) para.push(lines[i++]);
    const p = el("p");
    para.forEach((l, n) => {
      if (n > 0) p.append(el("br"));
      inline(p, l);
    });
    out.append(p);
  }
  return out;
}

function listItem(line) {
  const m = /^\s{0,3}(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/.exec(line);
  if (!m) return null;
  return { ordered: m[2] !== undefined, start: m[2] ? Number(m[2]) : 1, text: m[3] };
}

function startsBlock(line) {
  return /^\s*(```|~~~)/.test(line) || /^#{1,6}\s/.test(line) || /^\s*>/.test(line) || listItem(line) !== null;
}

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Inline spans, earliest match first: `code`, **bold**, *italic* / _italic_, [text](http…).
const INLINE = /`([^`\n]+)`|\*\*([^*\n]+?)\*\*|__([^_\n]+?)__|(?<![\w*])\*(?!\s)([^*\n]+?)\*(?!\w)|(?<![\w_])_(?!\s)([^_\n]+?)_(?!\w)|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g;

/** @param {HTMLElement} parent @param {string} text */
function inline(parent, text) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    if (m[1] !== undefined) parent.append(el("code", m[1]));
    else if (m[2] !== undefined || m[3] !== undefined) {
      const b = el("strong");
      inline(b, m[2] ?? m[3]);
      parent.append(b);
    } else if (m[4] !== undefined || m[5] !== undefined) {
      const e = el("em");
      inline(e, m[4] ?? m[5]);
      parent.append(e);
    } else if (m[6] !== undefined) {
      const a = el("a", m[6]);
      a.href = m[7];
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
      parent.append(a);
    }
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(text.slice(last));
}
