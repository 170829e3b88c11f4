import { beforeAll, describe, expect, it } from "vitest";
import { classifySync, loadSqlParser } from "../sql/index.ts";
import { type CoveredData, copiedCoveredColumn } from "./sql.ts";

beforeAll(() => loadSqlParser());

const covered: CoveredData = {
  columns: new Set(["card_number", "email"]),
  userFunctions: new Set(["lookup"]),
  coveredRelations: new Set(["contacts"]),
};
const copied = (sql: string) =>
  classifySync(sql)
    .statements.map((s) => copiedCoveredColumn(s, covered))
    .find((c) => c !== undefined);

describe("copiedCoveredColumn", () => {
  it.each([
    ["INSERT INTO n (b) SELECT card_number FROM c", "card_number"],
    ["INSERT INTO n (b) SELECT lower(email) FROM c", "email"],
    ["INSERT INTO n SELECT card_number FROM c", "card_number"],
    ["INSERT INTO n (b) SELECT r::text FROM c r", "card_number"],
    ["INSERT INTO n (b) SELECT lookup(id) FROM c", "card_number"],
    ["INSERT INTO n (b) SELECT payment FROM contacts", "card_number"],
    ["UPDATE c SET name = email", "email"],
    ["UPDATE c SET (name, x) = (SELECT email, 1)", "email"],
    ["ALTER TABLE c RENAME COLUMN email TO e", "email"],
    ["CREATE TABLE t AS SELECT email AS e FROM c", "email"],
    ["WITH s AS (SELECT email e FROM c) INSERT INTO n (b) SELECT e FROM s", "email"],
  ])("%s stores %s", (sql, column) => {
    expect(copied(sql)).toBe(column);
  });

  it.each([
    "INSERT INTO n (b) VALUES ('x')",
    "INSERT INTO n (b) SELECT name FROM c WHERE email = 'a@b'",
    "UPDATE c SET email = lower(email)",
    "UPDATE c SET name = 'x' WHERE card_number = '1'",
    "INSERT INTO a (id, card_number) SELECT id, card_number FROM c",
    "CREATE TABLE t AS SELECT id, email FROM c",
    "ALTER TABLE c RENAME COLUMN name TO label",
    "SELECT email FROM c",
    "DELETE FROM c WHERE email = 'a@b'",
  ])("%s stores no covered value under another name", (sql) => {
    expect(copied(sql)).toBeUndefined();
  });
});
