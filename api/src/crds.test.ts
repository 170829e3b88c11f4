import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { crds } from "./crds.ts";
import { renderCrd } from "./render.ts";

type Node = Record<string, unknown>;

/** Every schema node with its path, for structural checks. */
function* walk(node: Node, path: string): Generator<[string, Node]> {
  yield [path, node];
  const props = node.properties as Record<string, Node> | undefined;
  for (const [key, child] of Object.entries(props ?? {})) yield* walk(child, `${path}.${key}`);
  if (node.items) yield* walk(node.items as Node, `${path}[]`);
  if (typeof node.additionalProperties === "object")
    yield* walk(node.additionalProperties as Node, `${path}{}`);
}

const schemaOf = (crd: (typeof crds)[number]) =>
  (crd.spec as { versions: { schema: { openAPIV3Schema: Node } }[] }).versions[0]?.schema
    .openAPIV3Schema as Node;

describe.each(crds.map((c) => [(c.metadata as { name: string }).name, c] as const))("%s", (_name, crd) => {
  it("matches the checked-in YAML in crds/ (run `npm run generate` after changing api/src)", () => {
    const { file, text } = renderCrd(crd);
    expect(readFileSync(new URL(`../../crds/${file}`, import.meta.url), "utf8")).toBe(text);
  });

  it("is structural: every node has a type and uses no unsupported keywords", () => {
    for (const [path, node] of walk(schemaOf(crd), "")) {
      expect(node.type, `${path} has no type`).toBeTypeOf("string");
      for (const banned of ["anyOf", "oneOf", "allOf", "not", "const", "patternProperties", "$id", "$ref"]) {
        expect(node[banned], `${path} uses ${banned}`).toBeUndefined();
      }
    }
  });

  it("describes every field so that kubectl explain teaches the API", () => {
    for (const [path, node] of walk(schemaOf(crd), "")) {
      if (path === ".metadata") continue;
      expect(
        typeof node.description === "string" && node.description.length > 3,
        `${path} has no description`,
      ).toBe(true);
    }
  });

  it("bounds every list and string that CEL rules read, so the API server can estimate their cost", () => {
    for (const [path, node] of walk(schemaOf(crd), "")) {
      if (node.type === "array") expect(node.maxItems, `${path} has no maxItems`).toBeTypeOf("number");
      if (
        node.type === "string" &&
        !node.enum &&
        !node.format &&
        path !== ".apiVersion" &&
        path !== ".kind"
      ) {
        expect(node.maxLength, `${path} has no maxLength`).toBeTypeOf("number");
      }
    }
  });
});
