// A rule's match as the policy writes it, for people deciding on a grant: an approval with a
// grantTtl lets every operation the rule matches through, not only the one on screen, and the
// approver must see that scope. Printed from the rule itself (YAML flow style), so nothing is
// paraphrased or left out.
import { stringify } from "yaml";
import type { Rule } from "../../../api/src/index.ts";

const MAX = 2048;

export function describeMatch(match: Rule["match"]): string {
  if (!match || Object.keys(match).length === 0)
    return "every operation on the connection (the rule has no match)";
  const text = stringify(match, { collectionStyle: "flow", lineWidth: 0 }).trim();
  return text.length > MAX ? `${text.slice(0, MAX - 1)}…` : text;
}
