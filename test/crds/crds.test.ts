// The CRDs on a real kube-apiserver, used the way a user uses them: kubectl apply, explain, get,
// and the TypeScript client creating, listing and watching both kinds.
import { readdirSync, readFileSync } from "node:fs";
import { CustomObjectsApi, Watch } from "@kubernetes/client-node";
import { beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { type AgentAccessPolicy, API_VERSION, GROUP, VERSION } from "../../api/src/index.ts";
import { compilePolicies } from "../../sidecar/src/policy/compile.ts";
import { connect } from "../envtest/connect.ts";

const k8s = connect();
const repo = new URL("../../", import.meta.url);
let ns: string;

const kubectl = async (args: string[], stdin?: string) => {
  const r = await k8s.kubectl(args, stdin === undefined ? {} : { stdin });
  return { ...r, out: r.stdout + r.stderr };
};

/** A minimal valid policy to derive broken ones from. */
const base = () => ({
  apiVersion: API_VERSION,
  kind: "AgentAccessPolicy",
  metadata: { name: "p", namespace: ns },
  spec: {
    connections: [
      { name: "db", protocol: "postgres", target: { host: "db", port: 5432 } },
      { name: "api", protocol: "http", target: { host: "api", port: 443 } },
    ],
    rules: [
      { name: "read", action: "allow", connections: ["db"], match: { sql: { statements: ["read"] } } },
      {
        name: "delete-needs-dba",
        action: "requireApproval",
        connections: ["db"],
        match: { sql: { statements: ["delete"] } },
        approval: { approvers: { groups: ["dba"] }, minApprovals: 1, grantTtl: "10m", timeout: "5m" },
      },
    ],
    masking: [{ name: "pii", connections: ["db"], detectors: ["email"], strategy: "partial" }],
  },
});
type Policy = ReturnType<typeof base>;

beforeAll(async () => {
  const applied = await kubectl(["apply", "-f", new URL("crds/", repo).pathname]);
  expect(applied.code, applied.out).toBe(0);
  const established = await kubectl([
    "wait",
    "--for=condition=Established",
    "--timeout=60s",
    `crd/agentaccesspolicies.${GROUP}`,
    `crd/accessrequests.${GROUP}`,
  ]);
  expect(established.code, established.out).toBe(0);
  // kubectl caches discovery from before the CRDs existed; refresh it as a user's next call would.
  expect((await kubectl(["api-resources", "--cached=false", `--api-group=${GROUP}`])).code).toBe(0);
  ns = await k8s.createNamespace("crds");
});

describe("kubectl apply -f crds/", () => {
  it("establishes both CRDs with their short names and category", async () => {
    const r = await kubectl(["api-resources", `--api-group=${GROUP}`, "-o", "wide"]);
    expect(r.code, r.out).toBe(0);
    expect(r.stdout).toMatch(/agentaccesspolicies\s+aap\s+airlock\.dev\/v1alpha1\s+true\s+AgentAccessPolicy/);
    expect(r.stdout).toMatch(/accessrequests\s+areq\s+airlock\.dev\/v1alpha1\s+true\s+AccessRequest/);
    expect(r.stdout).toMatch(/airlock/);
  });

  it("accepts every example under examples/", async () => {
    const files = readdirSync(new URL("examples/", repo)).filter((f) => f.endsWith(".yaml"));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const file of files) {
      const doc = parse(readFileSync(new URL(`examples/${file}`, repo), "utf8"));
      doc.metadata.namespace = ns;
      const r = await kubectl(["apply", "-f", "-"], stringify(doc));
      expect(r.code, `${file}: ${r.out}`).toBe(0);
    }
  });
});

const VAULT = {
  address: "https://vault.vault.svc:8200",
  auth: { role: "airlock", audience: "vault" },
  path: "database/creds/readonly",
};

describe("broken policies are rejected by the API server with a message that says why", () => {
  const cases: [string, (p: Policy) => void, RegExp][] = [
    [
      "duplicate connection names",
      (p) => p.spec.connections.push({ ...p.spec.connections[0]! }),
      /spec\.connections\[2\]: Duplicate value/,
    ],
    [
      "duplicate rule names",
      (p) => p.spec.rules.push({ ...p.spec.rules[0]! }),
      /spec\.rules\[2\]: Duplicate value/,
    ],
    [
      "a rule naming an unknown connection",
      (p) => (p.spec.rules[0]!.connections = ["ghost"]),
      /spec\.rules: Invalid value: rules\[\]\.connections must name connections in spec\.connections/,
    ],
    [
      "approval on an allow rule",
      (p) => Object.assign(p.spec.rules[0]!, { approval: { approvers: { groups: ["x"] } } }),
      /spec\.rules\[0\]\.approval: Invalid value: approval is only allowed on rules whose action is requireApproval/,
    ],
    [
      "requireApproval without approval",
      (p) => delete (p.spec.rules[1] as { approval?: unknown }).approval,
      /requireApproval rules need approval\.approvers/,
    ],
    [
      "minApprovals below 1",
      (p) => (p.spec.rules[1]!.approval!.minApprovals = 0),
      /minApprovals in body should be greater than or equal to 1/,
    ],
    [
      "a malformed duration",
      (p) => (p.spec.rules[1]!.approval!.timeout = "5 minutes"),
      /approval\.timeout: Invalid value: "5 minutes": must be a duration such as 30s, 5m or 1h30m/,
    ],
    [
      "a grant longer than a day",
      (p) => (p.spec.rules[1]!.approval!.grantTtl = "48h"),
      /approval\.grantTtl: Invalid value: "48h": must be at most 24h/,
    ],
    [
      "a masking rule naming an unknown connection",
      (p) => (p.spec.masking[0]!.connections = ["ghost"]),
      /spec\.masking: Invalid value: masking\[\]\.connections must name connections in spec\.connections/,
    ],
    [
      "a masking rule with nothing to mask",
      (p) => (p.spec.masking[0] = { name: "m", strategy: "redact" } as Policy["spec"]["masking"][number]),
      /a masking rule needs detectors, fields or columns/,
    ],
    [
      "an unknown protocol",
      (p) => ((p.spec.connections[0] as { protocol: string }).protocol = "mysql"),
      /Unsupported value: "mysql"/,
    ],
    [
      "an unknown action",
      (p) => ((p.spec.rules[0] as { action: string }).action = "permit"),
      /Unsupported value: "permit"/,
    ],
    [
      "a port out of range",
      (p) => (p.spec.connections[0]!.target.port = 70000),
      /should be less than or equal to 65535/,
    ],
    [
      "postgres credentials on an http connection",
      (p) =>
        Object.assign(p.spec.connections[1]!, { credentials: { secretRef: { name: "s" }, postgres: {} } }),
      /credentials\.postgres is only for protocol postgres/,
    ],
    [
      "Vault credentials on an ssh connection with a database path",
      (p) =>
        p.spec.connections.push({
          name: "box",
          protocol: "ssh",
          target: { host: "box", port: 22 },
          credentials: { vault: VAULT, ssh: { username: "ops", certificate: { principals: ["ops"] } } },
        } as (typeof p.spec.connections)[number]),
      /for protocol ssh, credentials\.vault signs the session certificates: its path is the SSH secrets engine's <mount>\/sign\/<role>/,
    ],
    [
      "a PostgreSQL Vault path that is not <mount>/creds/<role>",
      (p) =>
        Object.assign(p.spec.connections[0]!, {
          credentials: { vault: { ...VAULT, path: "secret/data/db" } },
        }),
      /credentials\.vault\.path must be the database secrets engine's <mount>\/creds\/<role> for protocol postgres/,
    ],
    [
      "a Vault path that is not a path",
      (p) =>
        Object.assign(p.spec.connections[1]!, {
          credentials: { vault: { ...VAULT, path: "secret/../sys/raw" } },
        }),
      /path segments may not be \. or \.\./,
    ],
    [
      "refreshSeconds on a PostgreSQL Vault credential",
      (p) =>
        Object.assign(p.spec.connections[0]!, {
          credentials: { vault: { ...VAULT, refreshSeconds: 60 } },
        }),
      /credentials\.vault\.refreshSeconds is only for protocols http and mcp/,
    ],
    [
      "approvedPath on an http connection",
      (p) =>
        Object.assign(p.spec.connections[1]!, {
          credentials: {
            vault: { ...VAULT, path: "secret/data/api", approvedPath: "database/creds/writer" },
          },
        }),
      /credentials\.vault\.approvedPath is only for protocol postgres/,
    ],
    [
      "an approvedPath that is not <mount>/creds/<role>",
      (p) =>
        Object.assign(p.spec.connections[0]!, {
          credentials: { vault: { ...VAULT, approvedPath: "secret/data/writer" } },
        }),
      /approvedPath must be the database secrets engine's <mount>\/creds\/<role>/,
    ],
    [
      "a refreshSeconds below 5",
      (p) =>
        Object.assign(p.spec.connections[1]!, {
          credentials: { vault: { ...VAULT, path: "secret/data/api", refreshSeconds: 1 } },
        }),
      /refreshSeconds in body should be greater than or equal to 5/,
    ],
    [
      "an ssh connection with Vault and a private key to use",
      (p) =>
        p.spec.connections.push({
          name: "box",
          protocol: "ssh",
          target: { host: "box", port: 22 },
          credentials: {
            vault: { ...VAULT, path: "ssh/sign/agents" },
            ssh: { username: "ops", privateKeyKey: "id" },
          },
        } as (typeof p.spec.connections)[number]),
      /with credentials\.ssh\.certificate and no caKey/,
    ],
    [
      "an ssh certificate with neither caKey nor Vault",
      (p) =>
        p.spec.connections.push({
          name: "box",
          protocol: "ssh",
          target: { host: "box", port: 22 },
          credentials: {
            secretRef: { name: "s" },
            ssh: { username: "ops", certificate: { principals: ["ops"] } },
          },
        } as (typeof p.spec.connections)[number]),
      /credentials\.ssh\.certificate needs caKey, or credentials\.vault to sign with/,
    ],
    [
      "Vault over plain http to a non-loopback address",
      (p) =>
        Object.assign(p.spec.connections[0]!, {
          credentials: { vault: { ...VAULT, address: "http://vault.vault.svc:8200" } },
        }),
      /address must be https:\/\/ \(http:\/\/ only for 127\.0\.0\.1, localhost or \[::1\]\)/,
    ],
    [
      "a Vault fallback without a Secret to fall back to",
      (p) =>
        Object.assign(p.spec.connections[0]!, {
          credentials: { vault: { ...VAULT, fallback: "secretRef" } },
        }),
      /vault\.fallback secretRef needs credentials\.secretRef/,
    ],
    [
      "a misspelled Vault fallback",
      (p) =>
        Object.assign(p.spec.connections[0]!, { credentials: { vault: { ...VAULT, fallback: "static" } } }),
      /Unsupported value: "static": supported values: "none", "secretRef"/,
    ],
    [
      "credentials naming no source",
      (p) => Object.assign(p.spec.connections[0]!, { credentials: { postgres: {} } }),
      /credentials need secretRef or vault/,
    ],
    [
      "an HTTP error format on a postgres connection",
      (p) => Object.assign(p.spec.connections[0]!, { errorFormat: "anthropic" }),
      /errorFormat is only for protocol http/,
    ],
    [
      "agent TLS on an HTTP connection",
      (p) => Object.assign(p.spec.connections[1]!, { agentTls: { mode: "allow" } }),
      /agentTls is only for protocol postgres/,
    ],
    [
      "a misspelled agent TLS mode",
      (p) => Object.assign(p.spec.connections[0]!, { agentTls: { mode: "required" } }),
      /Unsupported value: "required": supported values: "disable", "allow", "require"/,
    ],
    [
      "a misspelled error format",
      (p) => Object.assign(p.spec.connections[1]!, { errorFormat: "anthropik" }),
      /Unsupported value: "anthropik": supported values: "airlock", "anthropic", "openai"/,
    ],
    [
      "requireUserToken without an issuer",
      (p) => Object.assign(p.spec, { identity: { requireUserToken: true } }),
      /requireUserToken needs identity\.oidc/,
    ],
    [
      "approvers without groups or users",
      (p) => (p.spec.rules[1]!.approval!.approvers = {} as { groups: string[] }),
      /approvers need at least one group or user/,
    ],
    [
      "a symmetric token algorithm",
      (p) =>
        Object.assign(p.spec, {
          identity: { oidc: { issuer: "https://i", audiences: ["a"], algorithms: ["HS256"] } },
        }),
      /Unsupported value: "HS256"/,
    ],
    [
      "an invalid connection name",
      (p) => (p.spec.connections[0]!.name = "Orders_DB"),
      /spec\.connections\[0\]\.name: Invalid value: "Orders_DB": spec\.connections\[0\]\.name in body should match/,
    ],
    [
      "match.mcp on a rule whose connections are not mcp",
      (p) => Object.assign(p.spec.rules[0]!, { match: { mcp: { tools: ["get_*"] } } }),
      /rules with match\.mcp must list connections, all of protocol mcp/,
    ],
    [
      "match.http on a rule naming an mcp connection",
      (p) => {
        p.spec.connections.push({
          name: "tools",
          protocol: "mcp",
          target: { host: "mcp.internal", port: 80 },
        });
        Object.assign(p.spec.rules[0]!, { connections: ["tools"], match: { http: { paths: ["/mcp"] } } });
      },
      /match\.http does not apply to protocol mcp connections/,
    ],
    [
      "mcp settings on a connection of another protocol",
      (p) =>
        Object.assign(p.spec.connections[1]!, {
          mcp: { pinnedTools: [{ name: "t", digest: `sha256:${"a".repeat(64)}` }] },
        }),
      /mcp is only for protocol mcp/,
    ],
    [
      "a pinned tool digest that is not sha256: and 64 hex digits",
      (p) => {
        p.spec.connections.push({
          name: "tools",
          protocol: "mcp",
          target: { host: "mcp.internal", port: 80 },
          mcp: { pinnedTools: [{ name: "t", digest: "sha256:ABC" }] },
        } as unknown as Policy["spec"]["connections"][number]);
      },
      /spec\.connections\[2\]\.mcp\.pinnedTools\[0\]\.digest: Invalid value: "sha256:ABC"/,
    ],
    [
      "a tool pinned twice",
      (p) => {
        const pin = { name: "t", digest: `sha256:${"a".repeat(64)}` };
        p.spec.connections.push({
          name: "tools",
          protocol: "mcp",
          target: { host: "mcp.internal", port: 80 },
          mcp: { pinnedTools: [pin, pin] },
        } as unknown as Policy["spec"]["connections"][number]);
      },
      /spec\.connections\[2\]\.mcp\.pinnedTools\[1\]: Duplicate value/,
    ],
    [
      "server requests on a requireApproval rule",
      (p) => {
        p.spec.connections.push({
          name: "tools",
          protocol: "mcp",
          target: { host: "mcp.internal", port: 80 },
        });
        Object.assign(p.spec.rules[1]!, {
          connections: ["tools"],
          match: { mcp: { serverRequests: ["sampling/createMessage"] } },
        });
      },
      /spec\.rules\[1\]\.match\.mcp\.serverRequests: Invalid value: match\.mcp\.serverRequests cannot require approval/,
    ],
    [
      "a server request method with a space",
      (p) => {
        p.spec.connections.push({
          name: "tools",
          protocol: "mcp",
          target: { host: "mcp.internal", port: 80 },
        });
        Object.assign(p.spec.rules[0]!, {
          connections: ["tools"],
          match: { mcp: { serverRequests: ["sampling create"] } },
        });
      },
      /spec\.rules\[0\]\.match\.mcp\.serverRequests\[0\]: Invalid value: "sampling create"/,
    ],
    [
      "an argument condition without tools",
      (p) => {
        p.spec.connections.push({
          name: "tools",
          protocol: "mcp",
          target: { host: "mcp.internal", port: 80 },
        });
        Object.assign(p.spec.rules[0]!, {
          connections: ["tools"],
          match: { mcp: { methods: ["tools/call"], when: 'args.env == "prod"' } },
        });
      },
      /spec\.rules\[0\]\.match\.mcp: Invalid value: match\.mcp\.when applies to tools\/call requests: it needs tools/,
    ],
    [
      "no connections at all",
      (p) => (p.spec.connections = []),
      /spec\.connections: Invalid value: 0: spec\.connections in body should have at least 1 items/,
    ],
  ];

  it("accepts the unbroken base policy (so each case below fails only for its own reason)", async () => {
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(base()));
    expect(r.code, r.out).toBe(0);
  });

  it("accepts an mcp connection with credentials.http and match.mcp rules", async () => {
    const p = base();
    p.spec.connections.push({
      name: "tools",
      protocol: "mcp",
      target: { host: "mcp.internal", port: 443 },
      credentials: { secretRef: { name: "gh" }, http: { header: "Authorization", key: "token" } },
    } as unknown as Policy["spec"]["connections"][number]);
    p.spec.rules.push({
      name: "weather",
      action: "allow",
      connections: ["tools"],
      match: { mcp: { methods: ["tools/list"], tools: ["get_*"], resources: ["file:///docs/**"] } },
    } as unknown as Policy["spec"]["rules"][number]);
    p.spec.rules.push({
      name: "not-prod",
      action: "deny",
      connections: ["tools"],
      match: { mcp: { tools: ["*"], when: 'has(args.env) && args.env == "prod"' } },
    } as unknown as Policy["spec"]["rules"][number]);
    p.spec.rules.push({
      name: "roots",
      action: "allow",
      connections: ["tools"],
      match: { mcp: { serverRequests: ["roots/list", "elicitation/*"] } },
    } as unknown as Policy["spec"]["rules"][number]);
    Object.assign(p.spec.connections[2]!, {
      mcp: {
        pinnedTools: [{ name: "get_weather", digest: `sha256:${"0123456789abcdef".repeat(4)}` }],
        approvalWaitSeconds: 30,
      },
    });
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.code, r.out).toBe(0);
  });

  it("accepts a Vault credential on the postgres connection", async () => {
    const p = base();
    Object.assign(p.spec.connections[0]!, {
      credentials: { vault: { ...VAULT, approvedPath: "database/creds/writer" } },
    });
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.code, r.out).toBe(0);
  });

  it("accepts an ssh connection whose certificates Vault signs (no Secret, no CA key)", async () => {
    const p = base();
    p.spec.connections.push({
      name: "box",
      protocol: "ssh",
      target: { host: "box", port: 22 },
      knownHosts: { name: "kh", key: "known_hosts" },
      credentials: {
        vault: { ...VAULT, path: "ssh/sign/agents" },
        ssh: { username: "ops", certificate: { principals: ["ops"], validity: "5m" } },
      },
    } as (typeof p.spec.connections)[number]);
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.code, r.out).toBe(0);
  });

  it("accepts a Vault KV credential on the http connection", async () => {
    const p = base();
    Object.assign(p.spec.connections[1]!, {
      credentials: {
        vault: { ...VAULT, path: "secret/data/api", refreshSeconds: 60 },
        http: { key: "token" },
      },
    });
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.code, r.out).toBe(0);
  });

  it.each(cases)("%s", async (_label, breakIt, message) => {
    const p = base();
    breakIt(p);
    const r = await kubectl(["apply", "-f", "-"], JSON.stringify(p));
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(message);
  });
});

// tls.mode passthrough: what cannot be enforced on an opaque tunnel is refused, by the API server
// (CEL) and, with the same path and reason, where the sidecar loads a policy (compilePolicies), so
// a policy that reaches a sidecar some other way (a file, `airlock policy test`) is refused too.
describe("tls.mode passthrough: refused where it could not be enforced, by the API server and the loader", () => {
  /** The base policy plus a passthrough connection `pinned` and the rule that opens it. */
  const withPinned = () => {
    const p = base();
    p.metadata.name = "pinned";
    p.spec.connections.push({
      name: "pinned",
      protocol: "http",
      target: { host: "pinned.example.com", port: 443, aliases: ["10.0.0.9"] },
      tls: { mode: "passthrough" },
    } as Policy["spec"]["connections"][number]);
    p.spec.rules.push({
      name: "open-pinned",
      action: "allow",
      connections: ["pinned"],
      match: { http: { methods: ["CONNECT"] } },
    } as unknown as Policy["spec"]["rules"][number]);
    return p;
  };
  const pinned = (p: Policy) => p.spec.connections[2] as Record<string, unknown>;
  const rule = (p: Policy, r: Record<string, unknown>) =>
    p.spec.rules.push(r as unknown as Policy["spec"]["rules"][number]);
  const cases: [string, (p: Policy) => void, RegExp, string, RegExp][] = [
    [
      "passthrough on a postgres connection",
      (p) => Object.assign(p.spec.connections[0]!, { tls: { mode: "passthrough" } }),
      /tls\.mode passthrough is only for protocol http/,
      "spec.connections[0].tls.mode",
      /only for protocol http; connection db speaks postgres/,
    ],
    [
      "credentials on a passthrough connection",
      (p) =>
        Object.assign(pinned(p), {
          credentials: { secretRef: { name: "s" }, http: { header: "Authorization", key: "t" } },
        }),
      /credentials, userHeader, errorFormat, limits and listen cannot be enforced/,
      "spec.connections[2].credentials",
      /passthrough: the agent's TLS is relayed opaque, so credentials cannot be enforced/,
    ],
    [
      "an upstream CA on a passthrough connection",
      (p) =>
        Object.assign(pinned(p), {
          tls: { mode: "passthrough", caSecretRef: { name: "ca", key: "ca.crt" } },
        }),
      /caSecretRef and serverName cannot apply/,
      "spec.connections[2].tls.caSecretRef",
      /tls\.caSecretRef cannot be enforced/,
    ],
    [
      "a local listener on a passthrough connection",
      (p) => Object.assign(pinned(p), { listen: { port: 18080 } }),
      /listen cannot be enforced/,
      "spec.connections[2].listen",
      /listen cannot be enforced/,
    ],
    [
      "a path rule on a passthrough connection",
      (p) =>
        rule(p, {
          name: "read-v1",
          action: "allow",
          connections: ["pinned"],
          match: { http: { methods: ["GET"], paths: ["/v1/**"] } },
        }),
      /a rule on a tls\.mode passthrough connection can match only methods \[CONNECT\]/,
      "spec.rules[3].match.http",
      /stay encrypted end to end: its methods GET, paths cannot be enforced there/,
    ],
    [
      "a deny rule for a path, written for every connection, in a policy with a passthrough connection",
      (p) => rule(p, { name: "no-admin", action: "deny", match: { http: { paths: ["/admin/**"] } } }),
      /can match only methods \[CONNECT\]/,
      "spec.rules[3].match.http",
      /its every method, paths cannot be enforced there; match only methods \[CONNECT\] on it, or list the rule's connections without it/,
    ],
    [
      "approval on a passthrough connection",
      (p) =>
        rule(p, {
          name: "ask",
          action: "requireApproval",
          connections: ["pinned"],
          match: { http: { methods: ["CONNECT"] } },
          approval: { approvers: { groups: ["ops"] } },
        }),
      /an opaque tunnel cannot be held for approval/,
      "spec.rules[3].action",
      /an opaque tunnel cannot be held for approval/,
    ],
    [
      "masking on a passthrough connection",
      (p) =>
        p.spec.masking.push({
          name: "pinned-pii",
          connections: ["pinned"],
          detectors: ["email"],
          strategy: "redact",
        }),
      /masking cannot apply to a tls\.mode passthrough connection/,
      "spec.masking[1].connections",
      /whose bytes stay encrypted: nothing can be masked there/,
    ],
    [
      "masking for every connection in a policy with a passthrough connection",
      (p) =>
        p.spec.masking.push({
          name: "all-pii",
          detectors: ["email"],
          strategy: "redact",
        } as Policy["spec"]["masking"][number]),
      /masking cannot apply to a tls\.mode passthrough connection/,
      "spec.masking[1]",
      /masking rule all-pii applies to passthrough connection pinned/,
    ],
    [
      "CONNECT allowed on an intercepted connection",
      (p) =>
        rule(p, {
          name: "tunnel-api",
          action: "allow",
          connections: ["api"],
          match: { http: { methods: ["CONNECT"] } },
        }),
      /a rule allowing CONNECT opens an opaque tunnel, which only tls\.mode passthrough connections have/,
      "spec.rules[3].connections",
      /\(api is intercepted and judged per request\)/,
    ],
    [
      "CONNECT allowed without naming connections",
      (p) => rule(p, { name: "tunnel-all", action: "allow", match: { http: { methods: ["CONNECT"] } } }),
      /it must list its connections, all of them passthrough/,
      "spec.rules[3].connections",
      /must list its connections, all of them passthrough/,
    ],
    [
      "an allow rule without match naming a passthrough connection",
      (p) => rule(p, { name: "everything", action: "allow", connections: ["pinned"] }),
      /an allow rule without match opens nothing on a tls\.mode passthrough connection/,
      "spec.rules[3].match",
      /opens nothing on passthrough connection pinned/,
    ],
  ];

  it("accepts a passthrough connection opened by a CONNECT rule (API server and loader)", async () => {
    const p = withPinned();
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.code, r.out).toBe(0);
    expect(compilePolicies([p as unknown as AgentAccessPolicy]).problems).toEqual([]);
  });

  it("refuses a misspelled mode, and a passthrough key beside mode is refused, never pruned", async () => {
    const p = withPinned();
    Object.assign(pinned(p), { tls: { mode: "passthru" } });
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.out).toMatch(
      /Unsupported value: "passthru": supported values: "verify-full", "verify-ca", "disable", "passthrough"/,
    );
    const q = withPinned();
    Object.assign(pinned(q), { tls: { passthrough: true } });
    // Dropping the key would leave verify-full: interception, never looser; still it is refused.
    const k = await kubectl(["apply", "--validate=false", "--dry-run=server", "-f", "-"], JSON.stringify(q));
    expect(k.code).not.toBe(0);
    expect(k.out).toMatch(/unknown field/);
    expect(compilePolicies([q as unknown as AgentAccessPolicy]).problems.length).toBeGreaterThan(0);
  });

  it.each(cases)("%s", async (_label, breakIt, apiMessage, path, loaderMessage) => {
    const p = withPinned();
    breakIt(p);
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toMatch(apiMessage);
    const { problems, set } = compilePolicies([p as unknown as AgentAccessPolicy]);
    expect(problems).toContainEqual(
      expect.objectContaining({
        policy: `${ns}/pinned`,
        path,
        message: expect.stringMatching(loaderMessage),
      }),
    );
    // Nothing of a refused policy loads.
    expect(set.connections.size).toBe(0);
  });
});

// The API server prunes unknown fields of a structural schema before validation: with
// --validate=false or warn (or a client sending no fieldValidation) a misspelled key would be
// dropped and the rule would match more than its author meant. The CRD refuses them itself.
describe("a misspelled field is refused however the policy is written, never pruned", () => {
  const typos: [string, (p: Policy) => void, RegExp][] = [
    [
      "method: for methods: in an HTTP match",
      (p) =>
        p.spec.rules.push({
          name: "get-only",
          action: "allow",
          connections: ["api"],
          match: { http: { method: ["GET"] } },
        } as unknown as Policy["spec"]["rules"][number]),
      /spec\.rules\[2\]\.match\.http: Invalid value: unknown field \(misspelled\?\); the fields here are: methods, paths, websocket/,
    ],
    [
      "path: for paths:",
      (p) =>
        p.spec.rules.push({
          name: "one-path",
          action: "allow",
          connections: ["api"],
          match: { http: { path: ["/v1/x"] } },
        } as unknown as Policy["spec"]["rules"][number]),
      /spec\.rules\[2\]\.match\.http: Invalid value: unknown field/,
    ],
    [
      "maskng: for masking: at the top of spec",
      (p) => Object.assign(p.spec, { maskng: p.spec.masking }),
      /spec: Invalid value: unknown field \(misspelled\?\); the fields here are: podSelector, identity, connections, rules, masking, audit/,
    ],
    [
      "a key inside a list item (connections[0].targte)",
      (p) => Object.assign(p.spec.connections[0]!, { targte: { host: "x" } }),
      /spec\.connections\[0\]: Invalid value: unknown field/,
    ],
  ];

  it.each(typos)(
    "%s, with --validate=false, --validate=warn and server-side apply",
    async (_l, breakIt, message) => {
      const p = base();
      p.metadata.name = "typo";
      breakIt(p);
      for (const mode of [["--validate=false"], ["--validate=warn"], ["--server-side"], []]) {
        const r = await kubectl(["apply", ...mode, "-f", "-"], JSON.stringify(p));
        expect(r.code, `${mode.join(" ")}: ${r.out}`).not.toBe(0);
        expect(r.out, mode.join(" ")).toMatch(message);
      }
      const got = await kubectl(["get", "aap", "typo", "-n", ns]);
      expect(got.out).toMatch(/NotFound/);
    },
  );

  it("is refused to a client that sends no fieldValidation (the server's default only warns)", async () => {
    const p = base();
    p.metadata.name = "typo-ts";
    Object.assign(p.spec.rules[0]!.match!.sql!, { statement: ["delete"] });
    await expect(
      k8s.kubeConfig.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: "agentaccesspolicies",
        body: p,
      }),
    ).rejects.toThrow(/unknown field \(misspelled\?\); the fields here are: statements, tables, functions/);
  });

  it("still accepts labels of any name under podSelector.matchLabels (a map, not an object)", async () => {
    const p = base();
    p.metadata.name = "labels";
    Object.assign(p.spec, {
      podSelector: { matchLabels: { "app.kubernetes.io/name": "agent", anything: "x" } },
    });
    const r = await kubectl(["apply", "--dry-run=server", "-f", "-"], JSON.stringify(p));
    expect(r.code, r.out).toBe(0);
  });
});

describe("kubectl explain", () => {
  it("teaches the rules field from its descriptions", async () => {
    // explain wraps long descriptions: compare with whitespace collapsed.
    const flat = (text: string) => text.replace(/\s+/g, " ");
    const r = await kubectl(["explain", "aap.spec.rules"]);
    expect(r.code, r.out).toBe(0);
    expect(flat(r.stdout)).toMatch(/Rules, evaluated deny, requireApproval, allow; no match denies\./);
    expect(r.stdout).toMatch(/action\s+<string> -required-/);
    expect(r.stdout).toMatch(/enum: allow, deny, requireApproval/);
    const deep = await kubectl(["explain", "aap.spec.rules.approval.grantTtl"]);
    expect(flat(deep.stdout)).toMatch(/later matching operations by the same requester pass for this long/);
    const areq = await kubectl(["explain", "areq.status.approvals.user"]);
    expect(flat(areq.stdout)).toMatch(/the API server guarantees it is the caller's own name/);
  });
  it("explains MCP server requests and tool pins", async () => {
    const flat = (text: string) => text.replace(/\s+/g, " ");
    const sr = await kubectl(["explain", "aap.spec.rules.match.mcp.serverRequests"]);
    expect(sr.code, sr.out).toBe(0);
    expect(flat(sr.stdout)).toMatch(/Requests the server sends to the agent .* are refused/);
    const when = await kubectl(["explain", "aap.spec.rules.match.mcp.when"]);
    expect(flat(when.stdout)).toMatch(/A CEL expression over a tools\/call request/);
    expect(flat(when.stdout)).toMatch(/Fail closed: when evaluation errors/);
    const pins = await kubectl(["explain", "aap.spec.connections.mcp.pinnedTools.digest"]);
    expect(flat(pins.stdout)).toMatch(
      /canonical JSON \(RFC 8785\) of name, description, inputSchema and annotations/,
    );
  });
});

describe("printer columns", () => {
  it("kubectl get aap shows connections, rules, Ready and age", async () => {
    const p = base();
    p.metadata.name = "columns";
    expect((await kubectl(["apply", "-f", "-"], JSON.stringify(p))).code).toBe(0);
    // The policy controller writes these status fields; write them as it would, through the status subresource.
    const status = {
      status: {
        observedGeneration: 1,
        connections: "db,api",
        rules: 2,
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "Valid",
            message: "all references resolve",
            lastTransitionTime: new Date().toISOString(),
          },
        ],
      },
    };
    const patched = await kubectl([
      "patch",
      "aap",
      "columns",
      "-n",
      ns,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify(status),
    ]);
    expect(patched.code, patched.out).toBe(0);
    const r = await kubectl(["get", "aap", "columns", "-n", ns]);
    expect(r.stdout).toMatch(/^NAME\s+CONNECTIONS\s+RULES\s+READY\s+AGE\s*$/m);
    expect(r.stdout).toMatch(/^columns\s+db,api\s+2\s+True\s+\d+s\s*$/m);
    const wide = await kubectl(["get", "aap", "columns", "-n", ns, "-o", "wide"]);
    expect(wide.stdout).toMatch(/REASON/);
    expect(wide.stdout).toMatch(/Valid/);
  });

  it("kubectl get areq shows phase, requester, connection, operation and age", async () => {
    const areq = accessRequest("columns-req");
    expect((await kubectl(["apply", "-f", "-"], JSON.stringify(areq))).code).toBe(0);
    const patched = await kubectl([
      "patch",
      "areq",
      "columns-req",
      "-n",
      ns,
      "--subresource=status",
      "--type=merge",
      "-p",
      '{"status":{"phase":"Pending"}}',
    ]);
    expect(patched.code, patched.out).toBe(0);
    const r = await kubectl(["get", "areq", "-n", ns]);
    expect(r.stdout).toMatch(/^NAME\s+PHASE\s+REQUESTER\s+CONNECTION\s+OPERATION\s+AGE\s*$/m);
    expect(r.stdout).toMatch(
      /^columns-req\s+Pending\s+sam@example\.com\s+db\s+DELETE FROM orders WHERE id = \$1\s+\d+s/m,
    );
  });
});

function accessRequest(name: string) {
  return {
    apiVersion: API_VERSION,
    kind: "AccessRequest",
    metadata: { name, namespace: ns },
    spec: {
      policy: "p",
      rule: "delete-needs-dba",
      connection: "db",
      requester: {
        user: "sam@example.com",
        groups: ["support"],
        serviceAccount: `system:serviceaccount:${ns}:agent`,
        pod: "agent-0",
      },
      operation: { protocol: "postgres", summary: "DELETE FROM orders WHERE id = $1" },
      approvers: { groups: ["dba"] },
      minApprovals: 1,
      expiresAt: new Date(Date.now() + 300_000).toISOString(),
    },
  };
}

describe("AccessRequest", () => {
  it("keeps spec immutable once written", async () => {
    expect((await kubectl(["apply", "-f", "-"], JSON.stringify(accessRequest("immutable")))).code).toBe(0);
    const r = await kubectl([
      "patch",
      "areq",
      "immutable",
      "-n",
      ns,
      "--type=merge",
      "-p",
      '{"spec":{"minApprovals":0}}',
    ]);
    expect(r.code).not.toBe(0);
    const r2 = await kubectl([
      "patch",
      "areq",
      "immutable",
      "-n",
      ns,
      "--type=merge",
      "-p",
      '{"spec":{"connection":"other"}}',
    ]);
    expect(r2.out).toMatch(/spec is immutable/);
  });

  it("rejects an unknown phase", async () => {
    const r = await kubectl([
      "patch",
      "areq",
      "immutable",
      "-n",
      ns,
      "--subresource=status",
      "--type=merge",
      "-p",
      '{"status":{"phase":"Maybe"}}',
    ]);
    expect(r.out).toMatch(/Unsupported value: "Maybe"/);
  });
});

describe("the TypeScript client", () => {
  const api = () => k8s.kubeConfig.makeApiClient(CustomObjectsApi);

  it.each([
    ["agentaccesspolicies", () => ({ ...base(), metadata: { name: "from-ts", namespace: ns } })],
    ["accessrequests", () => accessRequest("from-ts")],
  ] as const)("creates, lists and watches %s", async (plural, make) => {
    const seen: string[] = [];
    const watch = new Watch(k8s.kubeConfig);
    let resolveAdded: () => void;
    const added = new Promise<void>((r) => {
      resolveAdded = r;
    });
    const req = await watch.watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${plural}`,
      {},
      (type, obj: { metadata: { name: string } }) => {
        seen.push(`${type} ${obj.metadata.name}`);
        if (type === "ADDED" && obj.metadata.name === "from-ts") resolveAdded();
      },
      () => {},
    );
    try {
      const created = (await api().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural,
        body: make(),
      })) as {
        metadata: { uid: string };
      };
      expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
      const list = (await api().listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural,
      })) as {
        items: { metadata: { name: string } }[];
      };
      expect(list.items.map((i) => i.metadata.name)).toContain("from-ts");
      await added;
      expect(seen).toContain("ADDED from-ts");
    } finally {
      req.abort();
    }
  });

  it("surfaces CEL rejections to the client as a 422 with the rule's message", async () => {
    const p = base();
    p.metadata.name = "bad-from-ts";
    p.spec.rules[0]!.connections = ["ghost"];
    await expect(
      api().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: "agentaccesspolicies",
        body: p,
      }),
    ).rejects.toThrow(/rules\[\]\.connections must name connections in spec\.connections/);
  });
});
