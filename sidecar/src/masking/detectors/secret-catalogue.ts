// Secrets of ~200 services (Anthropic, OpenAI, Stripe, Google, GitLab, npm, SendGrid, Vault,
// Twilio, DigitalOcean, …), from gitleaks' maintained rule set compiled by catalogue/compile.ts.
// As in gitleaks, a rule runs only on text holding one of its keywords, its secret must reach the
// rule's entropy, and allowlists (the rule's and the global one) drop known non-secrets. The
// finding covers the secret only ("api_key = <secret>" keeps its label) and names the rule.
import type { CatalogueAllowlist, CatalogueRule } from "./catalogue/compile.ts";
import { ALLOW, RULES } from "./catalogue/rules.generated.ts";
import { isTokenChar, pendingToken } from "./chars.ts";
import { shannonEntropy } from "./entropy.ts";
import { createKeywordScanner } from "./keyword-scanner.ts";
import type { Detector, Finding } from "./types.ts";

interface Allow {
  target: "secret" | "match" | "line";
  and: boolean;
  regexes: RegExp[];
  stopwords: readonly string[];
}

const compileAllow = (a: CatalogueAllowlist): Allow => ({
  target: a.target ?? "secret",
  and: a.and === true,
  regexes: (a.regexes ?? []).map((r) => new RegExp(r)),
  stopwords: a.stopwords ?? [],
});

/** Line context for "line" allowlists, bounded so a long line costs the same for every match. */
const LINE_CONTEXT = 1024;

function lineAround(text: string, start: number, end: number): string {
  let s = start;
  while (s > 0 && start - s < LINE_CONTEXT && text.charCodeAt(s - 1) !== 10) s--;
  let e = end;
  while (e < text.length && e - end < LINE_CONTEXT && text.charCodeAt(e) !== 10) e++;
  return text.slice(s, e);
}

function allowed(a: Allow, secret: string, match: string, line: () => string): boolean {
  const target = a.target === "secret" ? secret : a.target === "match" ? match : line();
  const byRegex = a.regexes.length > 0 ? a.regexes.some((r) => r.test(target)) : undefined;
  let byWord: boolean | undefined;
  if (a.stopwords.length > 0) {
    const lower = secret.toLowerCase();
    byWord = a.stopwords.some((w) => lower.includes(w));
  }
  if (a.and) return byRegex !== false && byWord !== false && (byRegex ?? byWord ?? false);
  return byRegex === true || byWord === true;
}

/** Skips a character class starting at `i` ("["): the index of its "]". */
function skipClass(p: string, i: number): number {
  for (i++; i < p.length && p[i] !== "]"; i++) if (p[i] === "\\") i++;
  return i;
}

/** The source of capture group `g` of a pattern (the first group when 0; the pattern if none). */
export function groupSource(p: string, g: number): string {
  let n = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === "\\") i++;
    else if (p[i] === "[") i = skipClass(p, i);
    else if (p[i] === "(" && p[i + 1] !== "?" && (++n === g || g === 0)) {
      let depth = 0;
      for (let j = i; j < p.length; j++) {
        if (p[j] === "\\") j++;
        else if (p[j] === "[") j = skipClass(p, j);
        else if (p[j] === "(") depth++;
        else if (p[j] === ")" && --depth === 0) return p.slice(i, j + 1);
      }
    }
  }
  return p;
}

/**
 * Whether a secret's pattern can match a character that ends a word (space, control, non-ASCII):
 * such a secret may be in the making before the last word of a stream.
 */
const SPANS_WORDS = /\\s|\\W|\\D|\\S|\[\^|(?<!\\)\.| |\\x20|\\t|\\n|\\r|\\x[01]|\\p/;

interface Compiled {
  rule: CatalogueRule;
  re: RegExp | undefined; // compiled on first use: most rules never run in a given sidecar
  allow: Allow[];
}

/** A detector over `rules` (default: the whole catalogue), all reporting as secretCatalogue. */
export function createSecretCatalogue(rules: readonly CatalogueRule[] = RULES): Detector {
  const compiled: Compiled[] = rules.map((rule) => ({
    rule,
    re: undefined,
    allow: (rule.allow ?? []).map(compileAllow),
  }));
  const global = compileAllow(ALLOW);
  const keywords: string[] = [];
  const rulesOf: number[][] = [];
  const keywordIds = new Map<string, number>();
  for (const [i, r] of rules.entries())
    for (const k of r.keywords) {
      let id = keywordIds.get(k);
      if (id === undefined) {
        id = keywords.length;
        keywordIds.set(k, id);
        keywords.push(k);
        rulesOf.push([]);
      }
      (rulesOf[id] as number[]).push(i);
    }
  const scanner = createKeywordScanner(keywords);
  const spanning = keywords.map((_, k) =>
    (rulesOf[k] as number[]).some((i) => {
      const r = rules[i] as CatalogueRule;
      return SPANS_WORDS.test(groupSource(r.pattern, r.group));
    }),
  );
  const stamp = new Int32Array(rules.length);
  let generation = 0;

  function run(c: Compiled, text: string, out: Finding[]): void {
    c.re ??= new RegExp(c.rule.pattern, "dg");
    const re = c.re;
    re.lastIndex = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if (m[0] === "") {
        re.lastIndex++;
        continue;
      }
      let span: [number, number] | undefined;
      if (c.rule.group > 0) span = m.indices?.[c.rule.group];
      else
        for (let g = 1; g < m.length && !span; g++) {
          const s = m.indices?.[g];
          if (s && s[1] > s[0]) span = s;
        }
      span ??= [m.index, m.index + m[0].length];
      const secret = text.slice(span[0], span[1]);
      if (secret === "") continue;
      if (c.rule.entropy !== undefined && shannonEntropy(secret) < c.rule.entropy) continue;
      const line = () => lineAround(text, m.index, m.index + m[0].length);
      if (allowed(global, secret, m[0], line) || c.allow.some((a) => allowed(a, secret, m[0], line)))
        continue;
      out.push({ start: span[0], end: span[1], detector: "secretCatalogue", family: c.rule.id });
    }
  }

  return {
    id: "secretCatalogue",
    maxLength: Math.max(...rules.map((r) => r.maxLength)),
    keywords,
    mayOccurIn: (bytes, start, end) => scanner.maskOfBytes(bytes, start, end) !== 0,
    // Nearly every rule's secret is one word (its label may span separators, but the stream keeps
    // maxLength of released text to rescan): the last word is what may be in the making. A few
    // secrets can hold spaces (a .NET config password): from the word of their keyword.
    pendingFrom(text, from) {
      let at = pendingToken(text, from);
      scanner.forEach(text.slice(from), (k, end) => {
        let s = from + end - (keywords[k] as string).length;
        if (s >= at || !spanning[k]) return;
        while (s > from && isTokenChar(text.charCodeAt(s - 1))) s--;
        at = s;
      });
      return at;
    },
    find(text) {
      const out: Finding[] = [];
      const gen = ++generation;
      const due: number[] = [];
      scanner.forEach(text, (k) => {
        for (const i of rulesOf[k] as number[])
          if (stamp[i] !== gen) {
            stamp[i] = gen;
            due.push(i);
          }
      });
      due.sort((a, b) => a - b);
      for (const i of due) run(compiled[i] as Compiled, text, out);
      return out;
    },
  };
}
