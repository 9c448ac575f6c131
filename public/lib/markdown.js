// A small, safe Markdown renderer for model answers: paragraphs, headings, lists, quotes, fenced code,
// inline code, bold, italics and http(s) links. It builds DOM nodes with textContent only (never innerHTML),
// so nothing a model writes can run as markup. It is re-run on the growing text while an answer streams,
// so an unfinished code fence renders as code straight away.
//
// Its time is linear in the text's length whatever the text is (a model can be asked to write anything):
// no regular expression here can backtrack over a line, inline spans are found by a single left-to-right
// scan whose searches for a closing mark are remembered, and quotes nest at most MAX_QUOTE_DEPTH deep.

/** Deeper `>` levels are shown as text: each level re-reads its lines, so depth must be bounded. */
const MAX_QUOTE_DEPTH = 8;

/** @param {string} text @param {number} [depth] @returns {DocumentFragment} */
export function renderMarkdown(text, depth = 0) {
  const out = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = fenceOf(line);
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
    if (depth < MAX_QUOTE_DEPTH && /^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      const q = el("blockquote");
      q.append(renderMarkdown(quoted.join("\n"), depth + 1));
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

/** An opening (or closing) code fence: ``` or ~~~ and an optional language name. */
function fenceOf(line) {
  const m = /^\s*(```+|~~~+)(.*)$/.exec(line);
  if (!m) return null;
  const lang = m[2].trim();
  return /^[\w+#.-]*$/.test(lang) ? [m[0], m[1], lang] : null;
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

// Inline spans, earliest first: `code`, **bold** / __bold__, *italic* / _italic_, [text](http…). A span
// holds no mark of its own kind (as in "[^*]+"), so each search for a closing mark ends at the next such
// mark; the searches for a link's "]" and for its URL's end could pass many openers, so their answers
// are kept.
const WORD = /[A-Za-z0-9_]/;
const isWord = (ch) => ch !== undefined && WORD.test(ch);
const isSpace = (ch) => ch !== undefined && /\s/.test(ch);

/** @param {HTMLElement} parent @param {string} text */
function inline(parent, text) {
  let plain = 0; // start of the text not yet appended
  let closeBracket = -2; // the next "]" at or after the current position (-1: none left)
  let urlStop = -1; // the next ")" or space at or after the last URL start looked at
  /** The http(s) URL of "(url)" starting at `at`, or null. */
  const linkTarget = (at) => {
    if (text[at] !== "(") return null;
    const scheme = text.startsWith("https://", at + 1) ? 8 : text.startsWith("http://", at + 1) ? 7 : 0;
    if (scheme === 0) return null;
    // URL starts only move forward, so the end found for an earlier one still holds if it lies ahead.
    if (urlStop <= at) {
      urlStop = at + 1;
      while (urlStop < text.length && text[urlStop] !== ")" && !isSpace(text[urlStop])) urlStop++;
    }
    return text[urlStop] === ")" && urlStop > at + 1 + scheme ? text.slice(at + 1, urlStop) : null;
  };
  let i = 0;
  const flush = (end) => {
    if (end > plain) parent.append(text.slice(plain, end));
  };
  while (i < text.length) {
    const ch = text[i];
    let span = null; // [end, node]
    if (ch === "`") {
      const j = text.indexOf("`", i + 1);
      if (j > i + 1) span = [j + 1, el("code", text.slice(i + 1, j))];
    } else if ((ch === "*" || ch === "_") && text[i + 1] === ch) {
      const j = text.indexOf(ch, i + 2);
      if (j > i + 2 && text[j + 1] === ch) {
        const b = el("strong");
        inline(b, text.slice(i + 2, j));
        span = [j + 2, b];
      }
    } else if ((ch === "*" || ch === "_") && !isWord(text[i - 1]) && text[i - 1] !== ch && !isSpace(text[i + 1])) {
      const j = text.indexOf(ch, i + 1);
      if (j > i + 1 && !isWord(text[j + 1])) {
        const e = el("em");
        inline(e, text.slice(i + 1, j));
        span = [j + 1, e];
      }
    } else if (ch === "[") {
      if (closeBracket !== -1 && closeBracket <= i) closeBracket = text.indexOf("]", i + 1);
      const j = closeBracket;
      if (j > i + 1) {
        const url = linkTarget(j + 1);
        if (url !== null) {
          const a = el("a", text.slice(i + 1, j));
          a.href = url;
          a.target = "_blank";
          a.rel = "noopener noreferrer nofollow";
          span = [j + 3 + url.length, a];
        }
      }
    }
    if (span) {
      flush(i);
      parent.append(span[1]);
      i = plain = span[0];
    } else i++;
  }
  flush(text.length);
}
