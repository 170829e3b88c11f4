// Small readers of libpg-query's JSON parse tree, shared by the classifier's modules.

export type Node = Record<string, unknown>;

export const isObj = (v: unknown): v is Node => typeof v === "object" && v !== null && !Array.isArray(v);
export const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export function stringList(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  const out: string[] = [];
  for (const item of v) {
    if (isObj(item) && isObj(item.String)) out.push(str(item.String.sval) ?? "");
  }
  return out;
}
