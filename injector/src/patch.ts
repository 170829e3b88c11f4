// The admission response's RFC 6902 JSON Patch; rfc6902 computes (and escapes) it. Arrays that
// only grew at the end get `add`s and arrays of unchanged length are diffed element by element;
// any other changed array is replaced whole, so that a patch never turns one of the pod's own init
// containers into ours field by field (correct, but unreadable in the API server's audit log).
import { createPatch, type Operation } from "rfc6902";

export type JsonPatch = Operation[];

export function podPatch(from: unknown, to: unknown): JsonPatch {
  return createPatch(from, to, (input, output, ptr) => {
    if (!Array.isArray(input) || !Array.isArray(output) || input.length === output.length) return;
    if (output.length > input.length && input.every((v, i) => createPatch(v, output[i]).length === 0)) return;
    return [{ op: "replace", path: ptr.toString(), value: output }];
  });
}
