// RFC 6902 JSON Patch between two JSON documents: what the admission response carries. Arrays
// that only grew at the end get `add`s; other changed arrays are replaced whole, which keeps the
// patch exact whatever the API server's other mutators did to the elements.

export type JsonPatchOp =
  | { op: "add"; path: string; value: unknown }
  | { op: "replace"; path: string; value: unknown }
  | { op: "remove"; path: string };

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function escapePointer(token: string): string {
  return token.replaceAll("~", "~0").replaceAll("/", "~1");
}

function unescapePointer(token: string): string {
  return token.replaceAll("~1", "/").replaceAll("~0", "~");
}

export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => jsonEqual(a[k], b[k]));
  }
  return false;
}

/** Strips `undefined` the way JSON.stringify would, so patches carry only JSON values. */
function plain(v: unknown): unknown {
  return v === undefined ? null : JSON.parse(JSON.stringify(v));
}

/** The operations that turn `from` into `to`. */
export function createPatch(from: unknown, to: unknown, path = ""): JsonPatchOp[] {
  if (jsonEqual(from, to)) return [];
  if (isObject(from) && isObject(to)) {
    const ops: JsonPatchOp[] = [];
    for (const k of Object.keys(from))
      if (from[k] !== undefined && to[k] === undefined)
        ops.push({ op: "remove", path: `${path}/${escapePointer(k)}` });
    for (const k of Object.keys(to)) {
      if (to[k] === undefined) continue;
      const p = `${path}/${escapePointer(k)}`;
      if (from[k] === undefined) ops.push({ op: "add", path: p, value: plain(to[k]) });
      else ops.push(...createPatch(from[k], to[k], p));
    }
    return ops;
  }
  if (Array.isArray(from) && Array.isArray(to) && path !== "") {
    if (to.length >= from.length && from.every((v, i) => jsonEqual(v, to[i])))
      return to.slice(from.length).map((value, i) => ({
        op: "add" as const,
        path: `${path}/${from.length + i}`,
        value: plain(value),
      }));
    if (to.length === from.length) return from.flatMap((v, i) => createPatch(v, to[i], `${path}/${i}`));
  }
  return [{ op: "replace", path, value: plain(to) }];
}

/** Applies add/replace/remove (enough to check our own patches); returns a new document. */
export function applyPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  let root: unknown = structuredClone(doc);
  for (const op of ops) {
    if (op.path === "") {
      if (op.op === "remove") throw new Error("cannot remove the root");
      root = structuredClone(op.value);
      continue;
    }
    const tokens = op.path.slice(1).split("/").map(unescapePointer);
    const last = tokens.pop() ?? "";
    let parent: unknown = root;
    for (const t of tokens) {
      parent = Array.isArray(parent) ? parent[Number(t)] : isObject(parent) ? parent[t] : undefined;
      if (parent === undefined) throw new Error(`path ${op.path} does not exist`);
    }
    if (Array.isArray(parent)) {
      const i = last === "-" ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new Error(`bad index in ${op.path}`);
      if (op.op === "add") parent.splice(i, 0, structuredClone(op.value));
      else if (op.op === "replace") parent[i] = structuredClone(op.value);
      else parent.splice(i, 1);
    } else if (isObject(parent)) {
      if (op.op !== "add" && !(last in parent)) throw new Error(`path ${op.path} does not exist`);
      if (op.op === "remove") delete parent[last];
      else parent[last] = structuredClone(op.value);
    } else throw new Error(`path ${op.path} does not exist`);
  }
  return root as T;
}
