/**
 * The rules step (-x, -X): the client's address, then host name and ident
 * answer, looked up in the rules cdb (lib/rules/rules.ts: DJB's order), the
 * rule's variables applied to the connection's environment. Policy only:
 * the cdb read is RulesFile's.
 */
import { errorText } from "../../core/errors.ts";
import type { RulesFile } from "../../rules/rules.ts";

/** What the rules decided: allow or deny, or drop (the cdb unreadable; `why` for the log line). */
export type RulesVerdict = { allow: boolean } | { drop: string };

/**
 * Looks the client up in rules and applies the matching rule's variables to
 * env (a variable without value is removed). A missing cdb allows with
 * -X (allowNoRules), else drops, as C.
 */
export async function applyRules(
  rules: RulesFile,
  allowNoRules: boolean,
  client: { ip: string; host: string | null; info: string | null },
  env: Map<string, string>,
): Promise<RulesVerdict> {
  let d;
  try {
    d = await rules.lookup(client.ip, client.host ?? undefined, client.info ?? undefined);
  } catch (e) {
    return { drop: `unable to read ${rules.path}: ${errorText(e)}` };
  }
  if (d === "missing") {
    return allowNoRules
      ? { allow: true }
      : { drop: `unable to read ${rules.path}: file does not exist` };
  }
  for (const [k, v] of d.env) v === null ? env.delete(k) : env.set(k, v);
  return { allow: d.allow };
}
