// The list methods as the agent sees them: `tools/list`, `resources/list`,
// `resources/templates/list` and `prompts/list` answers lose the entries the subject may never use
// (no allow or requireApproval rule would admit tools/call of that name, resources/read of that URI
// or template, prompts/get of that name); entries that need approval say so in their description.
// One answer message at a time: answers.ts takes them out of a JSON body or an SSE stream.
import type { JsonRpcId } from "./jsonrpc.ts";

/** `maybe-approval`: some calls need approval (a requireApproval rule with a condition). */
export type ListVerdict = "keep" | "approval" | "maybe-approval" | "drop";

/** What a list method lists: the result field, and the entry field its use is judged by. */
export const LISTS = {
  "tools/list": { field: "tools", key: "name" },
  "resources/list": { field: "resources", key: "uri" },
  "resources/templates/list": { field: "resourceTemplates", key: "uriTemplate" },
  "prompts/list": { field: "prompts", key: "name" },
} as const;

export type ListMethod = keyof typeof LISTS;

export const isListMethod = (m: string): m is ListMethod => Object.hasOwn(LISTS, m);

export const APPROVAL_NOTE = " (requires approval)";
export const MAYBE_APPROVAL_NOTE = " (may require approval)";

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Verdict on one entry of a list answer (`key`: the tool/prompt name, resource URI or URI
 * template; `entry`: the whole entry, for tool-definition pins).
 */
export type Judge = (method: ListMethod, key: string, entry: Record<string, unknown>) => ListVerdict;

/** Rewrites the entries of a response to one of the list requests `ids`; returns how many were removed. */
export function filterMessage(
  message: unknown,
  ids: ReadonlyMap<JsonRpcId, ListMethod>,
  judge: Judge,
): number {
  if (!isObject(message) || !isObject(message.result)) return 0;
  const method = ids.get(message.id as JsonRpcId);
  if (method === undefined) return 0;
  const { field, key } = LISTS[method];
  const entries = message.result[field];
  if (!Array.isArray(entries)) return 0;
  const kept: unknown[] = [];
  for (const e of entries) {
    // An entry without its name (URI) cannot be judged: it is not shown (fail closed).
    if (!isObject(e) || typeof e[key] !== "string") continue;
    const v = judge(method, e[key], e);
    if (v === "drop") continue;
    if (v === "approval" || v === "maybe-approval")
      kept.push({
        ...e,
        description:
          `${typeof e.description === "string" ? e.description : ""}${v === "approval" ? APPROVAL_NOTE : MAYBE_APPROVAL_NOTE}`.trim(),
      });
    else kept.push(e);
  }
  message.result[field] = kept;
  return entries.length - kept.length;
}
