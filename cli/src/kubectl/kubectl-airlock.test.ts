// The plugin's output and flag handling, without a cluster (the real flows run against a real API
// server and a real sidecar in test/approvals).
import { describe, expect, it } from "vitest";
import type { AccessRequest } from "../../../api/src/index.ts";
import { main } from "../commands/kubectl-airlock.ts";
import { checkDecidable, PluginError } from "./backend.ts";
import { grantsTable, requestsTable, shortDuration, showRequest } from "./format.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");
const req = (over: Partial<AccessRequest["status"]> = {}): AccessRequest => ({
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AccessRequest",
  metadata: {
    name: "orders-need-dba-7k2p9qaz",
    namespace: "agents",
    creationTimestamp: "2026-01-01T11:57:30Z" as unknown as Date,
  },
  spec: {
    policy: "agents/orders",
    rule: "orders-need-dba",
    connection: "orders-api",
    requester: {
      user: "sam",
      groups: ["support"],
      serviceAccount: "system:serviceaccount:agents:agent",
      pod: "agent-0",
    },
    operation: { protocol: "http", summary: "POST /orders/42/cancel" },
    reason: "ticket 42",
    approvers: { groups: ["dba"] },
    minApprovals: 2,
    grantTtl: "10m",
    expiresAt: "2026-01-01T12:02:30Z",
  },
  status: {
    phase: "Pending",
    approvals: [{ user: "ann", time: "2026-01-01T11:59:00Z", comment: "ok" }],
    ...over,
  },
});

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), now: () => NOW },
    out: () => out.join(""),
    err: () => err.join(""),
  };
}

describe("output", () => {
  it("formats ages like kubectl", () => {
    expect([5_000, 150_000, 3_600_000 * 5 + 240_000, 86_400_000 * 3].map(shortDuration)).toEqual([
      "5s",
      "2m30s",
      "5h4m",
      "3d",
    ]);
  });

  it("lists requests with age, requester, approvals so far and the operation", () => {
    const text = requestsTable([req()], { now: NOW, allNamespaces: true, showPhase: false });
    expect(text).toBe(
      "NAMESPACE   NAME                       AGE     REQUESTER   POD       CONNECTION   RULE              APPROVALS   EXPIRES   OPERATION\n" +
        "agents      orders-need-dba-7k2p9qaz   2m30s   sam         agent-0   orders-api   orders-need-dba   1/2         2m30s     http: POST /orders/42/cancel\n",
    );
  });

  it("shows one request in full", () => {
    const text = showRequest(req(), NOW, "Decide: ...");
    expect(text).toMatch(/^Phase:\s+Pending \(1\/2 approvals\)$/m);
    expect(text).toMatch(/^Requester:\s+sam \(groups: support\)$/m);
    expect(text).toMatch(/^Reason:\s+ticket 42$/m);
    expect(text).toMatch(/^Approvers:\s+group dba; 2 distinct users needed$/m);
    expect(text).toMatch(
      /^Grant covers: every operation matching rule orders-need-dba \(its match: see the policy\) by sam via system:serviceaccount:agents:agent on connection orders-api, without asking again$/m,
    );
    expect(text).toMatch(/^ {2}ann {2}2026-01-01T11:59:00Z {2}"ok"$/m);
    expect(text.trimEnd().endsWith("Decide: ...")).toBe(true);
  });

  it("lists grants", () => {
    const text = grantsTable(
      [
        {
          namespace: "agents",
          name: "g-1",
          requester: "sam",
          connection: "db",
          rule: "r",
          approvers: ["ann"],
          expiresAt: "2026-01-01T12:05:00Z",
        },
      ],
      { now: NOW, allNamespaces: false },
    );
    expect(text).toMatch(/^g-1\s+sam\s+db\s+r\s+ann\s+5m$/m);
  });
});

describe("client-side checks", () => {
  it("says why a decision cannot be made before asking the API server", () => {
    expect(() => checkDecidable(req(), "approve", "ann")).toThrow(/already approved.*distinct users/);
    expect(() => checkDecidable(req(), "approve", "sam")).toThrow(/cannot approve it yourself/);
    expect(() => checkDecidable(req({ phase: "Expired" }), "approve", "bob")).toThrow(/is Expired/);
    expect(() => checkDecidable(req(), "approve", "bob")).not.toThrow();
    expect(() => checkDecidable(req(), "deny", "sam")).not.toThrow();
    expect(new PluginError("x")).toBeInstanceOf(Error);
  });
});

describe("flags", () => {
  it.each([
    [["--help"], 0, /Usage: kubectl airlock <command>/],
    [[], 2, /Usage: kubectl airlock <command>/],
    [["approve", "--help"], 0, /Usage: kubectl airlock approve NAME/],
    [["grants", "-h"], 0, /open grants/],
  ])("%j prints help", async (argv, code, pattern) => {
    const t = io();
    expect(await main(argv, t.io)).toBe(code);
    expect(t.out()).toMatch(pattern);
    expect(t.out()).toMatch(/--kubeconfig FILE/);
  });

  it.each([
    [["frobnicate"], /unknown command "frobnicate"/],
    [["approve"], /needs exactly one request NAME/],
    [["deny", "x"], /deny needs --reason/],
    [["requests", "-o", "table"], /--output must be json or yaml/],
    [["requests", "-n", "a", "-A"], /-n NS or -A, not both/],
    [["approve", "x", "--reason", "r"], /--reason is for deny/],
    [["approve", "x", "--as", "ann"], /--as is only for --sidecar/],
    [["requests", "--bogus"], /Unknown option '--bogus'/],
  ])("%j is a usage error (exit 2)", async (argv, pattern) => {
    const t = io();
    expect(await main(argv, t.io)).toBe(2);
    expect(t.err()).toMatch(pattern);
  });

  it("fails clearly without a reachable cluster or sidecar (exit 1)", async () => {
    const t = io();
    expect(await main(["requests", "--kubeconfig", "/nonexistent/kubeconfig"], t.io)).toBe(1);
    expect(t.err()).toMatch(/^error: cannot load kubeconfig/);
    const s = io();
    expect(await main(["requests", "--sidecar", "http://127.0.0.1:1"], s.io)).toBe(1);
    expect(s.err()).toMatch(/^error: no sidecar answers at http:\/\/127\.0\.0\.1:1/);
  });
});
