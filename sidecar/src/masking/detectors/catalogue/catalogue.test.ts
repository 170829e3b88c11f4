// The generated catalogue is exactly what compile.ts makes of the vendored gitleaks release, and
// the RE2 → JavaScript translation keeps each construct's meaning.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createSecretCatalogue } from "../secret-catalogue.ts";
import {
  compileGitleaks,
  EXCLUDED,
  exampleOf,
  parseGitleaksToml,
  renderCatalogue,
  translateRegex,
  UNBOUNDED_MAX,
} from "./compile.ts";
import { RULES, SKIPPED, SOURCE } from "./rules.generated.ts";

const read = (name: string) => readFileSync(new URL(name, import.meta.url), "utf8");
const toml = read("gitleaks.toml");

describe("secret catalogue source", () => {
  it("rules.generated.ts is regenerated from the vendored gitleaks.toml of the recorded version", () => {
    const sha256 = createHash("sha256").update(toml).digest("hex");
    const version = read("VERSION").trim();
    expect(SOURCE).toEqual({ name: "gitleaks", version, sha256 });
    // Fails after editing compile.ts or gitleaks.toml until update.ts has been run.
    expect(read("rules.generated.ts")).toBe(renderCatalogue(toml, version, sha256));
  });

  it("compiles nearly every gitleaks rule, and says why for the rest", () => {
    const total = [...toml.matchAll(/^\[\[rules\]\]$/gm)].length;
    expect(RULES.length + SKIPPED.length).toBe(total);
    expect(RULES.length).toBeGreaterThanOrEqual(200);
    for (const id of Object.keys(EXCLUDED)) expect(SKIPPED.map((s) => s.id)).toContain(id);
    for (const r of RULES) {
      expect(r.keywords.length, r.id).toBeGreaterThan(0);
      expect(() => new RegExp(r.pattern, "dg"), r.id).not.toThrow();
      expect(r.maxLength, r.id).toBeLessThanOrEqual(16 * 1024);
    }
  });

  it("names the services the issue called out", () => {
    const ids = RULES.map((r) => r.id);
    for (const id of [
      "anthropic-api-key",
      "anthropic-admin-api-key",
      "openai-api-key",
      "stripe-access-token",
      "gcp-api-key",
      "gitlab-pat",
      "npm-access-token",
      "slack-app-token",
      "sendgrid-api-token",
      "vault-service-token",
      "twilio-api-key",
      "digitalocean-pat",
    ])
      expect(ids).toContain(id);
  });
});

describe("RE2 to JavaScript", () => {
  const js = (go: string) => translateRegex(go).js;
  const matches = (go: string, text: string) => new RegExp(js(go)).test(text);

  it("(?i) applies to the rest of its group, including later alternatives", () => {
    // Spelled out, not as a JS modifier group: V8 13.6 drops (?i:) in later alternatives.
    expect(js("(?i:x|[nr])")).toBe("(?:[xX]|[NRnr])");
    expect(matches("^(?i:x|[nr])$", "N")).toBe(true);
    expect(matches("^(?i)[^a-c]$", "B")).toBe(false);
    expect(matches("^(?i)[a-z_-]$", "Q")).toBe(true);
    expect(js("\\b(p8e-(?i)[a-z0-9]{4})")).toBe("\\b(p8e-[A-Za-z0-9]{4})");
    expect(matches("\\b(p8e-(?i)[a-z0-9]{4})$", "p8e-AB12")).toBe(true);
    expect(matches("\\b(p8e-(?i)[a-z0-9]{4})$", "P8E-ab12")).toBe(false);
    expect(matches("^(?:(?i)ab|cd)$", "CD")).toBe(true);
    expect(matches("^(?:ab|(?i)cd)$", "AB")).toBe(false);
    expect(matches("^(?i)x(?-i:Y)$", "XY")).toBe(true);
    expect(matches("^(?i)x(?-i:Y)$", "Xy")).toBe(false);
  });

  it("spells out POSIX classes, maps \\z, and bounds unbounded repetition", () => {
    expect(js("[[:alnum:]]{2}\\z")).toBe("[A-Za-z0-9]{2}$");
    expect(js("a+b*c{3,}")).toBe(`a{1,${UNBOUNDED_MAX}}b{0,${UNBOUNDED_MAX}}c{3,${UNBOUNDED_MAX}}`);
    expect(translateRegex("ab{2,5}(?:cd)?").maxLength).toBe(8);
  });

  it("drops the semi-generic rules' leading variable-name run", () => {
    expect(js("(?i)[\\w.-]{0,50}?(?:foo)=([a-z]{4})")).toBe("(?:[fF][oO][oO])=([A-Za-z]{4})");
  });

  it("knows when a secret can span lines", () => {
    expect(translateRegex("key=([a-z\\s]{4})").secretSpansLines).toBe(true);
    expect(translateRegex("key\\s*=([a-z]{4})").secretSpansLines).toBe(false);
    expect(translateRegex("(?s:.){0,4}", 0).secretSpansLines).toBe(true);
    expect(translateRegex("([^;]{4})").secretSpansLines).toBe(true);
    expect(translateRegex("([^;\\n]{4})").secretSpansLines).toBe(false);
  });

  it("refuses syntax it cannot carry over", () => {
    expect(() => translateRegex("\\Qa.b\\E")).toThrow(/unsupported escape/);
    expect(() => translateRegex("(?m)^a")).toThrow(/only the i flag/);
    expect(() => translateRegex("(a")).toThrow(/unclosed group/);
  });

  it("compileGitleaks keeps keywords lower case and skips path-only rules", () => {
    const c = compileGitleaks(`[[rules]]
id = "x-token"
regex = '''\\b(XTOK_[A-Z0-9]{8})\\b'''
keywords = ["XTOK_"]
entropy = 2.5

[[rules.allowlists]]
regexTarget = "match"
stopwords = ["EXAMPLE"]

[[rules]]
id = "x-file"
path = '''\\.x$'''
`);
    expect(c.rules).toEqual([
      {
        id: "x-token",
        keywords: ["xtok_"],
        pattern: "\\b(XTOK_[A-Z0-9]{8})\\b",
        group: 0,
        entropy: 2.5,
        allow: [{ target: "match", stopwords: ["example"] }],
        maxLength: 13,
      },
    ]);
    expect(c.skipped).toEqual([{ id: "x-file", reason: "matches file paths only" }]);
  });
});

describe("catalogue detector", () => {
  const d = createSecretCatalogue();
  const found = (text: string) => d.find(text).map((f) => [f.family, text.slice(f.start, f.end)]);

  it("checks entropy and allowlists as gitleaks does", () => {
    const key = "sk_live_51Hx8kQ2eZvKYlo2C9wX3mN7pR1sT8uW3yB6cE0fH5jK9aD2gJ";
    expect(found(`stripe ${key}`)).toEqual([["stripe-access-token", key]]);
    // Global allowlist: all one letter, template references.
    expect(found(`hvs.${"a".repeat(95)}`)).toEqual([]);
  });

  it("masks only the secret of a labelled rule, not its label", () => {
    const text = "adafruit_key = 'q8xv2lm5np8rt1wz4bc6ef0gj3hk7as9'";
    expect(found(text)).toEqual([["adafruit-api-key", "q8xv2lm5np8rt1wz4bc6ef0gj3hk7as9"]]);
  });

  it("a subset of rules is a detector too", () => {
    const only = createSecretCatalogue(RULES.filter((r) => r.id.startsWith("anthropic")));
    expect(only.keywords).toEqual(["sk-ant-admin01", "sk-ant-api03"]);
    expect(only.find("glpat-Xk4vQ9zL2mN7pR1sT8uW")).toEqual([]);
  });
});

describe("every catalogue rule fires on an example of its own pattern", () => {
  const goRegex = new Map<string, string>();
  const doc = parseGitleaksToml(toml);
  for (const r of doc.rules as Record<string, unknown>[])
    if (typeof r.id === "string" && typeof r.regex === "string") goRegex.set(r.id, r.regex);
  let seed = 22;
  const choose = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return (seed >>> 8) % n;
  };

  it("the translated regex matches an example built from the RE2 syntax tree", () => {
    // The walk cannot honour \b between the characters it picks: a few tries per rule.
    for (const rule of RULES) {
      const re = new RegExp(rule.pattern);
      let example = "";
      let ok = false;
      for (let attempt = 0; attempt < 10 && !ok; attempt++) {
        example = exampleOf(goRegex.get(rule.id) ?? "", choose);
        ok = re.test(example);
      }
      expect(ok, `${rule.id}: ${example}`).toBe(true);
    }
  });

  it("the detector finds it (keyword prefilter, secret group, entropy and allowlists on)", () => {
    const missed: string[] = [];
    for (const rule of RULES) {
      const d = createSecretCatalogue([rule]);
      let hit = false;
      // Random examples can fall below a rule's entropy or into an allowlist: a few tries each.
      for (let attempt = 0; attempt < 10 && !hit; attempt++) {
        const example = exampleOf(goRegex.get(rule.id) ?? "", choose);
        const keyword = rule.keywords.find((k) => example.toLowerCase().includes(k));
        const text = keyword ? `\n${example}\n` : `${rule.keywords[0]}\n${example}\n`;
        hit = d.find(text).length > 0;
      }
      if (!hit) missed.push(rule.id);
    }
    process.stdout.write(
      `catalogue self-test: ${RULES.length - missed.length}/${RULES.length} rules fire (missed: ${missed.join(", ") || "none"})\n`,
    );
    expect(missed.length / RULES.length, missed.join(", ")).toBeLessThan(0.03);
  });
});
