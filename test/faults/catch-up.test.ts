// Fault: the API server unreachable for a few seconds, then back — what was written about the
// outage must catch up, with the real kube-apiserver behind a relay the test cuts:
// - an AccessRequest whose approval times out during the outage: the agent is refused at the
//   timeout (not performed), and once the API server is back the sidecar marks the request Expired
//   so that approvers do not see a stale Pending one;
// - the policy controller (injector): a policy changed and its Secret deleted during the outage
//   get their status (observedGeneration, Ready=False SecretNotFound) and one Warning Event after it.
import { KubeConfig } from "@kubernetes/client-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentAccessPolicy, API_VERSION } from "../../api/src/index.ts";
import { createPolicyController, type PolicyController } from "../../injector/src/controller.ts";
import { apply as applyTo, connect } from "../envtest/connect.ts";
import { freePort } from "../harness/postgres.ts";
import { type Relay, relay } from "../harness/relay.ts";
import { applyCrds } from "../injector/harness.ts";
import { MARK, serverStatements } from "./load.ts";
import { type InCluster, inCluster } from "./setup.ts";
import { ofConnection, type SidecarProcess } from "./sidecar-process.ts";

const k8s = connect();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const apply = (obj: unknown) => applyTo(k8s, obj);

describe("an approval that times out while the API server is unreachable", () => {
  let fx: InCluster;
  let sc: SidecarProcess | undefined;

  beforeAll(async () => {
    fx = await inCluster(k8s, "catchup", {
      role: "catchup_agent",
      sql: "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a'); GRANT SELECT, UPDATE ON items TO catchup_agent",
      statementLog: true,
    });
  });
  afterAll(async () => {
    sc?.kill("SIGKILL");
    await sc?.exited;
    await fx?.close();
  });

  it("is refused at its timeout, not performed; the request is marked Expired once the API server is back", async () => {
    const { c, server, link } = fx;
    const dbPort = await freePort();
    await apply(
      fx.policy("catchup", dbPort, [
        { name: "read", action: "allow", match: { sql: { statements: ["read"] } } },
        {
          name: "update-4s",
          action: "requireApproval",
          match: { sql: { statements: ["update"] } },
          approval: { approvers: { groups: ["dba"] }, timeout: "4s" },
        },
      ]),
    );
    sc = await fx.spawn("agent-c", await link.up());
    const cl = new pg.Client({ host: "127.0.0.1", port: dbPort, user: "agent", database: server.database });
    cl.on("error", () => {});
    await cl.connect();

    const t0 = Date.now();
    const update = cl.query(`${MARK} UPDATE items SET v = 'b' WHERE id = 1`).then(
      () => "performed",
      (e: Error & { code?: string }) => e,
    );
    // The request exists (Pending) before the outage starts.
    await expect
      .poll(async () => (await c.list()).map((o) => o.status?.phase ?? "Pending"), { timeout: 3_000 })
      .toEqual(["Pending"]);
    const [request] = await c.list();
    await link.down();

    const refused = await update;
    const waited = Date.now() - t0;
    expect(refused).toMatchObject({
      code: "42501",
      message: expect.stringMatching(/approval service unreachable.*not performed/),
    });
    expect(waited).toBeGreaterThanOrEqual(3_900);
    expect(waited).toBeLessThan(8_000);
    expect(serverStatements(server).filter((l) => /UPDATE/.test(l))).toEqual([]);
    expect(ofConnection(sc.audit(), "db").at(-1)).toMatchObject({
      decision: { action: "requireApproval", rule: "update-4s" },
      upstream: { error: "approval_unavailable" },
    });
    // The sidecar could not write it: still Pending on the server while the outage lasts.
    await sleep(1_000);
    expect((await c.get(request?.metadata.name as string)).status?.phase ?? "Pending").toBe("Pending");

    await link.up();
    const back = Date.now();
    await expect
      .poll(async () => (await c.get(request?.metadata.name as string)).status?.phase, {
        timeout: 20_000,
        interval: 250,
      })
      .toBe("Expired");
    const caughtUpMs = Date.now() - back;
    expect(caughtUpMs).toBeLessThan(20_000);
    console.info(`AccessRequest marked Expired ${caughtUpMs} ms after the API server came back`);
    // And still nothing ran.
    expect(serverStatements(server).filter((l) => /UPDATE/.test(l))).toEqual([]);
    await cl.end();
  }, 60_000);
});

describe("the policy controller during an outage", () => {
  let ns: string;
  let link: Relay;
  let controller: PolicyController;

  const policy = (rules: AgentAccessPolicy["spec"]["rules"]) => ({
    apiVersion: API_VERSION,
    kind: "AgentAccessPolicy",
    metadata: { name: "outage", namespace: ns },
    spec: {
      connections: [
        {
          name: "tickets",
          protocol: "http",
          target: { host: "tickets.internal", port: 443 },
          credentials: { secretRef: { name: "tickets-token" } },
        },
      ],
      rules,
    },
  });
  const get = async () => {
    const r = await k8s.kubectl(["get", "aap", "-n", ns, "outage", "-o", "json"]);
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as AgentAccessPolicy;
    const ready = p.status?.conditions?.find((x) => x.type === "Ready");
    return {
      generation: p.metadata.generation,
      observed: p.status?.observedGeneration,
      ready: ready ? `${ready.status}/${ready.reason}` : "none",
    };
  };
  const events = async () => {
    const r = await k8s.kubectl([
      "get",
      "events",
      "-n",
      ns,
      "--field-selector",
      "involvedObject.name=outage",
      "-o",
      "json",
    ]);
    return (JSON.parse(r.stdout) as { items: { type: string; reason: string }[] }).items.map(
      (e) => `${e.type}/${e.reason}`,
    );
  };

  beforeAll(async () => {
    await applyCrds(k8s);
    ns = await k8s.createNamespace("outage");
    link = relay(new URL(k8s.server));
    const port = await link.up();
    const admin = k8s.kubeConfig;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: admin.clusters.map((cl) => ({ ...cl, server: `https://127.0.0.1:${port}` })),
      users: admin.users,
      contexts: admin.contexts,
      currentContext: admin.currentContext,
    });
    controller = createPolicyController({ kubeConfig: kc, namespaces: [ns], resyncMs: 60_000 });
    await controller.start();
  });
  afterAll(async () => {
    await controller?.stop();
    await link?.down();
  });

  it("a change and a deleted Secret during the outage get their status and one Event after it", async () => {
    await apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "tickets-token", namespace: ns },
      stringData: { token: "t0ken" },
    });
    await apply(policy([{ name: "read", action: "allow", match: { http: { methods: ["GET"] } } }]));
    await expect.poll(get, { timeout: 15_000 }).toEqual({ generation: 1, observed: 1, ready: "True/Valid" });
    await expect.poll(events, { timeout: 10_000 }).toEqual(["Normal/Valid"]);

    await link.down();
    await sleep(500); // the controller's watches break
    await apply(
      policy([
        { name: "read", action: "allow", match: { http: { methods: ["GET"] } } },
        { name: "no-admin", action: "deny", match: { http: { paths: ["/admin/**"] } } },
      ]),
    );
    const del = await k8s.kubectl(["delete", "secret", "-n", ns, "tickets-token"]);
    expect(del.code, del.stderr).toBe(0);
    await sleep(3_000);
    // Nothing could be written meanwhile.
    expect(await get()).toEqual({ generation: 2, observed: 1, ready: "True/Valid" });

    await link.up();
    const back = Date.now();
    await expect
      .poll(get, { timeout: 40_000, interval: 250 })
      .toEqual({ generation: 2, observed: 2, ready: "False/SecretNotFound" });
    const caughtUpMs = Date.now() - back;
    await expect.poll(events, { timeout: 5_000 }).toEqual(["Normal/Valid", "Warning/SecretNotFound"]);
    console.info(`policy status and Event caught up ${caughtUpMs} ms after the API server came back`);
    await sleep(1_000);
    expect(await events()).toEqual(["Normal/Valid", "Warning/SecretNotFound"]); // not repeated
  }, 60_000);
});
