// The parser that matches the upstream's grammar. libpg-query publishes one package line per
// PostgreSQL major; each is installed under an alias (libpg-query-15, -16, -17; 18 is the plain
// package) and loaded only when a server of that major is met (each WASM module costs 2-4 MB of
// RSS beyond the first, measured on Node 24). A server whose major has no parser is refused
// (fail closed): judging its SQL with another grammar would let the two disagree on what a text
// means (`1_000` is a number on 16+, a number and an alias on 15).
//
// Fingerprints and normalization always come from the newest line (the older ones do not export
// them); they identify statements, they do not decide.
import { loadModule as loadNewest, parseSync as parseNewest } from "./libpg-query.ts";

export interface SqlParser {
  /** PostgreSQL major whose grammar this is. */
  readonly major: number;
  parseSync(text: string): unknown;
}

type ParserModule = { loadModule(): Promise<void>; parseSync(text: string): unknown };

const LINES: Readonly<Record<number, () => Promise<ParserModule>>> = {
  15: () => import("libpg-query-15"),
  16: () => import("libpg-query-16"),
  17: () => import("libpg-query-17"),
  18: async () => ({ loadModule: loadNewest, parseSync: parseNewest }),
};

/** Majors a parser is installed for. */
export const SUPPORTED_MAJORS: readonly number[] = Object.keys(LINES).map(Number);

/** The major of a `server_version` ParameterStatus value (`15.18 (Debian ...)`, `16beta2`, `9.6.24`). */
export function serverMajor(serverVersion: string): number | undefined {
  const m = /^\s*(\d+)(?:\.(\d+))?/.exec(serverVersion);
  if (!m) return undefined;
  const major = Number(m[1]);
  // Before 10, the major was two numbers (9.6); none of those is supported anyway.
  return major >= 10 ? major : undefined;
}

export class UnsupportedServerError extends Error {
  constructor(serverVersion: string) {
    super(
      `no SQL parser for PostgreSQL ${JSON.stringify(serverVersion)}: the guard parses with the server's own grammar and supports majors ${SUPPORTED_MAJORS.join(", ")}`,
    );
    this.name = "UnsupportedServerError";
  }
}

const loaded = new Map<number, Promise<SqlParser>>();

/** The parser for `serverVersion`, loaded once per major; rejects when there is none. */
export function parserFor(serverVersion: string): Promise<SqlParser> {
  const major = serverMajor(serverVersion);
  const line = major === undefined ? undefined : LINES[major];
  if (major === undefined || !line) return Promise.reject(new UnsupportedServerError(serverVersion));
  let p = loaded.get(major);
  if (!p) {
    p = line().then(async (m) => {
      await m.loadModule();
      return { major, parseSync: (text: string) => m.parseSync(text) };
    });
    // A failed load is not remembered: the next session may retry.
    p.catch(() => loaded.delete(major));
    loaded.set(major, p);
  }
  return p;
}
