// What `kubectl airlock` prints: kubectl-style tables and a `show` page. Pure functions of the
// objects and the current time, so they are unit-tested without a cluster.
import type { AccessRequest } from "../../../api/src/index.ts";
import { assess } from "../../../sidecar/src/approvals/request.ts";
import type { Grant } from "./backend.ts";
import { requesterOf } from "./backend.ts";

/** kubectl's short durations: 45s, 3m12s, 5h4m, 2d3h. */
export function shortDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return `${m}m${s % 60 ? `${s % 60}s` : ""}`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ""}`;
  const d = Math.floor(h / 24);
  return `${d}d${h % 24 ? `${h % 24}h` : ""}`;
}

const time = (v: unknown) => (v instanceof Date ? v.getTime() : Date.parse(String(v)));

export function age(obj: AccessRequest, now: number): string {
  const t = time(obj.metadata.creationTimestamp);
  return Number.isFinite(t) ? shortDuration(now - t) : "<unknown>";
}

export function until(iso: string | undefined, now: number): string {
  const t = time(iso);
  if (!Number.isFinite(t)) return "-";
  return t <= now ? "expired" : shortDuration(t - now);
}

export function phaseOf(obj: AccessRequest): string {
  return obj.status?.phase ?? "Pending";
}

export function isPending(obj: AccessRequest, now: number): boolean {
  return phaseOf(obj) === "Pending" && time(obj.spec.expiresAt) > now;
}

function ellipsis(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ");
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

export function requestsTable(
  items: readonly AccessRequest[],
  opts: { now: number; allNamespaces: boolean; showPhase: boolean },
): string {
  const header = [
    ...(opts.allNamespaces ? ["NAMESPACE"] : []),
    "NAME",
    ...(opts.showPhase ? ["PHASE"] : []),
    "AGE",
    "REQUESTER",
    "POD",
    "CONNECTION",
    "RULE",
    "APPROVALS",
    "EXPIRES",
    "OPERATION",
  ];
  const rows = items.map((o) => [
    ...(opts.allNamespaces ? [o.metadata.namespace ?? ""] : []),
    o.metadata.name ?? "",
    ...(opts.showPhase ? [phaseOf(o)] : []),
    age(o, opts.now),
    requesterOf(o),
    o.spec.requester.pod,
    o.spec.connection,
    o.spec.rule,
    `${assess(o).approvers.length}/${o.spec.minApprovals}`,
    phaseOf(o) === "Pending" ? until(o.spec.expiresAt, opts.now) : "-",
    ellipsis(`${o.spec.operation.protocol}: ${o.spec.operation.summary}`, 72),
  ]);
  return table(header, rows);
}

export function grantsTable(grants: readonly Grant[], opts: { now: number; allNamespaces: boolean }): string {
  const header = [
    ...(opts.allNamespaces ? ["NAMESPACE"] : []),
    "REQUEST",
    "REQUESTER",
    "CONNECTION",
    "RULE",
    "APPROVED BY",
    "EXPIRES",
  ];
  const rows = grants.map((g) => [
    ...(opts.allNamespaces ? [g.namespace] : []),
    g.name,
    g.requester,
    g.connection,
    g.rule,
    g.approvers.join(",") || "-",
    until(g.expiresAt, opts.now),
  ]);
  return table(header, rows);
}

/** What approving lets through for the grant's lifetime, not only the operation shown. */
export function grantScope(s: AccessRequest["spec"]): string {
  const who = s.requester.user
    ? `${s.requester.user} via ${s.requester.serviceAccount}`
    : s.requester.serviceAccount;
  return `every operation matching rule ${s.rule} (${s.grantCovers ?? "its match: see the policy"}) by ${who} on connection ${s.connection}, without asking again`;
}

export function showRequest(o: AccessRequest, now: number, decideHint: string): string {
  const s = o.spec;
  const st = o.status ?? {};
  const a = assess(o);
  const approvers = [
    ...(s.approvers.groups ?? []).map((g) => `group ${g}`),
    ...(s.approvers.users ?? []).map((u) => `user ${u}`),
  ].join(", ");
  const field = (k: string, v: string) => `${`${k}:`.padEnd(14)}${v}`;
  const created = time(o.metadata.creationTimestamp);
  const lines = [
    field("Name", o.metadata.name ?? ""),
    field("Namespace", o.metadata.namespace ?? ""),
    field("Phase", `${phaseOf(o)} (${a.approvers.length}/${s.minApprovals} approvals)`),
    field(
      "Requester",
      s.requester.user
        ? `${s.requester.user}${s.requester.groups?.length ? ` (groups: ${s.requester.groups.join(", ")})` : ""}`
        : "(no end user: the agent itself)",
    ),
    field("Agent", `${s.requester.serviceAccount} (pod ${s.requester.pod})`),
    field("Policy", s.policy),
    field("Rule", s.rule),
    field("Connection", s.connection),
    field("Operation", `${s.operation.protocol}: ${s.operation.summary}`),
    field("Reason", s.reason ?? "(none given)"),
    field(
      "Approvers",
      `${approvers}; ${s.minApprovals} distinct user${s.minApprovals > 1 ? "s" : ""} needed`,
    ),
    field(
      "Grant",
      s.grantTtl
        ? `${s.grantTtl} after approval${st.grantExpiresAt ? ` (open until ${st.grantExpiresAt}, ${until(st.grantExpiresAt, now)} left)` : ""}`
        : "none (this one operation only)",
    ),
    ...(s.grantTtl ? [field("Grant covers", grantScope(s))] : []),
    field(
      "Created",
      Number.isFinite(created)
        ? `${new Date(created).toISOString()} (${shortDuration(now - created)} ago)`
        : "-",
    ),
    field("Expires", `${s.expiresAt} (${until(s.expiresAt, now)})`),
    "Approvals:",
    ...((st.approvals ?? []).length
      ? (st.approvals ?? []).map((x) => `  ${x.user}  ${x.time}${x.comment ? `  "${x.comment}"` : ""}`)
      : ["  (none)"]),
    "Denials:",
    ...((st.denials ?? []).length
      ? (st.denials ?? []).map((x) => `  ${x.user}  ${x.time}${x.reason ? `  "${x.reason}"` : ""}`)
      : ["  (none)"]),
  ];
  if (phaseOf(o) === "Pending") lines.push("", decideHint);
  return `${lines.join("\n")}\n`;
}
