// Compiles gitleaks' rule file (config/gitleaks.toml, MIT) into the secret catalogue the
// secretCatalogue detector runs (rules.generated.ts). Used by update.ts to regenerate rules.generated.ts and by the
// catalogue test to prove rules.generated.ts is what this compiler makes of the vendored gitleaks.toml.
//
// What changes on the way from Go's RE2 to a JavaScript RegExp:
// - Case-insensitivity (`(?i)` to the end of the group and later alternatives, `(?i:…)`, `(?-i:…)`)
//   is spelled out: letters become `[aA]`, classes gain the other case. JS has modifier groups, but
//   V8 13.6 (Node 24) ignores `(?i:…)` in alternatives after the first (`/(?i:x|[nr])/` does not
//   match "N"), and spelled-out classes mean the same in every engine. `(?s:.)` becomes `[\s\S]`.
// - `[[:alnum:]]`-style POSIX classes are spelled out; `\z` is `$` (no multiline flag).
// - Unbounded repetition (`+`, `*`, `{n,}`) is bounded at UNBOUNDED_MAX: a JS regex backtracks,
//   and bounded repetition keeps the work per start offset constant, so a scan stays linear.
// - The token terminator also accepts "," "&" "<" ">" ")" "]" "}" "|" (see WIDER_TERMINATOR).
// - The semi-generic rules' leading `[\w.-]{0,50}?` (it only widens the match to the left, over the
//   variable name) is dropped: without it every offset would try 51 lazy widths.
// Rules are left out when the secret could span lines (the stream masker releases whole lines) or
// when a dedicated detector does the job better (see EXCLUDED).

export const UNBOUNDED_MAX = 1024;

/** Rules another detector covers, with why. */
export const EXCLUDED: Readonly<Record<string, string>> = {
  "generic-api-key": "keywordSecret: labelled values with an entropy check, tuned for responses",
  "private-key": "privateKey: whole PEM blocks, also truncated ones",
  jwt: "jwt: validates the header",
  "jwt-base64": "jwt",
};

export interface CatalogueAllowlist {
  /** What `regexes` test: the secret (default), the whole match, or the line around it. */
  target?: "match" | "line";
  /** "and": allowed only when the regexes and the stopwords both say so. */
  and?: true;
  regexes?: readonly string[];
  stopwords?: readonly string[];
}

export interface CatalogueRule {
  /** The gitleaks rule id: the family that `airlock mask --report` names. */
  id: string;
  /** Lower-case ASCII; the rule runs only on text containing one of them. */
  keywords: readonly string[];
  /** JavaScript RegExp source (no flags; case rules are inline modifiers). */
  pattern: string;
  /** Capture group holding the secret; 0: the first group that matched, or the whole match. */
  group: number;
  /** Minimum Shannon entropy (bits per character) of the secret. */
  entropy?: number;
  allow?: readonly CatalogueAllowlist[];
  /** Longest match, in characters. */
  maxLength: number;
}

// --- TOML: the subset gitleaks' generator writes -------------------------------------------------

type TomlValue = string | number | boolean | string[];
type TomlTable = Record<string, TomlValue | TomlTable[]>;

/** Parses gitleaks.toml: key = string/number/bool/string array, [table], [[array.of.tables]]. */
export function parseGitleaksToml(text: string): TomlTable {
  const root: TomlTable = {};
  let table: TomlTable = root;
  let pos = 0;
  const fail = (msg: string): never => {
    const line = text.slice(0, pos).split("\n").length;
    throw new Error(`gitleaks.toml line ${line}: ${msg}`);
  };
  const skipSpace = (newlines: boolean) => {
    for (;;) {
      const c = text[pos];
      if (c === " " || c === "\t" || c === "\r" || (newlines && c === "\n")) pos++;
      else if (c === "#") while (pos < text.length && text[pos] !== "\n") pos++;
      else return;
    }
  };
  const readString = (): string => {
    if (text.startsWith("'''", pos)) {
      const end = text.indexOf("'''", pos + 3);
      if (end < 0) fail("unterminated '''");
      let s = text.slice(pos + 3, end);
      if (s.startsWith("\n")) s = s.slice(1);
      pos = end + 3;
      return s;
    }
    if (text[pos] === "'") {
      const end = text.indexOf("'", pos + 1);
      const s = text.slice(pos + 1, end);
      pos = end + 1;
      return s;
    }
    if (text[pos] === '"') {
      let s = "";
      pos++;
      while (text[pos] !== '"') {
        if (pos >= text.length || text[pos] === "\n") fail("unterminated string");
        if (text[pos] === "\\") {
          const e = text[pos + 1];
          const simple: Record<string, string> = { n: "\n", t: "\t", r: "\r", '"': '"', "\\": "\\" };
          if (e !== undefined && simple[e] !== undefined) {
            s += simple[e];
            pos += 2;
          } else if (e === "u") {
            s += String.fromCharCode(Number.parseInt(text.slice(pos + 2, pos + 6), 16));
            pos += 6;
          } else fail(`unsupported escape \\${e}`);
        } else s += text[pos++];
      }
      pos++;
      return s;
    }
    return fail("expected a string");
  };
  const readValue = (): TomlValue => {
    const c = text[pos];
    if (c === "[") {
      pos++;
      const out: string[] = [];
      for (;;) {
        skipSpace(true);
        if (text[pos] === "]") {
          pos++;
          return out;
        }
        out.push(readString());
        skipSpace(true);
        if (text[pos] === ",") pos++;
      }
    }
    if (c === "'" || c === '"') return readString();
    const m = /^(true|false|-?\d+(?:\.\d+)?)/.exec(text.slice(pos, pos + 32));
    if (!m?.[1]) return fail("unsupported value");
    pos += m[1].length;
    return m[1] === "true" ? true : m[1] === "false" ? false : Number(m[1]);
  };
  const tableAt = (path: string[], array: boolean): TomlTable => {
    let t = root;
    for (const [i, key] of path.entries()) {
      const last = i === path.length - 1;
      const existing = t[key];
      if (last && array) {
        const list = (existing ?? []) as TomlTable[];
        if (!Array.isArray(list)) fail(`${key} is not an array of tables`);
        const fresh: TomlTable = {};
        list.push(fresh);
        t[key] = list;
        return fresh;
      }
      if (Array.isArray(existing)) {
        const lastEntry = existing[existing.length - 1];
        if (typeof lastEntry !== "object") return fail(`${key} is not a table`);
        t = lastEntry as TomlTable;
      } else {
        const fresh: TomlTable = {};
        t[key] = [fresh];
        t = fresh;
      }
    }
    return t;
  };
  for (;;) {
    skipSpace(true);
    if (pos >= text.length) return root;
    if (text[pos] === "[") {
      const array = text[pos + 1] === "[";
      const close = text.indexOf(array ? "]]" : "]", pos);
      const path = text
        .slice(pos + (array ? 2 : 1), close)
        .trim()
        .split(".");
      pos = close + (array ? 2 : 1);
      table = tableAt(path, array);
      continue;
    }
    const m = /^[A-Za-z0-9_-]+/.exec(text.slice(pos, pos + 64));
    if (!m) fail("expected a key");
    const key = (m as RegExpExecArray)[0];
    pos += key.length;
    skipSpace(false);
    if (text[pos] !== "=") fail("expected =");
    pos++;
    skipSpace(false);
    table[key] = readValue();
  }
}

// --- RE2 → JavaScript -------------------------------------------------------------------------

type Node =
  | { t: "alt"; alts: Node[][] } // a group body: alternatives of sequences
  | { t: "group"; capture: boolean; prefix: string; body: Node; fold?: boolean }
  // `folded`: the same atom matching both cases of its letters (absent: no letters to fold).
  | { t: "atom"; js: string; folded?: string; newline: boolean; width: 0 | 1 }
  | { t: "quant"; node: Node; min: number; max: number; lazy: boolean; raw: string }
  | { t: "flag"; on: boolean }; // (?i) or (?-i) inside a sequence

const POSIX: Record<string, string> = {
  alnum: "A-Za-z0-9",
  alpha: "A-Za-z",
  digit: "0-9",
  xdigit: "0-9A-Fa-f",
  upper: "A-Z",
  lower: "a-z",
  word: "\\w",
  space: "\\s",
  punct: "!-\\/:-@\\[-`{-~",
};

class RegexParser {
  pos = 0;
  groups = 0;
  dotAll = false;
  readonly src: string;
  constructor(src: string) {
    this.src = src;
  }

  fail(msg: string): never {
    throw new Error(`${msg} at ${this.pos} in ${this.src}`);
  }

  parseAlt(): Node {
    const alts: Node[][] = [[]];
    while (this.pos < this.src.length && this.src[this.pos] !== ")") {
      const c = this.src[this.pos] as string;
      if (c === "|") {
        this.pos++;
        alts.push([]);
        continue;
      }
      const seq = alts[alts.length - 1] as Node[];
      const atom = this.parseAtom();
      if (atom.t === "flag") {
        seq.push(atom);
        continue;
      }
      seq.push(this.parseQuant(atom));
    }
    return { t: "alt", alts };
  }

  parseQuant(node: Node): Node {
    let n = node;
    for (;;) {
      const c = this.src[this.pos];
      let min: number;
      let max: number;
      const start = this.pos;
      if (c === "*" || c === "+" || c === "?") {
        min = c === "+" ? 1 : 0;
        max = c === "?" ? 1 : Number.POSITIVE_INFINITY;
        this.pos++;
      } else if (c === "{") {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.pos));
        if (!m) return n; // a literal "{" in RE2
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === "" ? Number.POSITIVE_INFINITY : Number(m[3]);
        this.pos += m[0].length;
      } else return n;
      const lazy = this.src[this.pos] === "?";
      if (lazy) this.pos++;
      n = { t: "quant", node: n, min, max, lazy, raw: this.src.slice(start, this.pos) };
    }
  }

  parseAtom(): Node {
    const s = this.src;
    const c = s[this.pos] as string;
    if (c === "(") {
      this.pos++;
      let capture = true;
      let prefix = "(";
      let fold: boolean | undefined;
      const dotAll = this.dotAll;
      if (s[this.pos] === "?") {
        const flag = /^\?(-?)([ims]+)\)/.exec(s.slice(this.pos));
        if (flag) {
          if (flag[2] !== "i") this.fail("only the i flag can be set inline");
          this.pos += flag[0].length;
          return { t: "flag", on: flag[1] === "" };
        }
        const mod = /^\?(-?[ims]*):/.exec(s.slice(this.pos));
        const named = /^\?P?<([A-Za-z_]\w*)>/.exec(s.slice(this.pos));
        if (mod) {
          capture = false;
          prefix = "(?:";
          const flags = mod[1] ?? "";
          if (flags.includes("m")) this.fail("the m flag is not supported");
          if (flags.includes("i")) fold = !flags.startsWith("-");
          if (flags.includes("s")) this.dotAll = !flags.startsWith("-");
          this.pos += mod[0].length;
        } else if (named) {
          prefix = `(?<${named[1]}>`;
          this.pos += named[0].length;
        } else this.fail("unsupported group");
      }
      if (capture) this.groups++;
      const body = this.parseAlt();
      if (s[this.pos] !== ")") this.fail("unclosed group");
      this.pos++;
      this.dotAll = dotAll;
      return fold === undefined
        ? { t: "group", capture, prefix, body }
        : { t: "group", capture, prefix, body, fold };
    }
    if (c === "[") return this.parseClass();
    if (c === "\\") return this.parseEscape(false);
    this.pos++;
    if (c === "^" || c === "$") return { t: "atom", js: c, newline: false, width: 0 };
    if (c === ".")
      return this.dotAll
        ? { t: "atom", js: "[\\s\\S]", newline: true, width: 1 }
        : { t: "atom", js: ".", newline: false, width: 1 };
    if (c === "/") return { t: "atom", js: "\\/", newline: false, width: 1 };
    if ("*+?".includes(c)) this.fail(`stray ${c}`);
    if (/[A-Za-z]/.test(c))
      return { t: "atom", js: c, folded: `[${c.toLowerCase()}${c.toUpperCase()}]`, newline: false, width: 1 };
    return { t: "atom", js: /[{}\]]/.test(c) ? `\\${c}` : c, newline: c === "\n", width: 1 };
  }

  /** An escape; inside a class only escapes that stand for characters are allowed. */
  parseEscape(inClass: boolean): Node & { t: "atom" } {
    const s = this.src;
    const e = s[this.pos + 1];
    if (e === undefined) this.fail("trailing backslash");
    this.pos += 2;
    if (e === "z") {
      if (inClass) this.fail("\\z in a class");
      return { t: "atom", js: "$", newline: false, width: 0 };
    }
    if (e === "A") return { t: "atom", js: "^", newline: false, width: 0 };
    if (e === "b" || e === "B") {
      if (inClass) this.fail("\\b in a class");
      return { t: "atom", js: `\\${e}`, newline: false, width: 0 };
    }
    if (e === "x") {
      const hex = /^[0-9A-Fa-f]{2}/.exec(s.slice(this.pos));
      if (!hex) this.fail("\\x needs two hex digits");
      this.pos += 2;
      return { t: "atom", js: `\\x${hex[0]}`, newline: hex[0] === "0a" || hex[0] === "0A", width: 1 };
    }
    if ("dDwWsS".includes(e)) return { t: "atom", js: `\\${e}`, newline: "sDW".includes(e), width: 1 };
    if ("ntrfv".includes(e)) return { t: "atom", js: `\\${e}`, newline: e === "n", width: 1 };
    if (/[A-Za-z0-9]/.test(e)) this.fail(`unsupported escape \\${e}`);
    return { t: "atom", js: `\\${e}`, newline: false, width: 1 };
  }

  parseClass(): Node {
    const s = this.src;
    this.pos++;
    let js = "[";
    let extra = ""; // the other case of the class's letters and letter ranges
    let negated = false;
    let newline = false;
    if (s[this.pos] === "^") {
      negated = true;
      js += "^";
      this.pos++;
    }
    let first = true;
    while (this.pos < s.length && (s[this.pos] !== "]" || first)) {
      first = false;
      const posix = /^\[:(\^?)([a-z]+):\]/.exec(s.slice(this.pos));
      if (posix) {
        const body = POSIX[posix[2] ?? ""];
        if (!body || posix[1]) this.fail(`unsupported class [:${posix[2]}:]`);
        js += body;
        newline ||= posix[2] === "space";
        this.pos += posix[0].length;
        continue;
      }
      const c = s[this.pos] as string;
      if (c === "\\") {
        const esc = this.parseEscape(true);
        js += esc.js;
        newline ||= esc.newline;
        continue;
      }
      // A range of literal characters: "a-f". (Ranges ending in an escape are not folded; RE2
      // rules here only range over letters and digits.)
      const range = /^([^\\\]])-([^\\\]])/.exec(s.slice(this.pos));
      if (range && range[1] !== undefined && range[2] !== undefined) {
        js += range[0];
        extra += foldRange(range[1].charCodeAt(0), range[2].charCodeAt(0));
        this.pos += 3;
        continue;
      }
      js += c === "[" || c === "/" ? `\\${c}` : c;
      extra += foldRange(c.charCodeAt(0), c.charCodeAt(0));
      newline ||= c === "\n";
      this.pos++;
    }
    if (s[this.pos] !== "]") this.fail("unclosed class");
    this.pos++;
    // A negated class matches a newline unless it names one.
    const atom: Node = { t: "atom", js: `${js}]`, newline: negated ? !newline : newline, width: 1 };
    // The other case goes first: appended, "[a-z_-" + "A-Z" would read as the range "-A".
    if (extra !== "") atom.folded = `[${negated ? "^" : ""}${extra}${js.slice(negated ? 2 : 1)}]`;
    return atom;
  }
}

/** The other case of the letters in [lo, hi], as class text ("" when none). */
function foldRange(lo: number, hi: number): string {
  let out = "";
  const part = (a: number, b: number, shift: number) => {
    const l = Math.max(lo, a);
    const h = Math.min(hi, b);
    if (l > h) return;
    out +=
      l === h
        ? String.fromCharCode(l + shift)
        : `${String.fromCharCode(l + shift)}-${String.fromCharCode(h + shift)}`;
  };
  part(97, 122, -32); // a-z → A-Z
  part(65, 90, 32); // A-Z → a-z
  return out;
}

interface Emitted {
  js: string;
  maxLength: number;
}

function emit(node: Node, insensitive: boolean): Emitted {
  switch (node.t) {
    case "atom":
      return { js: insensitive && node.folded ? node.folded : node.js, maxLength: node.width };
    case "flag":
      return { js: "", maxLength: 0 };
    case "quant": {
      const inner = emit(node.node, insensitive);
      const max = Number.isFinite(node.max) ? node.max : Math.max(UNBOUNDED_MAX, node.min);
      const raw = Number.isFinite(node.max) ? node.raw : `{${node.min},${max}}${node.lazy ? "?" : ""}`;
      return { js: inner.js + raw, maxLength: inner.maxLength * max };
    }
    case "group": {
      const body = emit(node.body, node.fold ?? insensitive);
      return { js: `${node.prefix}${body.js})`, maxLength: body.maxLength };
    }
    case "alt": {
      // `(?i)` switches case folding for the rest of its sequence and for every later alternative.
      let on = insensitive;
      const parts: string[] = [];
      let maxLength = 0;
      for (const seq of node.alts) {
        let js = "";
        let len = 0;
        for (const item of seq) {
          if (item.t === "flag") {
            on = item.on;
            continue;
          }
          const e = emit(item, on);
          js += e.js;
          len += e.maxLength;
        }
        parts.push(js);
        maxLength = Math.max(maxLength, len);
      }
      return { js: parts.join("|"), maxLength };
    }
  }
}

function canMatchNewline(node: Node): boolean {
  switch (node.t) {
    case "atom":
      return node.newline || node.js === "[\\s\\S]";
    case "flag":
      return false;
    case "quant":
      return canMatchNewline(node.node);
    case "group":
      return canMatchNewline(node.body);
    case "alt":
      return node.alts.some((seq) => seq.some(canMatchNewline));
  }
}

/** The capture group numbered `n` (1-based, in opening order), or undefined. */
function findGroup(node: Node, n: number, counter = { i: 0 }): Node | undefined {
  switch (node.t) {
    case "group": {
      if (node.capture && ++counter.i === n) return node;
      return findGroup(node.body, n, counter);
    }
    case "quant":
      return findGroup(node.node, n, counter);
    case "alt":
      for (const seq of node.alts)
        for (const item of seq) {
          const g = findGroup(item, n, counter);
          if (g) return g;
        }
      return undefined;
    default:
      return undefined;
  }
}

const SEMI_GENERIC_PREFIX = /^(\(\?i\))?\[\\w\.-\]\{0,50\}\?/;
// gitleaks' token terminator (quote, backtick, space, ";", an escaped newline, or the end), and the
// wider one used here: responses put tokens in URLs ("?key=…&v=3"), JSON arrays, HTML and XML too.
const TERMINATOR = "(?:[\\x60'\"\\s;]|\\\\[nr]|$)";
const WIDER_TERMINATOR = "(?:[\\x60'\"\\s;,&<>)\\]}|]|\\\\[nr]|$)";

export interface TranslatedRegex {
  js: string;
  groups: number;
  maxLength: number;
  /** Whether the secret (the chosen group, or the whole match) can contain a line break. */
  secretSpansLines: boolean;
}

/** RE2 source → JavaScript source (see the header for what changes). Throws on unsupported syntax. */
export function translateRegex(go: string, secretGroup = 0): TranslatedRegex {
  const src = go.replace(SEMI_GENERIC_PREFIX, "$1").replaceAll(TERMINATOR, WIDER_TERMINATOR);
  const p = new RegexParser(src);
  const ast = p.parseAlt();
  if (p.pos !== src.length) p.fail("unbalanced )");
  const { js, maxLength } = emit(ast, false);
  new RegExp(js, "dg"); // throws if the translation is not a valid JS regex
  const groups = p.groups;
  let spans = false;
  if (groups === 0) spans = canMatchNewline(ast);
  else if (secretGroup > 0) spans = canMatchNewline(findGroup(ast, secretGroup) ?? ast);
  else for (let g = 1; g <= groups; g++) spans ||= canMatchNewline(findGroup(ast, g) ?? ast);
  return { js, groups, maxLength, secretSpansLines: spans };
}

/**
 * A string the (translated) regex matches, built by walking the RE2 syntax tree with `choose(n)`
 * picking among n options: each rule's self-test input. Width-1 atoms take a printable character
 * the atom's JavaScript form accepts (letters and digits first).
 */
export function exampleOf(go: string, choose: (n: number) => number): string {
  const src = go.replace(SEMI_GENERIC_PREFIX, "$1").replaceAll(TERMINATOR, WIDER_TERMINATOR);
  const ast = new RegexParser(src).parseAlt();
  const printable: string[] = ["\n", "\t"];
  for (let c = 32; c < 127; c++) printable.push(String.fromCharCode(c));
  const preferred = printable.filter((c) => /[A-Za-z0-9]/.test(c));
  const walk = (node: Node, insensitive: boolean): string => {
    switch (node.t) {
      case "flag":
        return "";
      case "atom": {
        if (node.width === 0) return "";
        const re = new RegExp(`^(?:${insensitive && node.folded ? node.folded : node.js})$`);
        const good = preferred.filter((c) => re.test(c));
        const pool = good.length > 0 ? good : printable.filter((c) => re.test(c));
        if (pool.length === 0) throw new Error(`no printable character matches ${node.js}`);
        return pool[choose(pool.length)] as string;
      }
      case "quant": {
        const max = Math.min(Number.isFinite(node.max) ? node.max : node.min + 4, node.min + 4);
        const n = node.min + choose(max - node.min + 1);
        let out = "";
        for (let i = 0; i < n; i++) out += walk(node.node, insensitive);
        return out;
      }
      case "group":
        return walk(node.body, node.fold ?? insensitive);
      case "alt": {
        // Flags set in earlier alternatives carry over, as in emit().
        let on = insensitive;
        const flagsAt: boolean[] = [];
        for (const seq of node.alts) {
          flagsAt.push(on);
          for (const item of seq) if (item.t === "flag") on = item.on;
        }
        const i = choose(node.alts.length);
        let state = flagsAt[i] as boolean;
        let out = "";
        for (const item of node.alts[i] as Node[]) {
          if (item.t === "flag") state = item.on;
          else out += walk(item, state);
        }
        return out;
      }
    }
  };
  return walk(ast, false);
}

// --- Rules ---------------------------------------------------------------------------------------

export interface CompiledCatalogue {
  rules: CatalogueRule[];
  /** gitleaks' global allowlist, applied to every rule's secrets. */
  allow: CatalogueAllowlist;
  /** Rules not compiled, with why. */
  skipped: { id: string; reason: string }[];
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const strs = (v: unknown): string[] | undefined =>
  Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : undefined;

function translateAllowRegexes(list: string[] | undefined): string[] | undefined {
  return list?.map((r) => translateRegex(r).js);
}

export function compileGitleaks(toml: string): CompiledCatalogue {
  const doc = parseGitleaksToml(toml);
  const rules: CatalogueRule[] = [];
  const skipped: CompiledCatalogue["skipped"] = [];
  const global = ((doc.allowlist as TomlTable[] | undefined) ?? [])[0] ?? {};
  const allow: CatalogueAllowlist = {
    ...(translateAllowRegexes(strs(global.regexes))
      ? { regexes: translateAllowRegexes(strs(global.regexes)) }
      : {}),
    ...(strs(global.stopwords) ? { stopwords: strs(global.stopwords) } : {}),
  };
  for (const r of (doc.rules as TomlTable[] | undefined) ?? []) {
    const id = str(r.id) ?? "";
    const regex = str(r.regex);
    if (EXCLUDED[id]) {
      skipped.push({ id, reason: `covered by ${EXCLUDED[id]}` });
      continue;
    }
    if (!regex) {
      skipped.push({ id, reason: "matches file paths only" });
      continue;
    }
    const keywords = (strs(r.keywords) ?? []).map((k) => k.toLowerCase());
    if (keywords.length === 0) {
      skipped.push({ id, reason: "no keywords to prefilter on" });
      continue;
    }
    const group = typeof r.secretGroup === "number" ? r.secretGroup : 0;
    let t: TranslatedRegex;
    let lists: CatalogueAllowlist[];
    try {
      t = translateRegex(regex, group);
      lists = ((r.allowlists as TomlTable[] | undefined) ?? []).map((a) => {
        const target = str(a.regexTarget);
        if (target && target !== "match" && target !== "line" && target !== "secret")
          throw new Error(`regexTarget ${target}`);
        const regexes = translateAllowRegexes(strs(a.regexes));
        const stopwords = strs(a.stopwords)?.map((w) => w.toLowerCase());
        return {
          ...(target === "match" || target === "line" ? { target } : {}),
          ...(str(a.condition)?.toUpperCase() === "AND" ? { and: true as const } : {}),
          ...(regexes ? { regexes } : {}),
          ...(stopwords ? { stopwords } : {}),
        };
      });
    } catch (e) {
      skipped.push({ id, reason: `regex: ${(e as Error).message}` });
      continue;
    }
    if (t.secretSpansLines) {
      skipped.push({ id, reason: "the secret can span lines" });
      continue;
    }
    rules.push({
      id,
      keywords,
      pattern: t.js,
      group,
      ...(typeof r.entropy === "number" ? { entropy: r.entropy } : {}),
      ...(lists.length ? { allow: lists } : {}),
      maxLength: t.maxLength,
    });
  }
  return { rules, allow, skipped };
}

/** The TypeScript source of rules.generated.ts for a gitleaks.toml of `version` with digest `sha256`. */
export function renderCatalogue(toml: string, version: string, sha256: string): string {
  const c = compileGitleaks(toml);
  const lines = [
    "// Generated by catalogue/update.ts from gitleaks' config/gitleaks.toml (MIT, see LICENSE.gitleaks).",
    "// Do not edit: change compile.ts or update the version, then regenerate.",
    'import type { CatalogueAllowlist, CatalogueRule } from "./compile.ts";',
    "",
    `export const SOURCE = ${JSON.stringify({ name: "gitleaks", version, sha256 })} as const;`,
    "",
    "/** gitleaks' global allowlist. */",
    `export const ALLOW: CatalogueAllowlist = ${JSON.stringify(c.allow)};`,
    "",
    "/** Rules not compiled, and why. */",
    "export const SKIPPED: readonly { id: string; reason: string }[] = [",
    ...c.skipped.map((s) => `  ${JSON.stringify(s)},`),
    "];",
    "",
    "export const RULES: readonly CatalogueRule[] = [",
    ...c.rules.map((r) => `  ${JSON.stringify(r)},`),
    "];",
    "",
  ];
  return lines.join("\n");
}
