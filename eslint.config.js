// Lint: typescript-eslint's type-aware recommended rules; floating promises are errors (a promise nobody
// awaits in a Worker is work that silently never finishes).
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import stylistic from "@stylistic/eslint-plugin";
import folderCycles from "./eslint-rules/folder-cycles.js";

export default tseslint.config(
  {
    ignores: [
      "node_modules",
      "dist",
      "**/.wrangler",
      "worker-configuration.d.ts",
      "artifacts",
      "public/vendor",
      "eslint.config.js",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { project: ["./tsconfig.json", "./tsconfig.node.json"], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" },
      ],
    },
  },
  // The Worker's schemas come from src/shared/zod.ts: a value import of zod through @hono/zod-openapi (or of zod's
  // `z` object) pulls all of zod and its locales into the bundle, and builds schemas at startup (issue 16). The
  // OpenAPI document is generated at build time (src/http/openapi-document.ts): nothing in the Worker imports it
  // or zod-to-openapi.
  {
    files: ["src/**/*.ts"],
    ignores: ["src/shared/zod.ts", "src/http/openapi-document.ts"],
    rules: {
      "@typescript-eslint/no-restricted-imports": [
        "error",
        {
          paths: [
            {
              name: "@hono/zod-openapi",
              message: 'use `import * as z from "../shared/zod.ts"` and createRoute from src/http/openapi.ts',
              allowTypeImports: true,
            },
            { name: "zod", message: 'use `import * as z from "../shared/zod.ts"`', allowTypeImports: true },
            {
              name: "@asteasolutions/zod-to-openapi",
              message: "the document is generated at build time (src/http/openapi-document.ts)",
              allowTypeImports: true,
            },
          ],
          patterns: [
            {
              group: ["**/openapi-document.ts"],
              message: "build time only: it would put zod-to-openapi in the Worker's bundle",
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
  // Prettier keeps code within 120 columns but cannot wrap a comment or a string: this holds src/ to the same width.
  {
    files: ["src/**/*.ts"],
    plugins: { "@stylistic": stylistic },
    rules: { "@stylistic/max-len": ["error", { code: 120, ignoreRegExpLiterals: true }] },
  },
  // Data flows one way between src/'s folders (README, Architecture): a folder never imports one that imports it.
  {
    files: ["src/**/*.ts"],
    plugins: { house: { rules: { "folder-cycles": folderCycles } } },
    rules: { "house/folder-cycles": ["error", { root: "src" }] },
  },
  // The lint rules are plain JS for Node, outside any tsconfig: lint them without type information.
  { files: ["eslint-rules/**/*.js"], ...tseslint.configs.disableTypeChecked },
  { files: ["eslint-rules/**/*.js"], languageOptions: { parserOptions: { project: false, projectService: false } } },
  // The playground's plain browser scripts belong to no tsconfig: lint them without type information.
  { files: ["public/**/*.js"], ...tseslint.configs.disableTypeChecked },
  {
    files: ["public/**/*.js"],
    languageOptions: {
      parserOptions: { project: false, projectService: false },
      globals: {
        window: "readonly",
        document: "readonly",
        fetch: "readonly",
        localStorage: "readonly",
        console: "readonly",
        TextDecoder: "readonly",
        AbortController: "readonly",
        navigator: "readonly",
        setTimeout: "readonly",
        URL: "readonly",
        FileReader: "readonly",
        performance: "readonly",
      },
    },
  },
);
