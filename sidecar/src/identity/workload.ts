// Workload identity: the pod the sidecar runs in (namespace, name, service account), read from the
// downward API volume or the environment and validated, the subject every policy is matched against.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** Where the injector mounts the downward API volume into the sidecar. */
export const DEFAULT_PODINFO_DIR = "/etc/airlock/podinfo";

/** The pod the sidecar runs in: who the agent is, independent of any person it acts for. */
export interface WorkloadIdentity {
  readonly namespace: string;
  readonly podName: string;
  /** The bare service account name, e.g. `agent`. */
  readonly serviceAccount: string;
  /** The Kubernetes subject string, `system:serviceaccount:<namespace>:<name>`, used in policy and audit. */
  readonly subject: string;
  readonly labels: Readonly<Record<string, string>>;
}

export class WorkloadIdentityError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WorkloadIdentityError";
  }
}

// Kubernetes name rules: namespaces are DNS-1123 labels, pods and service accounts DNS-1123 subdomains.
// Validating matters because the subject string is colon-separated and feeds policy matching.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function serviceAccountSubject(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

interface Field {
  readonly file: string;
  readonly env: string;
  readonly what: string;
  readonly pattern: RegExp;
  readonly maxLength: number;
}

const NAMESPACE: Field = {
  file: "namespace",
  env: "AIRLOCK_POD_NAMESPACE",
  what: "namespace",
  pattern: DNS1123_LABEL,
  maxLength: 63,
};
const POD_NAME: Field = {
  file: "pod_name",
  env: "AIRLOCK_POD_NAME",
  what: "pod name",
  pattern: DNS1123_SUBDOMAIN,
  maxLength: 253,
};
// The downward API *volume* cannot project spec.serviceAccountName (only env vars can), so in practice
// this comes from AIRLOCK_SERVICE_ACCOUNT; the file is still honoured for tests and custom mounts.
const SERVICE_ACCOUNT: Field = {
  file: "service_account",
  env: "AIRLOCK_SERVICE_ACCOUNT",
  what: "service account",
  pattern: DNS1123_SUBDOMAIN,
  maxLength: 253,
};

/**
 * Reads the workload identity from a downward API directory, falling back to environment variables
 * for each field whose file is absent or empty. Labels are optional (missing file → `{}`).
 */
export async function loadWorkloadIdentity(
  dir: string = DEFAULT_PODINFO_DIR,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<WorkloadIdentity> {
  const [namespace, podName, serviceAccount, labelsText] = await Promise.all([
    resolveField(dir, env, NAMESPACE),
    resolveField(dir, env, POD_NAME),
    resolveField(dir, env, SERVICE_ACCOUNT),
    readOptional(join(dir, "labels")),
  ]);
  let labels: Record<string, string>;
  try {
    labels = labelsText === undefined ? {} : parseDownwardApiLabels(labelsText);
  } catch (err) {
    throw new WorkloadIdentityError(`${join(dir, "labels")}: ${(err as Error).message}`, { cause: err });
  }
  return Object.freeze({
    namespace,
    podName,
    serviceAccount,
    subject: serviceAccountSubject(namespace, serviceAccount),
    labels: Object.freeze(labels),
  });
}

async function resolveField(
  dir: string,
  env: Readonly<Record<string, string | undefined>>,
  field: Field,
): Promise<string> {
  const path = join(dir, field.file);
  const fromFile = await readOptional(path);
  const fromEnv = env[field.env]?.trim() || undefined;
  const value = fromFile ?? fromEnv;
  const source = fromFile !== undefined ? path : `$${field.env}`;
  if (value === undefined) {
    throw new WorkloadIdentityError(
      `workload ${field.what} not found: neither ${path} nor $${field.env} is set ` +
        "(is the downward API volume mounted and the env var injected?)",
    );
  }
  if (value.length > field.maxLength || !field.pattern.test(value)) {
    throw new WorkloadIdentityError(
      `workload ${field.what} from ${source} is not a valid Kubernetes name: ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** File contents trimmed, or undefined when the file does not exist or is blank. */
async function readOptional(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new WorkloadIdentityError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const trimmed = text.trim();
  return trimmed === "" ? undefined : trimmed;
}

/**
 * Parses the downward API `metadata.labels` (or `metadata.annotations`) file: one `key="value"` per
 * line, value quoted with Go's `%q` (strconv.Quote), keys sorted. Blank lines are ignored; any other
 * deviation throws, because a silently mis-parsed label could change which policy applies.
 */
export function parseDownwardApiLabels(text: string): Record<string, string> {
  const entries: [string, string][] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (line.trim() === "") continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`line ${i + 1}: expected key="value"`);
    const key = line.slice(0, eq);
    if (/\s|"/.test(key)) throw new Error(`line ${i + 1}: invalid label key`);
    let value: string;
    try {
      value = unquoteGo(line.slice(eq + 1));
    } catch (err) {
      throw new Error(`line ${i + 1}: ${(err as Error).message}`);
    }
    if (seen.has(key)) throw new Error(`line ${i + 1}: duplicate label key ${JSON.stringify(key)}`);
    seen.add(key);
    entries.push([key, value]);
  }
  // fromEntries defines own properties, so a key like "__proto__" cannot touch the prototype.
  return Object.fromEntries(entries);
}

const SIMPLE_ESCAPES: Readonly<Record<string, number>> = {
  a: 0x07,
  b: 0x08,
  f: 0x0c,
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
  "\\": 0x5c,
  '"': 0x22,
};

const utf8 = new TextEncoder();

/**
 * Decodes a Go double-quoted string literal (the whole input must be one literal). Escapes build
 * bytes, not code units, because `\xNN` and octal escapes denote raw UTF-8 bytes in Go.
 */
export function unquoteGo(literal: string): string {
  if (literal.length < 2 || !literal.startsWith('"') || !literal.endsWith('"')) {
    throw new Error("value is not a double-quoted string");
  }
  const body = literal.slice(1, -1);
  const bytes: number[] = [];
  let i = 0;
  while (i < body.length) {
    const ch = body[i] as string;
    if (ch === '"') throw new Error("unescaped quote inside value");
    if (ch === "\n") throw new Error("raw newline inside value");
    if (ch !== "\\") {
      // Copy a whole code point (surrogate pairs included) as UTF-8.
      const cp = body.codePointAt(i) as number;
      const s = String.fromCodePoint(cp);
      for (const b of utf8.encode(s)) bytes.push(b);
      i += s.length;
      continue;
    }
    const esc = body[i + 1];
    if (esc === undefined) throw new Error("dangling backslash");
    const simple = SIMPLE_ESCAPES[esc];
    if (simple !== undefined) {
      bytes.push(simple);
      i += 2;
    } else if (esc === "x") {
      bytes.push(hexDigits(body, i + 2, 2));
      i += 4;
    } else if (esc === "u" || esc === "U") {
      const n = esc === "u" ? 4 : 8;
      const cp = hexDigits(body, i + 2, n);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error("invalid unicode escape");
      for (const b of utf8.encode(String.fromCodePoint(cp))) bytes.push(b);
      i += 2 + n;
    } else if (esc >= "0" && esc <= "7") {
      const oct = body.slice(i + 1, i + 4);
      if (!/^[0-7]{3}$/.test(oct)) throw new Error("invalid octal escape");
      const v = Number.parseInt(oct, 8);
      if (v > 0xff) throw new Error("octal escape out of range");
      bytes.push(v);
      i += 4;
    } else {
      throw new Error(`unknown escape \\${esc}`);
    }
  }
  // Go quotes invalid UTF-8 bytes as \xNN; decoding replaces them with U+FFFD rather than failing.
  // ignoreBOM keeps a leading U+FEFF that was part of the value.
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(Uint8Array.from(bytes));
}

function hexDigits(s: string, start: number, n: number): number {
  const digits = s.slice(start, start + n);
  if (digits.length !== n || !/^[0-9a-fA-F]+$/.test(digits)) throw new Error("invalid hex escape");
  return Number.parseInt(digits, 16);
}
