import { beforeAll, describe, expect, it } from "vitest";
import { bindMessage, parseMessage } from "../../../../test/postgres/raw-client.ts";
import { classifySync, loadSqlParser } from "../../sql/index.ts";
import { notAloneReason, strayInApprovedBatch } from "./approved-run.ts";
import { describeMessage, executeMessage, message, T } from "./protocol.ts";

beforeAll(() => loadSqlParser());

const at = { txStatus: "I", unsynced: false, settingsChanged: false };
const statements = (sql: string) => classifySync(sql).statements;
const frame = (raw: Buffer) => ({ type: raw[0] as number, payload: raw.subarray(5) });

describe("what can run alone under an approved credential", () => {
  it("one write outside a transaction, in a Query or an unnamed Parse at a batch start", () => {
    expect(notAloneReason(statements("UPDATE t SET a = 1"), at)).toBeUndefined();
    expect(notAloneReason(statements("DELETE FROM t"), { ...at, parseName: "" })).toBeUndefined();
  });
  it.each([
    ["UPDATE t SET a = 1; COMMIT", at, /contains transaction/],
    ["UPDATE t SET a = 1; SET work_mem = '1MB'", at, /contains set/],
    ["PREPARE p AS UPDATE t SET a = 1", at, /prepares, declares or closes/],
    ["UPDATE t SET a = 1", { ...at, txStatus: "T" }, /outside BEGIN/],
    ["UPDATE t SET a = 1", { ...at, txStatus: "E" }, /outside BEGIN/],
    ["UPDATE t SET a = 1", { ...at, parseName: "s1" }, /unnamed statement/],
    ["UPDATE t SET a = 1", { ...at, parseName: "", unsynced: true }, /Sync before its Parse/],
    ["UPDATE t SET a = 1", { ...at, unsynced: true }, /not ended by Sync; send Sync before it/],
    ["UPDATE t SET a = 1", { ...at, copyOpen: true }, /COPY FROM STDIN of this session is still open/],
    ["UPDATE t SET a = 1", { ...at, transactionPending: true }, /transaction control before it/],
    ["UPDATE t SET a = 1", { ...at, settingsChanged: true }, /changed settings with SET/],
  ])("%s (%j) is refused", (sql, ctx, why) => {
    expect(notAloneReason(statements(sql), ctx)).toMatch(why);
  });
});

describe("messages inside an approved batch", () => {
  it("Bind, Describe, Execute and Close of the unnamed statement and portal, Flush, Sync pass", () => {
    for (const raw of [
      bindMessage("", "", []),
      describeMessage("P", ""),
      describeMessage("S", ""),
      executeMessage(""),
      message(T.Close, Buffer.from("S\0")),
      message(T.Flush),
      message(T.Sync),
    ])
      expect(strayInApprovedBatch(frame(raw))).toBeUndefined();
  });
  it("anything else is refused", () => {
    for (const raw of [
      parseMessage("", "SELECT 1"),
      bindMessage("p", "named", []),
      bindMessage("portal", "", []),
      executeMessage("other"),
      describeMessage("S", "named"),
      message(T.Query, Buffer.from("SELECT 1\0")),
    ])
      expect(strayInApprovedBatch(frame(raw))).toBeDefined();
  });
});
