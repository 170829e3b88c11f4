import { describe, expect, it } from "vitest";
import { createSseAnswerFilter, inspectJsonAnswer, type Message, type MessageInspector } from "./answers.ts";
import { filterMessage, type Judge, type ListMethod } from "./list-filter.ts";

const b = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v));

describe("list answers", () => {
  const verdict: Judge = (_m, t) => (t === "a" ? "keep" : t === "b" ? "approval" : "drop");
  const lists = (id: number, m: ListMethod = "tools/list") => new Map<number, ListMethod>([[id, m]]);
  const filter =
    (ids: Map<number, ListMethod>, judge = verdict): MessageInspector =>
    (m) => {
      filterMessage(m, ids, judge);
      return m;
    };
  const answer = {
    jsonrpc: "2.0",
    id: 7,
    result: { tools: [{ name: "a" }, { name: "b", description: "B" }, { name: "c" }, {}] },
  };
  it("filters a JSON answer", () => {
    const out = JSON.parse(inspectJsonAnswer(b(answer), filter(lists(7))).toString());
    expect(out.result.tools).toEqual([{ name: "a" }, { name: "b", description: "B (requires approval)" }]);
  });
  it("filters an SSE answer event by event, keeping event fields, however it is chunked", () => {
    const sse = `event: message\nid: 1\ndata: ${JSON.stringify(answer)}\n\n: keepalive\n\n`;
    for (const size of [1, 7, sse.length]) {
      const f = createSseAnswerFilter(filter(lists(7)), 1 << 20);
      let out = "";
      for (let i = 0; i < sse.length; i += size) out += f.push(sse.slice(i, i + size));
      out += f.end();
      expect(out.startsWith("event: message\nid: 1\ndata: ")).toBe(true);
      expect(JSON.parse(out.split("data: ")[1]?.split("\n")[0] ?? "").result.tools).toHaveLength(2);
      expect(out.endsWith("\n\n: keepalive\n\n")).toBe(true);
    }
  });
  it("leaves answers to other ids alone; refuses what it cannot read", () => {
    const out = JSON.parse(inspectJsonAnswer(b(answer), filter(lists(8))).toString());
    expect(out.result.tools).toHaveLength(4);
    expect(() => inspectJsonAnswer(b("{"), filter(lists(7)))).toThrow(/not JSON/);
    expect(() => inspectJsonAnswer(b("[1, 2]"), filter(lists(7)))).toThrow(/nothing Airlock could relay/);
  });
  it("judges templates by their URI template", () => {
    const seen: string[] = [];
    const judge: Judge = (m, k) => {
      seen.push(`${m} ${k}`);
      return k.includes("secret") ? "drop" : "keep";
    };
    const msg = {
      jsonrpc: "2.0",
      id: 3,
      result: {
        resourceTemplates: [{ uriTemplate: "file:///docs/{name}" }, { uriTemplate: "file:///secret/{k}" }],
      },
    };
    const out = JSON.parse(
      inspectJsonAnswer(b(msg), filter(lists(3, "resources/templates/list"), judge)).toString(),
    );
    expect(out.result.resourceTemplates).toEqual([{ uriTemplate: "file:///docs/{name}" }]);
    expect(seen).toEqual([
      "resources/templates/list file:///docs/{name}",
      "resources/templates/list file:///secret/{k}",
    ]);
  });
});

describe("SSE answers", () => {
  const dropRequests: MessageInspector = (m: Message) => ("method" in m && "id" in m ? undefined : m);
  it("drops events the inspector drops, and events whose data is not JSON", () => {
    const dropped: string[] = [];
    const f = createSseAnswerFilter(dropRequests, 1 << 20, () => dropped.push("x"));
    const req = { jsonrpc: "2.0", id: 0, method: "sampling/createMessage", params: {} };
    const note = { jsonrpc: "2.0", method: "notifications/progress", params: {} };
    const out =
      f.push(
        `event: message\ndata: ${JSON.stringify(req)}\n\ndata: NaN\n\ndata: ${JSON.stringify(note)}\n\n`,
      ) + f.end();
    expect(out).toBe(`data: ${JSON.stringify(note)}\n\n`);
    expect(dropped).toHaveLength(2);
  });
  it("filters batches inside one event, and never relays an unterminated last event", () => {
    const f = createSseAnswerFilter(dropRequests, 1 << 20);
    const res = { jsonrpc: "2.0", id: 1, result: {} };
    const req = { jsonrpc: "2.0", id: 0, method: "roots/list" };
    expect(f.push(`data: ${JSON.stringify([req, res])}\n\ndata: ${JSON.stringify(res)}`) + f.end()).toBe(
      `data: ${JSON.stringify([res])}\n\n`,
    );
  });
  it("refuses an event larger than its bound", () => {
    const f = createSseAnswerFilter(dropRequests, 100);
    expect(() => f.push(`data: "${"x".repeat(200)}`)).toThrow(/larger than 100 bytes/);
  });
});
