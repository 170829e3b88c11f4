// The reply-matching state machine against a scripted backend (no server): which reply belongs to
// which forwarded message, what the agent receives byte for byte, when each operation ends, and
// that a reply that fits no expectation closes the session.
import { describe, expect, it } from "vitest";
import type { MaskingRule } from "../../../../api/src/index.ts";
import { createMemoryAuditSink } from "../../audit/sink.ts";
import { OperationLog } from "../../operations/lifecycle.ts";
import { resolveMasking } from "../../operations/masking.ts";
import { createMetrics } from "../../telemetry/metrics.ts";
import { BackendFramer } from "./framing.ts";
import { cstr, errorResponse, int16, int32, message, readyForQuery, T } from "./protocol.ts";
import { ReplyMatcher } from "./replies.ts";
import { ResultMasking } from "./results.ts";
import { createMaskState } from "./row-masking.ts";
import { type Op, SessionStatements } from "./statements.ts";

/** The response masking of plain rules, as the guard resolves it for connection "db". */
const maskState = (rules: MaskingRule[], key: Buffer) => createMaskState(resolveMasking(rules, "db", key));

const rowDescription = (...names: string[]) =>
  message(
    T.RowDescription,
    int16(names.length),
    ...names.flatMap((n) => [cstr(n), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0)]),
  );
const dataRow = (...values: string[]) =>
  message(
    T.DataRow,
    int16(values.length),
    ...values.flatMap((v) => {
      const b = Buffer.from(v, "utf8");
      return [int32(b.length), b];
    }),
  );
const commandComplete = (tag: string) => message(T.CommandComplete, cstr(tag));
const parseComplete = () => message(T.ParseComplete);
const bindComplete = () => message(T.BindComplete);

function setup(opts: { masking?: boolean } = {}) {
  const audit = createMemoryAuditSink();
  const metrics = createMetrics({ defaultMetrics: false });
  const logger = { error() {}, warn() {}, info() {} } as unknown as import("pino").Logger;
  const log = new OperationLog(
    { audit, metrics, logger },
    {
      session: "s",
      connection: "db",
      protocol: "postgres",
      identity: { serviceAccount: "sa" },
      failClosed: () => {
        throw new Error("audit failed");
      },
    },
  );
  const mask = opts.masking
    ? maskState([{ name: "cards", detectors: ["creditCard"], strategy: "redact" }], Buffer.alloc(32))
    : undefined;
  const agent: Buffer[] = [];
  const finished: Op[] = [];
  let fatal = false;
  const statements = new SessionStatements();
  const matcher = new ReplyMatcher({
    results: new ResultMasking(mask),
    statements,
    toAgent: (b) => agent.push(Buffer.from(b)),
    finish: (op) => {
      finished.push(op);
      op.rec.rows = op.tagged ? op.rows : op.dataRows;
      op.rec.finish();
    },
    countMasked: () => undefined,
    fatalPassed: () => {
      fatal = true;
    },
    closing: () => fatal,
    transactionEnded: () => {},
  });
  const back = new BackendFramer();
  const op = (): Op => ({
    rec: log.begin({ kind: "sql", statements: [] }).decide({ action: "allow", reason: "test" }),
    statements: [],
    decision: { action: "allow", reason: "test" },
    rows: 0,
    dataRows: 0,
    tagged: false,
  });
  const feed = (...msgs: Buffer[]) => {
    back.push(Buffer.concat(msgs));
    matcher.receive(back);
  };
  return { matcher, feed, agent, finished, audit, op, statements, isFatal: () => fatal };
}

describe("reply matching", () => {
  it("a simple query: rows pass byte for byte, the operation ends at ReadyForQuery", () => {
    const s = setup();
    const op = s.op();
    s.matcher.expect({ t: "query", op });
    const msgs = [rowDescription("a"), dataRow("1"), dataRow("2"), commandComplete("SELECT 2")];
    s.feed(...msgs);
    expect(s.finished).toEqual([]);
    s.feed(readyForQuery("I"));
    expect(s.finished).toEqual([op]);
    expect(Buffer.concat(s.agent)).toEqual(Buffer.concat([...msgs, readyForQuery("I")]));
    expect(s.audit.events).toHaveLength(1);
    expect(s.audit.events[0]).toMatchObject({ rows: 2 });
    expect(s.matcher.length).toBe(0);
  });

  it("replies split at any byte arrive whole and in order", () => {
    const s = setup();
    const op = s.op();
    s.matcher.expect({ t: "query", op });
    const all = Buffer.concat([
      rowDescription("a"),
      dataRow("x"),
      commandComplete("SELECT 1"),
      readyForQuery("T"),
    ]);
    for (let i = 0; i < all.length; i++) s.feed(all.subarray(i, i + 1));
    expect(Buffer.concat(s.agent)).toEqual(all);
    expect(s.finished).toEqual([op]);
    expect(s.matcher.txStatus).toBe("T");
  });

  it("after an error in the extended protocol, expectations up to Sync are dropped (skipped ops audited once)", () => {
    const s = setup();
    const exec = s.op();
    s.matcher.expect({ t: "parse" });
    s.matcher.expect({ t: "bind" });
    s.matcher.expect({ t: "execute", op: exec, portal: undefined });
    s.matcher.sync();
    s.feed(parseComplete(), errorResponse({ severity: "ERROR", code: "22P02", message: "bad input" }));
    expect(s.finished).toEqual([exec]);
    expect(exec.error).toBe("skipped");
    // While the server skips, nothing forwarded is answered; Sync ends the skipping.
    expect(s.matcher.serverSkipping).toBe(false);
    s.feed(readyForQuery("I"));
    expect(s.matcher.length).toBe(0);
    expect(s.audit.events).toHaveLength(1);
  });

  it("with nothing pending after an error, the server is known to skip until the next Sync", () => {
    const s = setup();
    const exec = s.op();
    s.matcher.expect({ t: "execute", op: exec, portal: undefined });
    s.feed(errorResponse({ severity: "ERROR", code: "42P01", message: "no such table" }));
    expect(exec.error).toBe("42P01");
    expect(s.matcher.serverSkipping).toBe(true);
    s.matcher.expect({ t: "bind" }); // not answered by the server: not expected
    expect(s.matcher.length).toBe(0);
    s.matcher.sync();
    expect(s.matcher.serverSkipping).toBe(false);
  });

  it("a denial's error replaces the server's own", () => {
    const s = setup();
    const ours = errorResponse({
      severity: "ERROR",
      code: "42501",
      message: "Airlock denied this statement",
    });
    s.matcher.expect({ t: "deny", error: ours });
    s.matcher.sync();
    s.feed(
      errorResponse({
        severity: "ERROR",
        code: "34000",
        message: 'portal "airlock_denied_x" does not exist',
      }),
    );
    s.feed(readyForQuery("I"));
    expect(Buffer.concat(s.agent)).toEqual(Buffer.concat([ours, readyForQuery("I")]));
  });

  it("a message that fits no expectation throws (the session closes rather than guess)", () => {
    const s = setup();
    s.matcher.expect({ t: "parse" });
    expect(() => s.feed(bindComplete())).toThrow(/does not fit the protocol state \(parse\)/);
    const idle = setup();
    expect(() => idle.feed(dataRow("leak"))).toThrow(/\(idle\)/);
  });

  it("notices and parameter status pass outside any expectation; FATAL ends the session", () => {
    const s = setup();
    const notice = message(T.NoticeResponse, cstr("SNOTICE"), cstr("C00000"), cstr("Mhello"), "\0");
    s.feed(notice);
    expect(s.agent).toEqual([notice]);
    s.matcher.expect({ t: "parse" });
    s.feed(errorResponse({ severity: "FATAL", code: "57P01", message: "terminating connection" }));
    expect(s.isFatal()).toBe(true);
  });

  it("rows are masked by the plan of their RowDescription; values no detector matches pass as they are", () => {
    const s = setup({ masking: true });
    const op = s.op();
    s.matcher.expect({ t: "query", op });
    s.feed(rowDescription("note"), dataRow("card 4111 1111 1111 1111"), dataRow("nothing here"));
    const text = Buffer.concat(s.agent).toString("latin1");
    expect(text).not.toContain("4111 1111 1111 1111");
    expect(text).toContain("nothing here");
    s.feed(commandComplete("SELECT 2"), readyForQuery("I"));
    expect(s.audit.events[0]?.masked).toEqual({ creditCard: 1 });
  });

  it("Execute rows with masking on and no known columns are refused", () => {
    const s = setup({ masking: true });
    s.matcher.expect({ t: "execute", op: s.op(), portal: { statements: [] } });
    expect(() => s.feed(dataRow("x"))).toThrow(/result columns unknown/);
  });

  it("a ReadyForQuery outside a transaction ends the bound portals", () => {
    const s = setup();
    s.statements.portals.set("p", { statement: undefined, statements: [] });
    s.statements.portals.set("bound", {
      statement: {
        statements: [],
        classification: { statements: [], errors: [], denials: [] },
        judgement: { decision: { action: "allow", reason: "" }, statements: [] },
        generation: 0,
      },
      statements: [],
    });
    s.matcher.sync();
    s.feed(readyForQuery("I"));
    expect([...s.statements.portals.keys()]).toEqual(["p"]);
  });
});
