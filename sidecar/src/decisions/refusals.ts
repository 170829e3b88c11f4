// Refusals the guard makes on its own, before or beside any rule: a closed set of kinds, each with
// its reason. Protocol handlers name a kind; they never write a rule name or invent a wording.
// The pseudo-rules say which part of Airlock refused: `airlock-builtin` for what no policy can
// allow (unjudgeable input, the guard's own limits), `airlock-masking` for what masking cannot
// make safe. Kinds without a rule are refusals in the name of the connection's policy (default
// deny shapes: an unsupported capability, an identity that could not be verified).
import type { Decision } from "../policy/types.ts";

export const BUILTIN_RULE = "airlock-builtin";
export const MASKING_RULE = "airlock-masking";

type Detail = string;

interface RefusalSpec {
  readonly rule?: typeof BUILTIN_RULE | typeof MASKING_RULE;
  readonly reason: (detail: Detail) => string;
}

const REFUSALS = {
  // SQL (PostgreSQL guard)
  sqlUnjudgeable: { rule: BUILTIN_RULE, reason: (d) => d },
  sqlExecuteUnprepared: {
    rule: BUILTIN_RULE,
    reason: (name) => `EXECUTE of prepared statement "${name}", which this session never prepared`,
  },
  sqlBindUnprepared: {
    rule: BUILTIN_RULE,
    reason: (name) =>
      `Bind to prepared statement "${name}", which this session never prepared through the sidecar`,
  },
  sqlFastPathCall: {
    rule: BUILTIN_RULE,
    reason: () => "fast-path function calls are refused: they bypass statement classification",
  },
  sqlTooManyPrepared: {
    rule: BUILTIN_RULE,
    reason: (limit) => `too many prepared statements in this session (limit ${limit}); close some`,
  },
  sqlApprovedNotAlone: {
    rule: BUILTIN_RULE,
    reason: (why) =>
      `this statement needs approval, and once approved it runs alone on a connection of its own under the credential minted for approved statements (credentials.vault.approvedPath): ${why}`,
  },
  sqlApprovedCredential: {
    rule: BUILTIN_RULE,
    reason: (why) => `approved, but the credential for approved statements could not be had: ${why}`,
  },
  sqlCustomSetting: {
    rule: BUILTIN_RULE,
    reason: (names) =>
      `custom settings (${names}) are refused unless a rule lists them (match.sql.settings): row-level security and application code may trust them`,
  },
  maskingCopyTo: {
    rule: BUILTIN_RULE,
    reason: () =>
      "on a connection with masking rules, COPY ... TO is masked only for a table with a column list in text or CSV format with default options (COPY t (a, b) TO STDOUT, as pg_dump writes it); name the columns, or use SELECT",
  },
  maskingBinaryCursor: {
    rule: BUILTIN_RULE,
    reason: () =>
      "binary cursors are refused on a connection with masking rules; declare the cursor without BINARY",
  },
  maskingBinaryResult: { rule: MASKING_RULE, reason: (d) => d },
  maskingStoredCopy: {
    rule: MASKING_RULE,
    reason: (column) =>
      `this statement stores values computed from ${column}, which masking covers, under another name (a copy, or a renamed column); masking follows a value by the column it is read from, so it could be read back unmasked. Store covered values only into a column of a covered name, or leave them where they are`,
  },
  // SSH
  sshCommandUnjudgeable: { reason: (d) => `refused before policy evaluation: ${d}` },
  sshX11: { reason: () => "X11 forwarding is never allowed" },
  sshUnsupported: { reason: (what) => `${what} is not supported` },
  sshTransferMasked: {
    rule: MASKING_RULE,
    reason: (tool) =>
      `${tool} carries files in a binary protocol that masking would corrupt; on a connection with masking rules it needs a rule allowing sftp (unmasked file transfer)`,
  },
  // HTTP and every protocol's front door
  unknownDestination: { reason: (dest) => `no policy connection matches ${dest}` },
  badTarget: { reason: (d) => `bad request target: ${d}` },
  badConnectTarget: { reason: (d) => `bad CONNECT target: ${d}` },
  badPath: { reason: (d) => `path refused: ${d}` },
  identityRefused: { reason: (code) => `identity token refused (${code})` },
  identityRequired: {
    reason: (how) => `this connection requires an end-user identity token${how ? ` ${how}` : ""}`,
  },
} satisfies Record<string, RefusalSpec>;

export type RefusalKind = keyof typeof REFUSALS;

/** A refusal as a decision: `deny`, naming the policy of the connection when there is one. */
export function refusal(kind: RefusalKind, policy?: string, detail: Detail = ""): Decision {
  const spec: RefusalSpec = REFUSALS[kind];
  const d: Decision = { action: "deny", reason: spec.reason(detail), refusal: kind };
  if (policy !== undefined) d.policy = policy;
  if (spec.rule !== undefined) d.rule = spec.rule;
  return d;
}
