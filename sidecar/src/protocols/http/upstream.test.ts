import { describe, expect, it } from "vitest";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Connection } from "../../policy/types.ts";
import type { SecretStore } from "../../runtime/secrets.ts";
import { createUpstreamPool } from "./upstream.ts";

const compiled = (spec: Partial<Connection> = {}): CompiledConnection => ({
  policy: "agents/p",
  spec: { name: "api", protocol: "http", target: { host: "api.example.com", port: 443 }, ...spec },
  requireUserToken: false,
  oidc: undefined,
  rules: { deny: [], requireApproval: [], allow: [] },
  masking: [],
});

function secrets(values: Record<string, string>): SecretStore & { values: Record<string, string> } {
  return {
    values,
    get: async (name, key) => {
      const v = values[`${name}/${key}`];
      if (v === undefined) throw new Error("missing");
      return v;
    },
  };
}

describe("upstream pool", () => {
  it("reuses the agent (and the answer) for the same connection", async () => {
    const pool = createUpstreamPool(secrets({}));
    const conn = compiled();
    const a = await pool.get(conn);
    const b = await pool.get(conn);
    expect(b).toBe(a);
    expect(a).toMatchObject({
      protocol: "https:",
      host: "api.example.com",
      port: 443,
      hostHeader: "api.example.com",
    });
    // A new policy version with the same settings keeps the agent (and its pooled sockets).
    expect((await pool.get(compiled())).agent).toBe(a.agent);
    pool.close();
  });

  it("replaces the agent when the target, TLS settings or CA content change", async () => {
    const store = secrets({ "ca/ca.crt": "CA-1" });
    const pool = createUpstreamPool(store);
    const conn = compiled({ tls: { mode: "verify-full", caSecretRef: { name: "ca", key: "ca.crt" } } });
    const first = await pool.get(conn);
    expect((await pool.get(conn)).agent).toBe(first.agent);
    store.values["ca/ca.crt"] = "CA-2"; // rotated Secret
    const rotated = await pool.get(conn);
    expect(rotated.agent).not.toBe(first.agent);
    expect((await pool.get(conn)).agent).toBe(rotated.agent);
    const moved = await pool.get(compiled({ target: { host: "api.example.com", port: 8443 } }));
    expect(moved.agent).not.toBe(rotated.agent);
    expect(moved.hostHeader).toBe("api.example.com:8443");
    const plain = await pool.get(compiled({ tls: { mode: "disable" } }));
    expect(plain.protocol).toBe("http:");
    expect(plain.agent).not.toBe(moved.agent);
    pool.close();
  });

  it("starts afresh after close()", async () => {
    const pool = createUpstreamPool(secrets({}));
    const conn = compiled();
    const a = await pool.get(conn);
    pool.close();
    expect((await pool.get(conn)).agent).not.toBe(a.agent);
    pool.close();
  });
});
