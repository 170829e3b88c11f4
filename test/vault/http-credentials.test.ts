// HTTP connections under credentials.vault, against real parts: vault-dev (a KV v2 engine holding
// the API key; Kubernetes auth → the shared kube-apiserver's TokenReview) and the HTTP guard in
// process in front of an upstream of the test's own that records what it was sent. The key is
// read from Vault once per refresh period, never per request; a rotated key is picked up within
// the period; Vault down or refusing is a 503 that never forwards; after a successful read, a
// Vault outage is ridden out for one more period, then requests are refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { connect } from "../envtest/connect.ts";
import { freePort, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { relay } from "../harness/relay.ts";
import { startVault, type VaultServer } from "../harness/vault.ts";
import {
  json,
  policy,
  type Sidecar,
  send,
  startSidecar,
  startUpstream,
  type Upstream,
} from "../http/harness.ts";
import { AUDIENCE, setUpVault, type VaultFixture } from "./setup.ts";

let pg: PostgresServer;
let vault: VaultServer;
let fx: VaultFixture;
let upstream: Upstream;
const sidecars: Sidecar[] = [];
const KEY_PATH = "apikeys/data/anthropic";
const FIRST = "sk-ant-first-4f2a9c0e7b1d";
const SECOND = "sk-ant-second-8e3b5d1a9c7f";

beforeAll(async () => {
  const k8s = connect();
  [pg, vault] = await Promise.all([startPostgres(), startVault()]);
  fx = await setUpVault(vault, pg, k8s);
  await vault.api("POST", "sys/mounts/apikeys", { type: "kv", options: { version: "2" } });
  await vault.api("POST", KEY_PATH, { data: { token: FIRST } });
  await vault.api("PUT", "sys/policies/acl/airlock-http", {
    policy: `path "${KEY_PATH}" { capabilities = ["read"] }`,
  });
  await vault.api("POST", "auth/kubernetes/role/airlock-http", {
    bound_service_account_names: ["agent"],
    bound_service_account_namespaces: [fx.namespace],
    audience: AUDIENCE,
    token_policies: ["airlock-http"],
    token_ttl: 3600,
  });
  upstream = await startUpstream((req, res) => json(res, 200, { ok: true, path: req.url }));
});

afterAll(async () => {
  for (const s of sidecars) await s.close();
  await upstream?.close();
  await vault?.stop();
  await pg?.stop();
});

function spec(address: string, role = "airlock-http", refreshSeconds = 5): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "llm",
        protocol: "http",
        target: { host: "127.0.0.1", port: upstream.port },
        tls: { mode: "disable" },
        credentials: {
          vault: { address, auth: { role, audience: AUDIENCE }, path: KEY_PATH, refreshSeconds },
          http: { header: "x-api-key", format: "{value}" },
        },
      },
    ],
    rules: [
      { name: "messages", action: "allow", match: { http: { methods: ["POST"], paths: ["/v1/messages"] } } },
    ],
  };
}

async function sidecar(s: AgentAccessPolicySpec): Promise<{ sc: Sidecar; base: string }> {
  const sc = await startSidecar({
    policies: [policy("llm", s)],
    credentials: { tokenDir: fx.tokenDir, vaultTimeoutMs: 1_000 },
  });
  sidecars.push(sc);
  return { sc, base: await sc.listen("llm") };
}

const post = (base: string) =>
  send(`${base}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "the-agents-own-key" },
    body: "{}",
  });

async function issued(sc: Sidecar, result: string): Promise<number> {
  const m =
    (await sc.metrics.registry.getSingleMetric("airlock_credentials_issued_total")?.get())?.values ?? [];
  return m
    .filter((v) => v.labels.result === result && v.labels.source === "vault")
    .reduce((n, v) => n + v.value, 0);
}

const sentKeys = (from: number) => upstream.requests.slice(from).map((r) => r.headers["x-api-key"]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("an HTTP API key from Vault KV", () => {
  it("is sent instead of the agent's own, read from Vault once for many requests", async () => {
    const { sc, base } = await sidecar(spec(vault.address));
    const before = upstream.requests.length;
    for (let i = 0; i < 6; i++) expect((await post(base)).status).toBe(200);
    expect(sentKeys(before)).toEqual(Array(6).fill(FIRST));
    expect(await issued(sc, "ok")).toBe(1);
    const logs = sc.logs();
    for (const secret of [FIRST, "the-agents-own-key", fx.agentJwt]) expect(logs).not.toContain(secret);
  });

  it("a key rotated in Vault is used once the refresh period has passed", async () => {
    const { sc, base } = await sidecar(spec(vault.address));
    const before = upstream.requests.length;
    expect((await post(base)).status).toBe(200);
    await vault.api("POST", KEY_PATH, { data: { token: SECOND } });
    expect((await post(base)).status).toBe(200);
    await sleep(5_300);
    expect((await post(base)).status).toBe(200);
    expect(sentKeys(before)).toEqual([FIRST, FIRST, SECOND]);
    expect(await issued(sc, "ok")).toBe(2);
    expect(sc.logs()).not.toContain(SECOND);
    await vault.api("POST", KEY_PATH, { data: { token: FIRST } });
  }, 20_000);

  it("Vault unreachable at first use: 503 the SDKs retry, nothing forwarded", async () => {
    const { sc, base } = await sidecar(spec(`http://127.0.0.1:${await freePort()}`));
    const before = upstream.requests.length;
    const res = await post(base);
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({ error: "credential_source_unavailable" });
    expect(res.headers["x-should-retry"]).toBe("true");
    expect(upstream.requests.length).toBe(before);
    expect(sc.audit.at(-1)).toMatchObject({ upstream: { error: "credential_source_unavailable" } });
    expect(await issued(sc, "unreachable")).toBe(1);
  });

  it("a Vault role that does not grant the path: 503, not retried, nothing forwarded", async () => {
    // airlock (the PostgreSQL role) logs in but its policy does not cover the KV path.
    const { sc, base } = await sidecar(spec(vault.address, "airlock"));
    const before = upstream.requests.length;
    const res = await post(base);
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({ error: "credential_unavailable" });
    expect(res.headers["x-should-retry"]).toBe("false");
    expect(upstream.requests.length).toBe(before);
    expect(await issued(sc, "refused")).toBe(1);
  });

  it("Vault lost after a read: the last key serves one more period, then requests are refused", async () => {
    const r = relay(new URL(vault.address));
    const port = await r.up();
    const { sc, base } = await sidecar(spec(`http://127.0.0.1:${port}`));
    try {
      const before = upstream.requests.length;
      expect((await post(base)).status).toBe(200);
      await r.down();
      await sleep(5_300); // past refreshSeconds: the re-read fails, the last key still serves
      expect((await post(base)).status).toBe(200);
      expect(sc.logs()).toMatch(/credential re-read failed; serving the last value/);
      await sleep(5_000); // past twice refreshSeconds: no usable key
      const refused = await post(base);
      expect(refused.status).toBe(503);
      expect(sentKeys(before)).toEqual([FIRST, FIRST]);
      await r.up();
      await expect.poll(async () => (await post(base)).status, { timeout: 8_000, interval: 500 }).toBe(200);
    } finally {
      await r.down();
    }
  }, 30_000);
});
