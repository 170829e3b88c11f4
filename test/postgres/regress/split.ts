// Splits a psql script (PostgreSQL's regression SQL) into the statements psql would send, as
// psql does: `;` outside quotes, comments and dollar-quoted bodies ends a statement; a backslash
// command ends the line (`\g`, `\gset`, `\gx`, `\gexec`, `\crosstabview`, `\watch` also send the
// buffer; the others are dropped); `COPY ... FROM STDIN` is followed by data up to a `\.` line,
// which is skipped (the statement is marked so the caller does not send it). `BEGIN ATOMIC`
// bodies contain semicolons: a piece that does not parse is joined with the following ones
// until the result parses (up to `maxJoin` pieces), as psql's own BEGIN ... END tracking would.

export interface ScriptStatement {
  sql: string;
  /** 1-based line where it starts. */
  line: number;
  /** COPY FROM STDIN whose data was inline in the script. */
  copyFromStdin: boolean;
}

const SENDING = /^\\(g|gset|gx|gexec|crosstabview|watch)\b/;
const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i;

export function splitScript(
  script: string,
  parses: (sql: string) => boolean,
  maxJoin = 12,
): ScriptStatement[] {
  const raw = lex(script);
  const out: ScriptStatement[] = [];
  for (let i = 0; i < raw.length; i++) {
    const piece = raw[i] as ScriptStatement;
    if (!parses(piece.sql) && !piece.copyFromStdin) {
      let joined = piece.sql;
      let found = -1;
      for (let j = i + 1; j < raw.length && j <= i + maxJoin; j++) {
        joined += `;\n${(raw[j] as ScriptStatement).sql}`;
        if (parses(joined)) {
          found = j;
          break;
        }
      }
      if (found >= 0) {
        out.push({ sql: joined, line: piece.line, copyFromStdin: false });
        i = found;
        continue;
      }
    }
    out.push(piece);
  }
  return out;
}

function lex(s: string): ScriptStatement[] {
  const out: ScriptStatement[] = [];
  let buf = "";
  let line = 1;
  let startLine = 1;
  let i = 0;
  const n = s.length;
  /** Nothing but whitespace in `buf` so far (kept as a flag: trimming per character is quadratic). */
  let blank = true;
  const flush = () => {
    blank = true;
    const sql = buf.trim();
    if (sql && stripComments(sql).trim() !== "") {
      const copy = COPY_FROM_STDIN.test(stripComments(sql));
      out.push({ sql, line: startLine, copyFromStdin: copy });
      if (copy) {
        // Skip the inline data up to a line that is `\.`.
        const end = s.indexOf("\n\\.", i - 1);
        if (end >= 0) {
          line += countLines(s, i, end + 3);
          i = end + 3;
        }
      }
    }
    buf = "";
  };
  while (i < n) {
    const c = s[i] as string;
    if (blank) startLine = line;
    if (c === "\n") {
      line++;
      buf += c;
      i++;
      continue;
    }
    if (c === "-" && s[i + 1] === "-") {
      const end = s.indexOf("\n", i);
      const stop = end < 0 ? n : end;
      buf += s.slice(i, stop);
      blank = false;
      i = stop;
      continue;
    }
    if (c === "/" && s[i + 1] === "*") {
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        if (s[j] === "/" && s[j + 1] === "*") {
          depth++;
          j += 2;
        } else if (s[j] === "*" && s[j + 1] === "/") {
          depth--;
          j += 2;
        } else j++;
      }
      line += countLines(s, i, j);
      buf += s.slice(i, j);
      blank = false;
      i = j;
      continue;
    }
    if (c === "'" || c === '"') {
      const backslash = c === "'" && /[eE]$/.test(buf) && !/[A-Za-z0-9_]$/.test(buf.slice(0, -1));
      let j = i + 1;
      while (j < n) {
        if (backslash && s[j] === "\\") {
          j += 2;
          continue;
        }
        if (s[j] === c) {
          if (s[j + 1] === c) {
            j += 2;
            continue;
          }
          break;
        }
        j++;
      }
      j = Math.min(j + 1, n);
      line += countLines(s, i, j);
      buf += s.slice(i, j);
      blank = false;
      i = j;
      continue;
    }
    if (c === "$" && !/[A-Za-z0-9_]$/.test(buf)) {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(s.slice(i, i + 64));
      if (m) {
        const tag = m[0];
        const end = s.indexOf(tag, i + tag.length);
        const stop = end < 0 ? n : end + tag.length;
        line += countLines(s, i, stop);
        buf += s.slice(i, stop);
        blank = false;
        i = stop;
        continue;
      }
    }
    if (c === "\\") {
      // A psql meta-command: to the end of the line.
      const end = s.indexOf("\n", i);
      const stop = end < 0 ? n : end;
      const command = s.slice(i, stop);
      i = stop;
      if (SENDING.test(command)) flush();
      continue;
    }
    if (c === ";") {
      i++;
      flush();
      continue;
    }
    buf += c;
    if (c !== " " && c !== "\t" && c !== "\r") blank = false;
    i++;
  }
  flush();
  return out;
}

function countLines(s: string, from: number, to: number): number {
  let k = 0;
  for (let j = from; j < to; j++) if (s.charCodeAt(j) === 10) k++;
  return k;
}

function stripComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, "").replace(/\/\*[\s\S]*?\*\//g, "");
}
