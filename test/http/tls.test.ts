// Upstream TLS: verification is on by default; a CA from the connection's Secret; verify-full
// checks the host name (or tls.serverName), verify-ca only the chain.
import "reflect-metadata";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { createCA, issueServingCert } from "../envtest/pki.ts";
import { json, policy, send, startSidecar, startUpstream, type Upstream } from "./harness.ts";

type Tls = NonNullable<AgentAccessPolicySpec["connections"][number]["tls"]>;

let caPem: string;
let otherCaPem: string;
let upstream: Upstream;

function spec(tls: Tls | undefined): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "secure",
        protocol: "http",
        target: { host: "127.0.0.1", port: upstream.port },
        ...(tls ? { tls } : {}),
        credentials: { secretRef: { name: "secure-token" } },
      },
    ],
    rules: [{ name: "all", action: "allow", match: { http: { paths: ["/**"] } } }],
  };
}

async function call(tls: Tls | undefined) {
  const sc = await startSidecar({
    policies: [policy("secure", spec(tls))],
    secrets: {
      "secure-token": { token: "tls-secret-value" },
      "upstream-ca": { "ca.crt": caPem, other: otherCaPem },
    },
  });
  try {
    const base = await sc.listen("secure");
    const res = await send(`${base}/hello`);
    return { res, audit: sc.audit.at(-1), metrics: await sc.metrics.registry.metrics() };
  } finally {
    await sc.close();
  }
}

beforeAll(async () => {
  const ca = await createCA("airlock-http-test-ca");
  caPem = ca.certPem;
  otherCaPem = (await createCA("unrelated-ca")).certPem;
  // Valid for 127.0.0.1 and api.internal.test, not for anything else.
  const serving = await issueServingCert(ca, ["127.0.0.1", "api.internal.test"]);
  upstream = await startUpstream(
    (req, res) =>
      json(res, 200, { tls: true, auth: req.headers.authorization === "Bearer tls-secret-value" }),
    { key: serving.keyPem, cert: serving.certPem },
  );
});

afterAll(async () => {
  await upstream.close();
});

describe("upstream TLS", () => {
  it("refuses an upstream whose CA it does not trust (default verify-full, system roots)", async () => {
    const { res, audit, metrics } = await call(undefined);
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: "upstream_unavailable" });
    expect(String(res.json().reason)).toMatch(/^tls:/);
    expect(audit?.upstream?.error).toMatch(/^tls:/);
    expect(metrics).toMatch(
      /airlock_upstream_errors_total\{connection="secure",protocol="http",reason="tls"\} 1/,
    );
  });

  it("refuses when the CA Secret holds an unrelated CA", async () => {
    const { res } = await call({ mode: "verify-full", caSecretRef: { name: "upstream-ca", key: "other" } });
    expect(res.status).toBe(502);
  });

  it("trusts the CA from caSecretRef and verifies the IP address", async () => {
    const { res, audit } = await call({
      mode: "verify-full",
      caSecretRef: { name: "upstream-ca", key: "ca.crt" },
    });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ tls: true, auth: true });
    expect(audit?.upstream).toEqual({ status: 200 });
  });

  it("verifies tls.serverName under verify-full", async () => {
    const ok = await call({
      mode: "verify-full",
      caSecretRef: { name: "upstream-ca", key: "ca.crt" },
      serverName: "api.internal.test",
    });
    expect(ok.res.status).toBe(200);
    const wrong = await call({
      mode: "verify-full",
      caSecretRef: { name: "upstream-ca", key: "ca.crt" },
      serverName: "wrong.example.com",
    });
    expect(wrong.res.status).toBe(502);
    expect(wrong.res.json().reason).toBe("tls:ERR_TLS_CERT_ALTNAME_INVALID");
  });

  it("skips only the name check under verify-ca", async () => {
    const { res } = await call({
      mode: "verify-ca",
      caSecretRef: { name: "upstream-ca", key: "ca.crt" },
      serverName: "wrong.example.com",
    });
    expect(res.status).toBe(200);
    const untrusted = await call({ mode: "verify-ca", serverName: "wrong.example.com" });
    expect(untrusted.res.status).toBe(502);
  });

  it("answers 502 when the CA Secret is missing", async () => {
    const { res } = await call({
      mode: "verify-full",
      caSecretRef: { name: "no-such-secret", key: "ca.crt" },
    });
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: "upstream_misconfigured" });
  });
});
