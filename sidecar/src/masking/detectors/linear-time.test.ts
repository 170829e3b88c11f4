// Adversarial 1 MB inputs: the shapes that make naive regexes backtrack (long runs of the
// characters a pattern accepts, repeated prefixes with no ending, many starts that almost match).
// Every detector runs over every input; the tests assert what is found, and finishing inside the
// default test timeout is the performance check (a quadratic scan of 1 MB would not).
import { describe, expect, it } from "vitest";
import { RULES } from "./catalogue/rules.generated.ts";
import { createDetectors, type DetectorId, findAll } from "./index.ts";

const MB = 1 << 20;
const detectors = [...createDetectors().values()];

const fill = (unit: string) => unit.repeat(Math.ceil(MB / unit.length)).slice(0, MB);
const repeat = (unit: string) => unit.repeat(Math.floor(MB / unit.length));

function summary(text: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const f of findAll(text, detectors)) counts[f.detector] = (counts[f.detector] ?? 0) + 1;
  return counts;
}

// [name, input, expected findings per detector]
const cases: [string, string, Partial<Record<DetectorId, number>>][] = [
  ["one letter", fill("a"), {}],
  ["local parts without domains", fill("a@"), {}],
  ["dots and at signs", fill(".@"), {}],
  ["one digit run", fill("4"), {}],
  ["digits and spaces", fill("1 "), {}],
  ["digits and dashes", fill("5-"), {}],
  ["phone punctuation", fill("+1 ("), {}],
  ["two-digit groups", fill("12 "), {}],
  ["seven-digit tokens", fill("1234567 "), {}],
  ["ten-digit tokens no US number can start with", fill("1234567890 "), {}],
  ["ten-digit tokens shaped like US numbers (each one a phone library call)", fill("2000000000 "), {}],
  ["colons", fill(":"), {}],
  ["hex and colons", fill("a:"), {}],
  ["dotted digits", fill("1."), {}],
  ["JWT prefixes", fill("eyJ"), {}],
  ["a JWT header and no dots", `eyJhbGciOiJub25lIn0${fill("A")}`, {}],
  ["BEGIN without a label", fill("-----BEGIN "), {}],
  ["scheme separators", fill("://"), {}],
  ["userinfo without @", fill("a://a:"), {}],
  ["a GitHub prefix and a long tail", `ghp_${fill("a")}`, {}],
  ["Slack prefixes", fill("xoxb-"), {}],
  ["AWS prefixes", fill("AKIA"), {}],
  ["IBAN heads", fill("DE89 "), {}],
  ["SSN labels", fill("SSN "), {}],
  ["SSN fragments", fill("123-45-"), {}],
  ["secret key labels", fill("aws_secret_access_key="), {}],
  ["password labels", fill("password="), {}],
  ["quoted password labels", fill('"password": "'), {}],
  ["labels in one long key", fill("secret_token_key_pass_"), {}],
  ["connection-string labels", fill("AccountKey="), {}],
  ["quoted local parts", fill('"a"@'), {}],
];

// Every keyword of the secret catalogue, so every rule runs over the whole megabyte.
const KEYWORDS = [...new Set(RULES.flatMap((r) => r.keywords))];
const catalogueCases: [string, string][] = [
  ["catalogue keywords back to back", fill(KEYWORDS.join(""))],
  [
    "catalogue keywords with long alphanumeric tails",
    fill(KEYWORDS.map((k) => `${k}${"aZ09".repeat(64)} `).join("")),
  ],
  ["catalogue keywords as labels", fill(KEYWORDS.map((k) => `${k}_api_key = "`).join(""))],
  ["catalogue keywords and separators", fill(KEYWORDS.map((k) => `${k}-_.=:'" \t`).join(""))],
];

describe("linear time on 1 MB adversarial inputs", () => {
  it.each(cases)("%s", (_name, text, expected) => {
    expect(summary(text)).toEqual(expected);
  });

  it.each(catalogueCases)("%s", (_name, text) => {
    const found = findAll(text, detectors);
    for (let i = 1; i < found.length; i++)
      expect((found[i - 1]?.end ?? 0) <= (found[i]?.start ?? 0)).toBe(true);
  });

  it("many real values", () => {
    const unit = "x@y.zz 4111 1111 1111 1111 213-373-4253 10.0.0.1 a://u:p@h ";
    const text = repeat(unit);
    const n = text.length / unit.length;
    expect(summary(text)).toEqual({ email: n, creditCard: n, phone: n, ipv4: n, urlCredentials: n });
  });

  it("an unterminated private key masks to the end, once", () => {
    const text = fill("-----BEGIN PRIVATE KEY-----\n");
    expect(findAll(text, detectors)).toEqual([{ start: 0, end: text.length, detector: "privateKey" }]);
  });

  it("random text from the characters patterns care about", () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const alphabet = "aAeyJ019 .-:@/_+()=\n";
    let text = "";
    for (let i = 0; i < MB; i++) text += alphabet[Math.floor(rand() * alphabet.length)];
    const found = findAll(text, detectors);
    for (let i = 1; i < found.length; i++)
      expect((found[i - 1]?.end ?? 0) <= (found[i]?.start ?? 0)).toBe(true);
  });
});
