// ESLint rule: no import cycle between the folders of a source root. Each folder under the root (src/auth/,
// src/keys/, …) is one node, and so is each file directly in the root (src/config.ts, src/errors.ts, …); an
// import from one node into another is an edge. An import is reported when its target node can reach the
// importing node again, with the path that closes the cycle. The graph is built once per lint run from every
// file's import specifiers (TypeScript's pre-processor, which skips comments and strings), so it holds the
// type-only imports too: a cycle of types is still two folders that cannot be understood one without the other.
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";

const EXTENSIONS = [".ts", ".js", ".mjs"];

/** The node a file belongs to: its first folder under the root, or the file itself when it sits in the root. */
function nodeOf(root, file) {
  const rel = path.relative(root, file);
  if (rel.startsWith("..") || path.isAbsolute(rel)) return null;
  const parts = rel.split(path.sep);
  return parts.length > 1 ? `${parts[0]}/` : parts[0];
}

function sourceFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(p));
    else if (EXTENSIONS.some((e) => entry.name.endsWith(e)) && !entry.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** node → (node → the first import seen that makes the edge, for the message) */
function buildGraph(root) {
  const graph = new Map();
  for (const file of sourceFiles(root)) {
    const from = nodeOf(root, file);
    for (const { fileName } of ts.preProcessFile(fs.readFileSync(file, "utf8"), true, true).importedFiles) {
      if (!fileName.startsWith(".")) continue;
      const to = nodeOf(root, path.resolve(path.dirname(file), fileName));
      if (to === null || to === from) continue;
      if (!graph.has(from)) graph.set(from, new Map());
      const edges = graph.get(from);
      if (!edges.has(to)) edges.set(to, `${path.relative(root, file)} → ${fileName}`);
    }
  }
  return graph;
}

/** The shortest path of nodes from `start` to `goal` (breadth first), or null. */
function pathBetween(graph, start, goal) {
  const previous = new Map([[start, null]]);
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift();
    if (node === goal) {
      const out = [];
      for (let n = goal; n !== null; n = previous.get(n)) out.unshift(n);
      return out;
    }
    for (const next of graph.get(node)?.keys() ?? []) {
      if (!previous.has(next)) {
        previous.set(next, node);
        queue.push(next);
      }
    }
  }
  return null;
}

const graphs = new Map();

export default {
  meta: {
    type: "problem",
    docs: { description: "forbid import cycles between the folders of a source root" },
    schema: [
      { type: "object", properties: { root: { type: "string" } }, required: ["root"], additionalProperties: false },
    ],
    messages: { cycle: "import cycle between folders: {{cycle}} (the way back: {{via}})" },
  },
  create(context) {
    const root = path.resolve(context.cwd, context.options[0].root);
    const from = nodeOf(root, context.filename);
    if (from === null) return {};
    if (!graphs.has(root)) graphs.set(root, buildGraph(root));
    const graph = graphs.get(root);

    function check(node, specifier) {
      if (typeof specifier !== "string" || !specifier.startsWith(".")) return;
      const to = nodeOf(root, path.resolve(path.dirname(context.filename), specifier));
      if (to === null || to === from) return;
      const back = pathBetween(graph, to, from);
      if (back === null) return;
      const via = back
        .slice(0, -1)
        .map((n, i) => graph.get(n).get(back[i + 1]))
        .join("; ");
      context.report({ node, messageId: "cycle", data: { cycle: [from, ...back].join(" → "), via } });
    }

    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === "Literal" && check(node, node.source.value),
    };
  },
};
