// The playground's Markdown renderer (public/lib/markdown.js) on a minimal DOM: what it builds, and that
// its time is linear in the answer's length — a 16K-character answer, ordinary or written to hit a
// backtracking regular expression or deep recursion, renders in well under 50 ms.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

/** Just enough of the DOM for the renderer: elements with children, text, and the properties it sets. */
class FakeNode {
  children: (FakeNode | string)[] = [];
  dataset: Record<string, string> = {};
  [prop: string]: unknown;
  constructor(readonly tag: string) {}
  append(...nodes: (FakeNode | string)[]): void {
    this.children.push(...nodes);
  }
  get lastChild(): FakeNode | string | undefined {
    return this.children.at(-1);
  }
  set textContent(text: string) {
    this.children = [text];
  }
}

/** A compact picture of a tree: tag(children…), text as is. */
function html(node: FakeNode | string): string {
  if (typeof node === "string") return node;
  const inner = node.children.map(html).join("");
  const attrs = node["href"]
    ? ` href=${String(node["href"])}`
    : node.dataset["lang"]
      ? ` lang=${node.dataset["lang"]}`
      : "";
  return node.tag === "#fragment" ? inner : `<${node.tag}${attrs}>${inner}</${node.tag}>`;
}

let render: (text: string) => FakeNode;

beforeAll(async () => {
  (globalThis as { document?: unknown }).document = {
    createDocumentFragment: () => new FakeNode("#fragment"),
    createElement: (tag: string) => new FakeNode(tag),
  };
  const url = pathToFileURL(resolve(import.meta.dirname, "..", "public", "lib", "markdown.js")).href;
  render = ((await import(url)) as { renderMarkdown: (text: string) => FakeNode }).renderMarkdown;
});

describe("renderMarkdown", () => {
  it.each([
    [
      "**bold** and __bold__, *it* and _it_, `code`",
      "<p><strong>bold</strong> and <strong>bold</strong>, <em>it</em> and <em>it</em>, <code>code</code></p>",
    ],
    ["see [the docs](https://example.com/a_b) now", "<p>see <a href=https://example.com/a_b>the docs</a> now</p>"],
    [
      "[[a](http://x.y) [no](ftp://x) [bad](http://) [sp](http://a b)",
      "<p><a href=http://x.y>[a</a> [no](ftp://x) [bad](http://) [sp](http://a b)</p>",
    ],
    ["snake_case_name and 2*3*4 and * not *", "<p>snake_case_name and 2*3*4 and * not *</p>"],
    ["**bold _with it_** `a*b*c`", "<p><strong>bold <em>with it</em></strong> <code>a*b*c</code></p>"],
    ["# Title\n\n- one\n- two\n\n1. first", "<h2>Title</h2><ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>"],
    [
      "```js\nlet a = 1;\n```\n> quoted\n> more",
      "<pre><code lang=js>let a = 1;</code></pre><blockquote><p>quoted<br></br>more</p></blockquote>",
    ],
    ["``` not a fence !\ntext", "<p>``` not a fence !</p><p>text</p>"],
  ])("%j", (text, expected) => {
    expect(html(render(text))).toBe(expected);
  });

  it("shows quotes nested deeper than 8 levels as text instead of recursing", () => {
    const out = html(render(">".repeat(12) + " deep"));
    expect(out.match(/<blockquote>/g)).toHaveLength(8);
    expect(out).toContain(">>>> deep");
  });

  it("renders any 16K-character answer in well under 50 ms (time linear in its length)", () => {
    const n = 16_000;
    const answer = Array.from(
      { length: 400 },
      (_, i) =>
        `${i % 10 === 0 ? "## Part " : ""}Line ${i} has **bold**, _it_, \`code\` and [a link](https://example.com/${i}).`,
    )
      .join("\n")
      .slice(0, n);
    const hostile = {
      answer,
      brackets: "[".repeat(n),
      "unclosed links": "[a](http://a".repeat(n / 12),
      "fence with spaces": "```" + " ".repeat(n) + "!",
      "deep quotes": ">".repeat(n),
      "spaced quotes": "> ".repeat(n / 2),
      stars: "*a ".repeat(n / 3),
      "bold openers": "**a ".repeat(n / 4),
      backticks: "`".repeat(n),
      underscores: "_a_".repeat(n / 3) + "x",
      "rule-like": "- ".repeat(n / 2) + "x",
      "list of spaces": "   " + " ".repeat(n) + "x",
    };
    render(answer); // compile and warm up once
    for (const [name, text] of Object.entries(hostile)) {
      let best = Infinity;
      for (let run = 0; run < 3; run++) {
        const t = performance.now();
        render(text);
        best = Math.min(best, performance.now() - t);
      }
      expect(best, name).toBeLessThan(50);
    }
  });
});
