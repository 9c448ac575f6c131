// Types for the test that runs the rule (the rule itself is plain JS, loaded by eslint.config.js).
import type { Rule } from "eslint";

declare const folderCycles: Rule.RuleModule;
export default folderCycles;
