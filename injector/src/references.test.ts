import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { desiredStatus, evaluatePolicy, statusEqual } from "./references.ts";

const base = (connections: AgentAccessPolicy["spec"]["connections"]): AgentAccessPolicy => ({
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AgentAccessPolicy",
  metadata: { name: "p", namespace: "agents", generation: 3 },
  spec: { connections, rules: [{ name: "r", action: "allow" }] },
});

const secrets =
  (m: Record<string, string[]>) =>
  (name: string): string[] | undefined =>
    m[name];

describe("evaluatePolicy", () => {
  const pg = base([
    {
      name: "db",
      protocol: "postgres",
      target: { host: "db", port: 5432 },
      credentials: { secretRef: { name: "pg" }, postgres: { passwordKey: "pw" } },
      tls: { mode: "verify-full", caSecretRef: { name: "ca", key: "ca.crt" } },
    },
  ]);

  it("is Valid when every Secret and key exists (CRD defaults applied)", () => {
    expect(evaluatePolicy(pg, secrets({ pg: ["username", "pw"], ca: ["ca.crt"] }))).toEqual({
      ready: true,
      reason: "Valid",
      message: "1 connection(s), 1 rule(s); Secrets present: ca, pg",
    });
  });

  it("names missing Secrets before missing keys", () => {
    const e = evaluatePolicy(pg, secrets({ pg: ["username"] }));
    expect(e.reason).toBe("SecretNotFound");
    expect(e.message).toBe("connection db: Secret ca not found in namespace agents (tls.caSecretRef)");
    const k = evaluatePolicy(pg, secrets({ pg: ["username"], ca: ["ca.crt"] }));
    expect(k.reason).toBe("SecretKeyMissing");
    expect(k.message).toContain(
      'Secret pg has no key "pw" (credentials.postgres.passwordKey); its keys: username',
    );
  });

  it("checks SSH keys, known_hosts and certificate CA keys", () => {
    const ssh = base([
      {
        name: "box",
        protocol: "ssh",
        target: { host: "box", port: 22 },
        knownHosts: { name: "kh", key: "known_hosts" },
        credentials: {
          secretRef: { name: "ssh" },
          ssh: { username: "u", certificate: { caKey: "user_ca", principals: ["u"] } },
        },
      },
    ]);
    expect(evaluatePolicy(ssh, secrets({ kh: ["known_hosts"], ssh: ["user_ca"] })).ready).toBe(true);
    expect(evaluatePolicy(ssh, secrets({ kh: [], ssh: ["user_ca"] })).reason).toBe("SecretKeyMissing");
  });

  it("reports semantic problems as Invalid", () => {
    const p = base([{ name: "a", protocol: "http", target: { host: "a", port: 80 } }]);
    p.spec.rules = [{ name: "r", action: "requireApproval" }];
    const e = evaluatePolicy(p, secrets({}));
    expect(e.reason).toBe("Invalid");
    expect(e.message).toContain("requireApproval rules need approval.approvers");
  });
});

describe("desiredStatus", () => {
  it("fills printer-column fields and observedGeneration, and keeps lastTransitionTime while status holds", () => {
    const p = base([{ name: "a", protocol: "http", target: { host: "a", port: 80 } }]);
    const t0 = new Date("2026-01-01T00:00:00Z");
    const s1 = desiredStatus(p, { ready: false, reason: "SecretNotFound", message: "m" }, t0);
    expect(s1).toMatchObject({ connections: "a", rules: 1, observedGeneration: 3 });
    expect(s1.conditions?.[0]).toMatchObject({
      type: "Ready",
      status: "False",
      lastTransitionTime: "2026-01-01T00:00:00Z",
      observedGeneration: 3,
    });
    p.status = s1;
    const s2 = desiredStatus(p, { ready: false, reason: "SecretKeyMissing", message: "n" }, new Date());
    expect(s2.conditions?.[0]?.lastTransitionTime).toBe("2026-01-01T00:00:00Z");
    const s3 = desiredStatus(
      p,
      { ready: true, reason: "Valid", message: "ok" },
      new Date("2026-02-01T00:00:00Z"),
    );
    expect(s3.conditions?.[0]?.lastTransitionTime).toBe("2026-02-01T00:00:00Z");
    expect(statusEqual(s1, desiredStatus(p, { ready: false, reason: "SecretNotFound", message: "m" }))).toBe(
      true,
    );
    expect(statusEqual(s1, s3)).toBe(false);
  });
});
