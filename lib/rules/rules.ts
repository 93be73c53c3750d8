/**
 * tcpserver's access rules, one import for those who want all of them:
 * the tcprules compiler (lib/rules/compile.ts), the lookup in DJB's order
 * (lib/rules/lookup.ts) and RulesFile, the in-memory, self-reloading rules
 * cdb tcpserver consults (lib/rules/rules_file.ts). The cdb format itself
 * is lib/rules/cdb.ts.
 */
export {
  CIDR_V4_KEY,
  CIDR_V6_KEY,
  compileRules,
  RuleCompiler,
  RuleSyntaxError,
} from "./compile.ts";
export {
  decide,
  findRule,
  lookupRules,
  type RuleDecision,
  type RuleItem,
  ruleItems,
  type RuleMatch,
} from "./lookup.ts";
export { RulesFile, type RulesFileOptions } from "./rules_file.ts";
