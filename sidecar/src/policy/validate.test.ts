import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { compilePolicies } from "./compile.ts";
import { validatePolicy } from "./validate.ts";

const demo = () =>
  parse(
    readFileSync(new URL("../../../examples/demo-policy.yaml", import.meta.url), "utf8"),
  ) as AgentAccessPolicy & { spec: Record<string, unknown> };

const problems = (edit: (p: ReturnType<typeof demo>) => void) => {
  const p = demo();
  edit(p);
  return validatePolicy(p);
};

describe("a misspelled field is an error with its path and a suggestion, never ignored", () => {
  it.each([
    [
      "method: for methods:",
      (p: ReturnType<typeof demo>) => {
        const rules = p.spec.rules as { match?: { http?: Record<string, unknown> } }[];
        const http = rules[0]?.match?.http as Record<string, unknown>;
        http.method = http.methods;
        delete http.methods;
      },
      "spec.rules[0].match.http.method",
      'unknown field "method"; did you mean "methods"? (fields here: methods, paths, websocket, binaryBodies)',
    ],
    [
      "path: for paths:",
      (p: ReturnType<typeof demo>) => {
        const http = (p.spec.rules as { match: { http: Record<string, unknown> } }[])[3]?.match.http;
        if (http) {
          http.path = http.paths;
          delete http.paths;
        }
      },
      "spec.rules[3].match.http.path",
      'unknown field "path"; did you mean "paths"?',
    ],
    [
      "maskng: for masking:",
      (p: ReturnType<typeof demo>) => {
        p.spec.maskng = p.spec.masking;
        delete p.spec.masking;
      },
      "spec.maskng",
      'unknown field "maskng"; did you mean "masking"?',
    ],
    [
      "a top-level key beside spec",
      (p: ReturnType<typeof demo>) => Object.assign(p, { rules: [] }),
      "rules",
      'unknown field "rules" (fields here: apiVersion, kind, metadata, spec, status)',
    ],
  ])("%s", (_label, edit, path, message) => {
    const found = problems(edit);
    expect(found).toContainEqual({ path, message: expect.stringContaining(message) });
  });

  it("leaves map keys (podSelector.matchLabels) alone", () => {
    expect(problems((p) => (p.spec.podSelector = { matchLabels: { "app.kubernetes.io/x": "y" } }))).toEqual(
      [],
    );
  });
});

describe("an enum error lists the allowed values, never TypeBox's kind name", () => {
  it.each([
    [
      "denny",
      (p: ReturnType<typeof demo>) => ((p.spec.rules as { action: string }[])[2]!.action = "denny"),
      "spec.rules[2].action",
      '"denny" is not one of: allow, deny, requireApproval; did you mean "deny"?',
    ],
    [
      "partail",
      (p: ReturnType<typeof demo>) => ((p.spec.masking as { strategy: string }[])[0]!.strategy = "partail"),
      "spec.masking[0].strategy",
      '"partail" is not one of: redact, partial, hash; did you mean "partial"?',
    ],
    [
      "a method in lower case in a list",
      (p: ReturnType<typeof demo>) =>
        ((p.spec.rules as { match: { http: { methods: string[] } } }[])[0]!.match.http.methods = ["GOT"]),
      "spec.rules[0].match.http.methods[0]",
      '"GOT" is not one of: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, *; did you mean "GET"?',
    ],
  ])("%s", (_label, edit, path, message) => {
    const found = problems(edit);
    expect(found).toContainEqual({ path, message });
    expect(JSON.stringify(found)).not.toMatch(/AirlockStringEnum|Expected kind/);
  });
});

describe("errorFormat", () => {
  const conn = (p: ReturnType<typeof demo>) =>
    (p.spec.connections as Record<string, unknown>[])[0] as Record<string, unknown>;
  it("accepts the known API shapes on an HTTP connection", () => {
    for (const f of ["airlock", "anthropic", "openai"])
      expect(problems((p) => (conn(p).errorFormat = f))).toEqual([]);
  });
  it("a misspelled shape lists the allowed values", () => {
    expect(problems((p) => (conn(p).errorFormat = "anthropik"))).toContainEqual({
      path: "spec.connections[0].errorFormat",
      message: '"anthropik" is not one of: airlock, anthropic, openai; did you mean "anthropic"?',
    });
  });
  it("a field of another protocol is refused, as the CRD's rules refuse it", () => {
    expect(
      problems((p) => {
        conn(p).protocol = "postgres";
        conn(p).credentials = { secretRef: { name: "db" } };
        conn(p).errorFormat = "openai";
      }),
    ).toContainEqual({
      path: "spec.connections[0].errorFormat",
      message: "errorFormat is only for protocol http; connection customers-api speaks postgres",
    });
  });
});

describe("agentTls is checked as the CRD checks it", () => {
  const conn = (p: ReturnType<typeof demo>) =>
    (p.spec.connections as Record<string, unknown>[])[0] as Record<string, unknown>;
  it("only on postgres, with one of its modes", () => {
    expect(problems((p) => (conn(p).agentTls = { mode: "allow" }))).toContainEqual({
      path: "spec.connections[0].agentTls",
      message: "agentTls is only for protocol postgres; connection customers-api speaks http",
    });
    const misspelled = problems((p) => {
      conn(p).protocol = "postgres";
      conn(p).credentials = { secretRef: { name: "db" } };
      conn(p).agentTls = { mode: "required" };
    });
    expect(misspelled).toContainEqual({
      path: "spec.connections[0].agentTls.mode",
      message: '"required" is not one of: disable, allow, require; did you mean "require"?',
    });
  });
});

describe("credentials.vault is checked as the CRD checks it", () => {
  const conn = (p: ReturnType<typeof demo>) =>
    (p.spec.connections as Record<string, unknown>[])[0] as Record<string, unknown>;
  const vault = {
    address: "https://vault.vault.svc:8200",
    auth: { role: "agent" },
    path: "database/creds/ro",
  };
  const onPostgres = (credentials: unknown) =>
    problems((p) => {
      conn(p).protocol = "postgres";
      conn(p).credentials = credentials;
    }).filter((x) => x.path.startsWith("spec.connections")); // (the demo's rules match HTTP)
  it("accepts a Vault source on a PostgreSQL connection, with or without a Secret fallback", () => {
    expect(onPostgres({ vault })).toEqual([]);
    expect(onPostgres({ vault: { ...vault, fallback: "secretRef" }, secretRef: { name: "db" } })).toEqual([]);
  });
  it("refuses a path that is not <mount>/creds/<role>, naming the pattern", () => {
    expect(onPostgres({ vault: { ...vault, path: "secret/data/db" } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.path",
      message: expect.stringContaining("creds"),
    });
  });
  it("refuses plain http:// to anything but loopback", () => {
    expect(onPostgres({ vault: { ...vault, address: "http://vault.vault.svc:8200" } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.address",
      message:
        "http://vault.vault.svc:8200: address must be https:// (http:// only for 127.0.0.1, localhost or [::1])",
    });
    expect(onPostgres({ vault: { ...vault, address: "http://127.0.0.1:8200" } })).toEqual([]);
  });
  it("a fallback needs the Secret, and lists the allowed values", () => {
    expect(onPostgres({ vault: { ...vault, fallback: "secretRef" } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.fallback",
      message: "fallback secretRef needs credentials.secretRef (allowed values: none, secretRef)",
    });
    expect(onPostgres({ vault: { ...vault, fallback: "static" } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.fallback",
      message: expect.stringContaining("none, secretRef"),
    });
  });
  it("credentials need a source; vault has a path of the protocol's kind", () => {
    expect(onPostgres({})).toContainEqual({
      path: "spec.connections[0].credentials",
      message: "connection customers-api: credentials need secretRef or vault",
    });
    // HTTP: a KV entry, with a refresh period.
    expect(
      problems(
        (p) => (conn(p).credentials = { vault: { ...vault, path: "secret/data/api", refreshSeconds: 60 } }),
      ),
    ).toEqual([]);
    // SSH: Vault's SSH engine signs the session certificate (sign/<role>, no CA key in a Secret).
    const onSsh = (credentials: unknown) =>
      problems((p) =>
        Object.assign(conn(p), { protocol: "ssh", credentials, knownHosts: { name: "kh", key: "k" } }),
      ).filter((x) => x.path.startsWith("spec.connections[0].credentials"));
    const certificate = { principals: ["ops"] };
    expect(
      onSsh({ vault: { ...vault, path: "ssh/sign/agents" }, ssh: { username: "ops", certificate } }),
    ).toEqual([]);
    const signs =
      "connection customers-api: for protocol ssh, credentials.vault signs the session certificates: its path is the SSH secrets engine's <mount>/sign/<role>, with credentials.ssh.certificate and no caKey";
    expect(onSsh({ vault, ssh: { username: "ops", certificate } })).toContainEqual({
      path: "spec.connections[0].credentials.vault",
      message: signs,
    });
    expect(
      onSsh({ vault: { ...vault, path: "ssh/sign/agents" }, ssh: { username: "ops", privateKeyKey: "id" } }),
    ).toContainEqual({ path: "spec.connections[0].credentials.vault", message: signs });
    expect(
      onSsh({
        vault: { ...vault, path: "ssh/sign/agents" },
        ssh: { username: "ops", certificate: { ...certificate, caKey: "ca" } },
      }),
    ).toContainEqual({ path: "spec.connections[0].credentials.vault", message: signs });
    expect(onSsh({ secretRef: { name: "s" }, ssh: { username: "ops", certificate } })).toContainEqual({
      path: "spec.connections[0].credentials.ssh.certificate.caKey",
      message:
        "connection customers-api: credentials.ssh.certificate needs caKey, or credentials.vault to sign with",
    });
    expect(onSsh({ ssh: { username: "ops", privateKeyKey: "id" } })).toContainEqual({
      path: "spec.connections[0].credentials",
      message: "connection customers-api: credentials need secretRef or vault",
    });
    expect(onPostgres({ vault: { ...vault, path: "secret/data/db" } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.path",
      message:
        "secret/data/db: for protocol postgres the path is the database secrets engine's <mount>/creds/<role>",
    });
    expect(onPostgres({ vault: { ...vault, path: "database/../sys/creds/x" } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.path",
      message: "database/../sys/creds/x: path segments may not be . or ..",
    });
    expect(onPostgres({ vault: { ...vault, approvedPath: "database/creds/writer" } })).toEqual([]);
    expect(onPostgres({ vault: { ...vault, approvedPath: "secret/data/writer" } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.approvedPath",
      message:
        "secret/data/writer: approvedPath is the database secrets engine's <mount>/creds/<role> (no . or .. segments)",
    });
    expect(
      problems(
        (p) =>
          (conn(p).credentials = {
            vault: { ...vault, path: "secret/data/api", approvedPath: "database/creds/writer" },
          }),
      ),
    ).toContainEqual({
      path: "spec.connections[0].credentials.vault.approvedPath",
      message:
        "credentials.vault.approvedPath is only for protocol postgres; connection customers-api speaks http",
    });
    expect(onPostgres({ vault: { ...vault, refreshSeconds: 60 } })).toContainEqual({
      path: "spec.connections[0].credentials.vault.refreshSeconds",
      message:
        "refreshSeconds is only for protocols http and mcp (a PostgreSQL lease lasts the agent session)",
    });
  });
});

describe("semantic errors are caught at load, naming the rule", () => {
  it("an invalid JSONPath in masking.fields", () => {
    const found = problems(
      (p) => ((p.spec.masking as { fields?: string[] }[])[1]!.fields = ["$..internal[notes"]),
    );
    expect(found).toEqual([
      {
        path: "spec.masking[1].fields[0]",
        message: expect.stringMatching(
          /^masking rule secret-notes: invalid JSON path "\$\.\.internal\[notes"/,
        ),
      },
    ]);
  });

  it("two connections on one listen port", () => {
    const found = problems((p) => {
      const c = p.spec.connections as { name: string; listen?: { port: number } }[];
      c.push({ ...structuredClone(c[0]!), name: "second" });
    });
    expect(found).toContainEqual({
      path: "spec.connections[1].listen.port",
      message: "connection second listens on port 15001, as connection customers-api does",
    });
  });

  it("a listen port that is one of the sidecar's own", () => {
    const found = problems(
      (p) => ((p.spec.connections as { listen: { port: number } }[])[0]!.listen.port = 15990),
    );
    expect(found).toContainEqual({
      path: "spec.connections[0].listen.port",
      message: "connection customers-api cannot listen on port 15990: it is the admin port",
    });
  });

  it("two policies listening on one port: the second is left out", () => {
    const a = demo();
    const b = demo();
    b.metadata.name = "zz-other";
    (b.spec.connections as { name: string }[])[0]!.name = "other-api";
    const { set, problems: found } = compilePolicies([a, b]);
    expect(set.policies).toEqual(["default/demo"]);
    expect(found).toEqual([
      {
        policy: "default/zz-other",
        path: "spec.connections",
        message:
          "connection other-api listens on port 15001, as connection customers-api of policy default/demo does",
      },
    ]);
  });

  it("the examples stay valid", () => {
    expect(validatePolicy(demo())).toEqual([]);
    for (const file of ["mcp-tools.yaml", "claude-agent.yaml", "ssh-ops.yaml", "postgres-analyst.yaml"]) {
      const doc = parse(readFileSync(new URL(`../../../examples/${file}`, import.meta.url), "utf8"));
      expect([file, validatePolicy(doc)]).toEqual([file, []]);
    }
  });
});
