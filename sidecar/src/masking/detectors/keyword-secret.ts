// Secrets known only by their label: `password=…`, `DB_PASSWORD: …`, `"client_secret": "…"`,
// `AccountKey=…;` (Azure connection strings), `//registry/:_authToken=…` (.npmrc), `&sig=…` (SAS
// URLs), and JSON fields or SQL columns named so. The value must look generated or at least like a
// password (entropy, mixed character classes, not a placeholder), so "password: required" and
// "token: ${TOKEN}" stay. The finding covers the value only.
import { codeAt, isAlnum, pendingToken } from "./chars.ts";
import { shannonEntropy } from "./entropy.ts";
import { createKeywordScanner } from "./keyword-scanner.ts";
import type { Detector, Finding } from "./types.ts";

// Normalised key (lower case, no separators) suffixes that label a secret, with the family name.
// biome-ignore format: a table reads better packed
const LABELS: readonly [suffix: string, family: string, kind: "password" | "token"][] = [
  ["password", "password", "password"], ["passwd", "password", "password"], ["pwd", "password", "password"],
  ["passphrase", "password", "password"], ["secret", "secret", "token"], ["secretkey", "secret-key", "token"],
  ["token", "token", "token"], ["apikey", "api-key", "token"], ["accesskey", "access-key", "token"],
  ["privatekey", "private-key", "token"], ["signingkey", "signing-key", "token"],
  ["encryptionkey", "encryption-key", "token"], ["masterkey", "master-key", "token"],
  ["accountkey", "azure-account-key", "token"], ["sharedaccesskey", "azure-shared-access-key", "token"],
  ["subscriptionkey", "subscription-key", "token"], ["credential", "credential", "token"],
  ["credentials", "credential", "token"], ["sig", "azure-sas-signature", "token"],
];
// Labelled "token" but not credentials: pagination cursors and counters.
const NOT_SECRET_SUFFIXES = ["pagetoken", "nexttoken", "continuationtoken", "synctoken", "tokentype"];
// Words that run into a label in keys: the scan looks for these, then reads the whole key around.
const STEMS = ["pass", "pwd", "secret", "token", "key", "credential", "sig"];
const PLACEHOLDERS = new Set([
  "null", "nil", "none", "true", "false", "undefined", "changeme", "change_me", "password", "secret",
  "token", "example", "placeholder", "redacted", "hidden", "masked", "required", "optional", "string",
  "your_password", "yourpassword", "your_token", "your_api_key", "notset", "not_set", "empty",
]); // biome-ignore format: a list

const MAX_KEY = 48;
const MAX_VALUE = 256;

function isKeyChar(c: number): boolean {
  return isAlnum(c) || c === 95 || c === 45 || c === 46; // _ - .
}

/** Characters ending an unquoted value: space, quotes, and the separators of config syntaxes. */
function endsValue(c: number): boolean {
  return (
    Number.isNaN(c) ||
    c <= 32 ||
    c === 34 || // "
    c === 39 || // '
    c === 96 || // `
    c === 59 || // ;
    c === 44 || // ,
    c === 38 || // &
    c === 60 || // <
    c === 62 || // >
    c === 41 || // )
    c === 125 || // }
    c === 93 || // ]
    c === 92 // \ (an escaped quote in JSON)
  );
}

function labelOf(key: string): (typeof LABELS)[number] | undefined {
  let k = "";
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 65 && c <= 90) k += String.fromCharCode(c + 32);
    else if (isAlnum(c)) k += key[i];
  }
  if (NOT_SECRET_SUFFIXES.some((s) => k.endsWith(s))) return undefined;
  let best: (typeof LABELS)[number] | undefined;
  for (const l of LABELS) if (k.endsWith(l[0]) && (!best || l[0].length > best[0].length)) best = l;
  // "sig" only as the whole key (a SAS URL's "&sig="), not "config" or "design".
  if (best?.[0] === "sig" && k !== "sig") return undefined;
  return best;
}

function classes(v: string): number {
  let lower = 0;
  let upper = 0;
  let digit = 0;
  let other = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c >= 97 && c <= 122) lower = 1;
    else if (c >= 65 && c <= 90) upper = 1;
    else if (c >= 48 && c <= 57) digit = 1;
    else other = 1;
  }
  return lower + upper + digit + other;
}

/** Whether a labelled value is a credential rather than a placeholder, reference or word. */
export function looksSecret(value: string, kind: "password" | "token"): boolean {
  if (value.length < (kind === "password" ? 6 : 12) || value.length > MAX_VALUE) return false;
  const lower = value.toLowerCase();
  if (PLACEHOLDERS.has(lower)) return false;
  const c0 = value.charCodeAt(0);
  // References and templates: $VAR, ${VAR}, {{ var }}, <your-key>, %s, [REDACTED], ****, os.environ[...]
  if (c0 === 36 || c0 === 123 || c0 === 60 || c0 === 37 || c0 === 91) return false;
  if (/^(?:\*{3,}|x{3,}|\.{3,}|-{3,}|#{3,})/i.test(value) || value.includes("(")) return false;
  if (/^(?:process\.env|os\.environ|env\.|secrets\.|vars\.)/i.test(value)) return false;
  const n = classes(value);
  const h = shannonEntropy(value);
  if (kind === "password") return (n >= 2 && h >= 2.3) || (value.length >= 16 && h >= 3.5);
  return n >= 2 && h >= 3.0;
}

interface KeyValue {
  valueStart: number;
  valueEnd: number;
  end: number;
}

/** After a key ending at `at`: optional quote, `=`/`:`/`=>`/`:=`, optional quote, the value. */
function readAssignment(text: string, at: number): KeyValue | undefined {
  let i = at;
  const c = text.charCodeAt(i);
  if (c === 34 || c === 39) i++;
  while (i < text.length && i - at < 8 && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  const op = text.charCodeAt(i);
  if (op === 61) i += text.charCodeAt(i + 1) === 62 ? 2 : 1;
  else if (op === 58) i += text.charCodeAt(i + 1) === 61 ? 2 : 1;
  else return undefined;
  const afterOp = i;
  while (i < text.length && i - afterOp < 8 && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  const q = text.charCodeAt(i);
  if (q === 34 || q === 39 || q === 96) {
    const start = i + 1;
    let end = start;
    while (end < text.length && end - start <= MAX_VALUE) {
      const ch = text.charCodeAt(end);
      if (ch === q || ch === 10 || ch === 13) break;
      if (ch === 92) end++; // skip an escaped character
      end++;
    }
    if (text.charCodeAt(end) !== q) return undefined;
    return { valueStart: start, valueEnd: end, end: end + 1 };
  }
  const start = i;
  let end = start;
  while (end < text.length && end - start <= MAX_VALUE && !endsValue(text.charCodeAt(end))) {
    // "=" inside an unquoted value is base64 padding ("…Q==;") or makes it a key ("a=b=c"): no value.
    if (text.charCodeAt(end) === 61) {
      let pad = end;
      while (text.charCodeAt(pad) === 61) pad++;
      if (!endsValue(codeAt(text, pad))) return undefined;
      end = pad;
      break;
    }
    end++;
  }
  return end > start ? { valueStart: start, valueEnd: end, end } : undefined;
}

const scanner = createKeywordScanner(STEMS);

/**
 * Whether text arriving after `text` could still turn the key ending at `ke` into a finding: the
 * text ends inside its separators, or inside its value (an open quote, or an unquoted value that
 * reaches the end).
 */
function assignmentPending(text: string, ke: number): boolean {
  let i = ke;
  const c = text.charCodeAt(i);
  if (c === 34 || c === 39) i++;
  while (i < text.length && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  if (i >= text.length) return true;
  const op = text.charCodeAt(i);
  if (op !== 61 && op !== 58) return false;
  i++;
  if (i < text.length && (text.charCodeAt(i) === 62 || text.charCodeAt(i) === 61)) i++;
  while (i < text.length && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
  if (i >= text.length) return true;
  const q = text.charCodeAt(i);
  if (q === 34 || q === 39 || q === 96) {
    for (let end = i + 1; end < text.length; end++) {
      const ch = text.charCodeAt(end);
      if (ch === q || ch === 10 || ch === 13) return false;
      if (ch === 92) end++;
    }
    return true;
  }
  let end = i;
  while (end < text.length && !endsValue(text.charCodeAt(end))) end++;
  return end >= text.length;
}

export const keywordSecret: Detector = {
  id: "keywordSecret",
  maxLength: MAX_KEY * 2 + 20 + MAX_VALUE,
  keywords: STEMS,
  keywordsInKey: true,
  // The last word (a key or an unquoted value still arriving), and any labelled key whose
  // separators or value (a quoted one may hold spaces) have not ended yet.
  pendingFrom(text, from) {
    let at = pendingToken(text, from);
    let consumed = from;
    scanner.forEach(text.slice(from), (k, stemEnd) => {
      const se = from + stemEnd;
      const ss = se - (STEMS[k] as string).length;
      if (ss < consumed || ss >= at) return;
      let ks = ss;
      while (ks > from && ss - ks < MAX_KEY && isKeyChar(text.charCodeAt(ks - 1))) ks--;
      let ke = se;
      while (ke < text.length && ke - se < MAX_KEY && isKeyChar(text.charCodeAt(ke))) ke++;
      consumed = ke;
      if (ke < text.length && labelOf(text.slice(ks, ke)) && assignmentPending(text, ke))
        at = Math.min(at, ks);
    });
    return at;
  },
  find(text, hint) {
    const out: Finding[] = [];
    let consumed = 0;
    scanner.forEach(text, (k, stemEnd) => {
      const stemStart = stemEnd - (STEMS[k] as string).length;
      if (stemStart < consumed) return;
      let ks = stemStart;
      while (ks > 0 && stemStart - ks < MAX_KEY && isKeyChar(text.charCodeAt(ks - 1))) ks--;
      let ke = stemEnd;
      while (ke < text.length && ke - stemEnd < MAX_KEY && isKeyChar(text.charCodeAt(ke))) ke++;
      // A key ends the label: the next stem inside it ("secret_token") is the same key.
      consumed = ke;
      // The assignment is the cheaper test, and in prose ("the api key rotation") it fails first.
      const kv = readAssignment(text, ke);
      if (!kv) return;
      const label = labelOf(text.slice(ks, ke));
      if (!label) return;
      const value = text.slice(kv.valueStart, kv.valueEnd);
      if (looksSecret(value, label[2]))
        out.push({ start: kv.valueStart, end: kv.valueEnd, detector: "keywordSecret", family: label[1] });
      consumed = kv.end;
    });
    // The field or column name is the label when the value stands alone.
    if (out.length === 0 && hint?.key !== undefined && !hint.numeric && scanner.maskOf(hint.key) !== 0) {
      const label = labelOf(hint.key);
      const trimmed = text.trim();
      // "Bearer <token>" / "Basic <credentials>": the credential is the last word.
      const parts = trimmed.split(/\s+/);
      const value =
        parts.length === 2 && /^(?:bearer|basic|token)$/i.test(parts[0] ?? "") ? parts[1] : trimmed;
      if (label && value && parts.length <= 2 && looksSecret(value, label[2])) {
        const start = text.indexOf(value);
        out.push({ start, end: start + value.length, detector: "keywordSecret", family: label[1] });
      }
    }
    return out;
  },
};
