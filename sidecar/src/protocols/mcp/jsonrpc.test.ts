import { describe, expect, it } from "vitest";
import { parseMcpBody } from "./jsonrpc.ts";
import { filterBody, type Judge, type ListMethod } from "./list-filter.ts";

const b = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v));

describe("parseMcpBody", () => {
  it("turns requests into operations and counts notifications and responses", () => {
    const r = parseMcpBody(
      b([
        { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "t", arguments: { a: 1 } } },
        { jsonrpc: "2.0", id: "x", method: "resources/read", params: { uri: "file:///a" } },
        { jsonrpc: "2.0", id: 3, method: "prompts/get", params: { name: "p" } },
        { jsonrpc: "2.0", method: "notifications/initialized" },
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 4 } },
        { jsonrpc: "2.0", id: 9, result: {} },
      ]),
    );
    expect(r).toEqual({
      ok: true,
      batch: true,
      others: 3,
      cancelled: [4],
      requests: [
        { id: 1, operation: { kind: "mcp", method: "tools/call", tool: "t" }, arguments: { a: 1 } },
        { id: "x", operation: { kind: "mcp", method: "resources/read", resource: "file:///a" } },
        { id: 3, operation: { kind: "mcp", method: "prompts/get", prompt: "p" } },
      ],
    });
  });
  it.each([
    ["{", -32700],
    ["[]", -32600],
    [JSON.stringify({ jsonrpc: "1.0", id: 1, method: "x" }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: {}, method: "x" }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: "delete" }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: 1 }), -32600],
  ])("%s is refused with %i", (text, code) => {
    const r = parseMcpBody(b(text));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.code).toBe(code);
  });
});

describe("filterBody", () => {
  const verdict: Judge = (_m, t) => (t === "a" ? "keep" : t === "b" ? "approval" : "drop");
  const tools = (id: number) => new Map<number, ListMethod>([[id, "tools/list"]]);
  const answer = {
    jsonrpc: "2.0",
    id: 7,
    result: { tools: [{ name: "a" }, { name: "b", description: "B" }, { name: "c" }, {}] },
  };
  it("filters a JSON answer", () => {
    const out = filterBody("application/json", b(answer), tools(7), verdict);
    expect(out.removed).toBe(2);
    expect(JSON.parse(out.body.toString()).result.tools).toEqual([
      { name: "a" },
      { name: "b", description: "B (requires approval)" },
    ]);
  });
  it("filters an SSE answer, keeping event fields", () => {
    const sse = `event: message\nid: 1\ndata: ${JSON.stringify(answer)}\n\n`;
    const out = filterBody("text/event-stream", b(sse), tools(7), verdict).body.toString();
    expect(out.startsWith("event: message\nid: 1\ndata: ")).toBe(true);
    expect(JSON.parse(out.split("data: ")[1]?.split("\n")[0] ?? "").result.tools).toHaveLength(2);
  });
  it("leaves answers to other ids alone and refuses what it cannot read", () => {
    expect(filterBody("application/json", b(answer), tools(8), verdict).removed).toBe(0);
    expect(() => filterBody("text/plain", b("x"), tools(7), verdict)).toThrow(/text\/plain/);
    expect(() => filterBody("application/json", b("{"), tools(7), verdict)).toThrow(/not JSON/);
  });
});

describe("filterBody on resources and prompts", () => {
  it("judges resources by URI and prompts by name", () => {
    const seen: string[] = [];
    const judge: Judge = (m, k) => {
      seen.push(`${m} ${k}`);
      return k.endsWith("secret") ? "drop" : "keep";
    };
    const ids = new Map<number, ListMethod>([
      [1, "resources/list"],
      [2, "prompts/list"],
    ]);
    const answers = [
      {
        jsonrpc: "2.0",
        id: 1,
        result: { resources: [{ uri: "file:///a" }, { uri: "file:///secret" }, { name: "x" }] },
      },
      { jsonrpc: "2.0", id: 2, result: { prompts: [{ name: "p" }, { name: "psecret" }] } },
    ];
    const out = filterBody("application/json", b(answers), ids, judge);
    expect(out.removed).toBe(3);
    expect(JSON.parse(out.body.toString())).toEqual([
      { jsonrpc: "2.0", id: 1, result: { resources: [{ uri: "file:///a" }] } },
      { jsonrpc: "2.0", id: 2, result: { prompts: [{ name: "p" }] } },
    ]);
    expect(seen).toEqual([
      "resources/list file:///a",
      "resources/list file:///secret",
      "prompts/list p",
      "prompts/list psecret",
    ]);
  });
});
