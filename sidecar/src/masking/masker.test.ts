import { describe, expect, it } from "vitest";
import { parseJsonLossless } from "./json.ts";
import { createMasker, MAX_JSON_DEPTH, MaskingError, type MaskingRule } from "./masker.ts";
import { hashValue } from "./strategies.ts";

const KEY = Buffer.alloc(32, 3);
const masker = (rules: MaskingRule[]) => createMasker({ rules, hashKey: KEY });
const ALL: MaskingRule = { name: "pii", detectors: ["all"], strategy: "redact" };

const CARD = "4111111111111111";
const SSN = "123-45-6789";
const EMAIL = "jane@example.com";
const RSA = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----";

describe("maskText", () => {
  it("replaces every finding and reports detector and rule, never the value", () => {
    const m = masker([ALL]);
    const r = m.maskText(`card ${CARD}, ssn ${SSN}, mail ${EMAIL}\n${RSA}\nbye`);
    expect(r.text).toBe(
      "card [REDACTED:creditCard], ssn [REDACTED:usSsn], mail [REDACTED:email]\n[REDACTED:privateKey]\nbye",
    );
    expect(r.findings).toEqual([
      { detector: "creditCard", family: "visa", rule: "pii" },
      { detector: "usSsn", rule: "pii" },
      { detector: "email", rule: "pii" },
      { detector: "privateKey", rule: "pii" },
    ]);
    const serialized = JSON.stringify(r.findings);
    for (const secret of [CARD, SSN, EMAIL, "MIIE"]) expect(serialized).not.toContain(secret);
  });

  it("uses the strategy of the first rule naming a detector", () => {
    const m = masker([
      { name: "cards", detectors: ["creditCard"], strategy: "partial" },
      { name: "hashed", detectors: ["all"], strategy: "hash" },
    ]);
    const r = m.maskText(`${CARD} ${EMAIL}`);
    expect(r.text).toBe(`************1111 ${hashValue(EMAIL, KEY)}`);
    expect(r.findings.map((f) => f.rule)).toEqual(["cards", "hashed"]);
  });

  it("only runs the detectors rules name", () => {
    const m = masker([{ name: "mail", detectors: ["email"], strategy: "redact" }]);
    expect(m.maskText(`${CARD} ${EMAIL}`).text).toBe(`${CARD} [REDACTED:email]`);
    expect(m.textDetectors).toEqual(["email"]);
  });

  it("passes text through untouched without detector rules", () => {
    const m = masker([{ name: "f", fields: ["$.a"], strategy: "redact" }]);
    expect(m.maskText(`${CARD}`)).toEqual({ text: CARD, findings: [] });
    expect(m.hasRules()).toBe(true);
    expect(masker([]).hasRules()).toBe(false);
  });

  it("honours the phone default country", () => {
    const text = "ring 020 7946 0958";
    const us = createMasker({ rules: [ALL], hashKey: KEY });
    const gb = createMasker({ rules: [ALL], hashKey: KEY, phoneDefaultCountry: "GB" });
    expect(us.maskText(text).text).toBe(text);
    expect(gb.maskText(text).text).toBe("ring [REDACTED:phone]");
  });
});

describe("maskJson", () => {
  const doc = {
    user: { name: "Jane", email: EMAIL, password: "hunter2", note: `card ${CARD} on file` },
    items: [
      { sku: "A-1", ssn: SSN },
      { sku: "B-2", ssn: "unknown" },
    ],
    nested: { deeper: { password: { old: "x", new: "y" } } },
    count: 3,
    ok: true,
    none: null,
  };

  it("masks fields by path and runs detectors on every other string", () => {
    const m = masker([
      ALL,
      { name: "secrets", fields: ["$..password", "$.items[*].ssn"], strategy: "redact" },
    ]);
    const r = m.maskJson(doc);
    expect(r.value).toEqual({
      user: {
        name: "Jane",
        email: "[REDACTED:email]",
        password: "[REDACTED]",
        note: "card [REDACTED:creditCard] on file",
      },
      items: [
        { sku: "A-1", ssn: "[REDACTED]" },
        { sku: "B-2", ssn: "[REDACTED]" },
      ],
      nested: { deeper: { password: "[REDACTED]" } },
      count: 3,
      ok: true,
      none: null,
    });
    expect(r.findings).toEqual([
      { detector: "email", rule: "pii", path: "$.user.email" },
      { detector: "field", rule: "secrets", path: "$.user.password" },
      { detector: "creditCard", family: "visa", rule: "pii", path: "$.user.note" },
      { detector: "field", rule: "secrets", path: "$.items[0].ssn" },
      { detector: "field", rule: "secrets", path: "$.items[1].ssn" },
      { detector: "field", rule: "secrets", path: "$.nested.deeper.password" },
    ]);
  });

  it("applies partial and hash to whole fields", () => {
    const m = masker([
      { name: "p", fields: ["$.user.email"], strategy: "partial" },
      { name: "h", fields: ["$.items[0].ssn", "$.nested"], strategy: "hash" },
    ]);
    const v = m.maskJson(doc).value as typeof doc;
    expect(v.user.email).toBe("****@******e.com");
    expect(v.items[0]?.ssn).toBe(hashValue(SSN, KEY));
    expect(v.nested).toBe(hashValue(JSON.stringify(doc.nested), KEY));
  });

  it("does not modify its input and shares unchanged subtrees", () => {
    const before = structuredClone(doc);
    const m = masker([ALL]);
    const r = m.maskJson(doc);
    expect(doc).toEqual(before);
    const v = r.value as typeof doc;
    expect(v).not.toBe(doc);
    expect(v.items).not.toBe(doc.items); // items[0] holds an SSN
    expect(v.items[1]).toBe(doc.items[1]);
    expect(v.nested).toBe(doc.nested);
    expect(m.maskJson(doc.nested).value).toBe(doc.nested);
  });

  it("masks numbers whose whole decimal string is sensitive", () => {
    const m = masker([ALL]);
    const r = m.maskJson({
      card: 4111111111111111,
      ssn: 123456789,
      ssns: [234567890],
      id: 123456789,
      n: 42,
      phone: 2133734253,
      orderId: 2133734253,
    });
    expect(r.value).toEqual({
      card: "[REDACTED:creditCard]",
      ssn: "[REDACTED:usSsn]",
      ssns: ["[REDACTED:usSsn]"],
      id: 123456789,
      n: 42,
      phone: "[REDACTED:phone]",
      orderId: 2133734253,
    });
    expect(r.findings.map((f) => f.path)).toEqual(["$.card", "$.ssn", "$.ssns[0]", "$.phone"]);
  });

  it("sees the exact digits of numbers a double cannot hold (parseJsonLossless)", () => {
    const m = masker([ALL]);
    const card19 = "6211111111111111116"; // Luhn-valid; as a double it rounds and fails Luhn
    const lossless = parseJsonLossless(`{"card": ${card19}, "big": 12345678901234567890, "f": 1.50}`);
    const r = m.maskJson(lossless);
    expect(JSON.stringify(r.value)).toBe(
      '{"card":"[REDACTED:creditCard]","big":12345678901234567890,"f":1.50}',
    );
    expect(JSON.stringify(m.maskJson(JSON.parse(`{"card": ${card19}}`)).value)).not.toContain("REDACTED");
  });

  it("never masks keys, and keeps sensitive-looking keys out of finding paths", () => {
    const m = masker([ALL]);
    const r = m.maskJson({ [EMAIL]: { phone: "+1 213 373 4253" } });
    expect(Object.keys(r.value as object)).toEqual([EMAIL]);
    expect(r.findings).toEqual([{ detector: "phone", rule: "pii", path: "$['[REDACTED]'].phone" }]);
  });

  it("keeps a __proto__ key as data", () => {
    const m = masker([ALL]);
    const input = JSON.parse(`{"__proto__": {"email": "${EMAIL}"}, "a": 1}`);
    const v = m.maskJson(input).value as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.keys(v)).toEqual(["__proto__", "a"]);
    expect(JSON.stringify(v)).toBe('{"__proto__":{"email":"[REDACTED:email]"},"a":1}');
  });

  it("masks the root when a field rule names $", () => {
    expect(masker([{ name: "all", fields: ["$"], strategy: "redact" }]).maskJson({ a: 1 })).toEqual({
      value: "[REDACTED]",
      findings: [{ detector: "field", rule: "all", path: "$" }],
    });
  });

  it("refuses JSON nested deeper than MAX_JSON_DEPTH", () => {
    let deep: unknown = "x";
    for (let i = 0; i <= MAX_JSON_DEPTH + 1; i++) deep = [deep];
    expect(() => masker([ALL]).maskJson(deep)).toThrow(MaskingError);
  });
});

describe("maskColumn", () => {
  const m = masker([
    ALL,
    { name: "cols", columns: ["SSN", "password_hash"], strategy: "redact" },
    { name: "hashed", columns: ["customer_email"], strategy: "hash" },
  ]);

  it("masks named columns whole, case-insensitively", () => {
    expect(m.maskColumn("ssn", "anything")).toEqual({
      value: "[REDACTED]",
      findings: [{ detector: "column", rule: "cols", column: "ssn" }],
    });
    expect(m.maskColumn("Password_Hash", "$2b$10$abc").value).toBe("[REDACTED]");
    expect(m.maskColumn("customer_email", EMAIL).value).toBe(hashValue(EMAIL, KEY));
  });

  it("runs detectors on other columns, with the column name as context", () => {
    expect(m.maskColumn("notes", `call me at ${EMAIL}`)).toEqual({
      value: "call me at [REDACTED:email]",
      findings: [{ detector: "email", rule: "pii", column: "notes" }],
    });
    expect(m.maskColumn("tax_ssn", "123456789").value).toBe("[REDACTED:usSsn]");
    expect(m.maskColumn("order_no", "123456789").value).toBe("123456789");
  });
});

describe("configuration", () => {
  it.each<[string, MaskingRule[], RegExp]>([
    [
      "unknown detector",
      [{ name: "r", detectors: ["email", "ssn" as "email"], strategy: "redact" }],
      /unknown detector "ssn"/,
    ],
    [
      "unknown strategy",
      [{ name: "r", detectors: ["email"], strategy: "drop" as "redact" }],
      /unknown strategy/,
    ],
    ["empty rule", [{ name: "r", strategy: "redact" }], /needs detectors, fields or columns/],
    ["bad path", [{ name: "r", fields: ["user.email"], strategy: "redact" }], /invalid JSON path/],
    ["no name", [{ name: "", detectors: ["email"], strategy: "redact" }], /needs a name/],
  ])("rejects %s", (_what, rules, message) => {
    expect(() => masker(rules)).toThrow(message);
  });

  it("defaults a missing strategy to redact, as the CRD does", () => {
    const rule = { name: "r", detectors: ["email"] } as unknown as MaskingRule;
    expect(masker([rule]).maskText(EMAIL).text).toBe("[REDACTED:email]");
  });

  it("requires a real hash key", () => {
    expect(() => createMasker({ rules: [ALL], hashKey: Buffer.alloc(8) })).toThrow(/at least 16 bytes/);
  });
});
