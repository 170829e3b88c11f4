// Standalone mode (no Kubernetes): the sidecar keeps AccessRequests in a local store and serves
// them on its loopback admin API; the same `kubectl-airlock` plugin decides them with --sidecar.
import { execFile } from "node:child_process";
import { chmodSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type Sidecar, startSidecar } from "../../sidecar/src/app.ts";
import { ensureApproverCredential } from "../../sidecar/src/approvals/credentials.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { createMemoryAuditSink } from "../../sidecar/src/audit/sink.ts";
import { json, send, startUpstream, type Upstream } from "../http/harness.ts";
import { plugin } from "./cluster.ts";

let dir: string;
let upstream: Upstream;
let policyFile: string;
let tokens: string;
const sidecars: Sidecar[] = [];
/** A token read before the file's mode was loosened (the checked reader would refuse now). */
const known = new Map<string, string>();
const tokenOf = (user: string) => known.get(user) ?? "";

async function start(): Promise<{ sc: Sidecar; audit: AuditEvent[]; admin: string; proxy: string }> {
  const memory = createMemoryAuditSink();
  const sc = await startSidecar({
    policyFiles: [policyFile],
    serviceAccount: "agents/agent",
    secretsDir: dir,
    hashKeyFile: join(dir, "hash.key"),
    adminPort: 0,
    proxyPort: 0,
    logger: pino({ level: "silent" }),
    audit: memory,
  });
  sidecars.push(sc);
  return {
    sc,
    audit: memory.events,
    admin: `http://127.0.0.1:${sc.adminPort}`,
    proxy: `http://127.0.0.1:${sc.proxyPort}`,
  };
}

const post = (proxy: string, path: string) =>
  send(`http://127.0.0.1:${upstream.port}${path}`, { proxy, method: "POST", body: "{}" });

async function firstPending(admin: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const list = (await (await fetch(`${admin}/approvals?phase=Pending`)).json()) as {
      items: { metadata: { name: string } }[];
    };
    if (list.items[0]) return list.items[0].metadata.name;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("no pending request");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "airlock-standalone-approvals-"));
  process.env.AIRLOCK_APPROVALS_FILE = join(dir, "approvals.json");
  // The plugin (a child process) finds the credentials the sidecar checks through this variable.
  tokens = join(dir, "approver-tokens");
  process.env.AIRLOCK_APPROVER_TOKEN_FILE = tokens;
  for (const user of ["ann", "bob", "eve"]) known.set(user, ensureApproverCredential(tokens, user).token);
  upstream = await startUpstream((req, res) => json(res, 200, { ok: true, path: req.url }));
  policyFile = join(dir, "policy.yaml");
  await writeFile(
    policyFile,
    stringify({
      apiVersion: "airlock.dev/v1alpha1",
      kind: "AgentAccessPolicy",
      metadata: { name: "demo", namespace: "agents" },
      spec: {
        connections: [
          {
            name: "orders-api",
            protocol: "http",
            target: { host: "127.0.0.1", port: upstream.port },
            tls: { mode: "disable" },
          },
        ],
        rules: [
          {
            name: "refunds-need-approval",
            action: "requireApproval",
            match: { http: { methods: ["POST"], paths: ["/refunds/**"] } },
            approval: { approvers: { users: ["ann", "bob"] }, timeout: "30s" },
          },
        ],
      },
    }),
  );
});

afterAll(async () => {
  delete process.env.AIRLOCK_APPROVALS_FILE;
  delete process.env.AIRLOCK_APPROVER_TOKEN_FILE;
  for (const sc of sidecars) await sc.close();
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

describe("standalone approvals", () => {
  it("holds the operation until `kubectl airlock approve --sidecar` approves it", async () => {
    const { admin, proxy, audit } = await start();
    const held = post(proxy, "/refunds/1");
    const name = await firstPending(admin);

    const listed = await plugin(["requests", "--sidecar", admin]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(
      new RegExp(
        `^${name}\\s+\\S+\\s+system:serviceaccount:agents:agent\\s+\\S+\\s+orders-api\\s+refunds-need-approval\\s+0/1\\s+\\S+\\s+http: POST /refunds/1$`,
        "m",
      ),
    );
    const shown = await plugin(["show", name, "--sidecar", admin]);
    // The hint names the rule's approvers: the first approve a user copies from it works.
    expect(shown.stdout).toContain(`kubectl airlock approve ${name} --sidecar ${admin} --as {ann|bob}`);

    // Not an approver of this rule (approvers are users ann and bob).
    const eve = await plugin(["approve", name, "--sidecar", admin, "--as", "eve"]);
    expect(eve.code).toBe(1);
    expect(eve.stderr).toMatch(/eve may not decide this request/);

    const ok = await plugin(["approve", name, "--sidecar", admin, "--as", "ann", "--comment", "fine"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/approved by ann \(1\/1\): the operation may proceed/);
    const res = await held;
    expect(res.status).toBe(200);
    expect(audit.at(-1)).toMatchObject({ approval: { request: name, approvers: ["ann"] } });
    const asYaml = await plugin(["show", name, "--sidecar", admin, "-o", "yaml"]);
    expect(asYaml.stdout).toMatch(/phase: Approved/);
  });

  it("denies with a reason", async () => {
    const { admin, proxy } = await start();
    const held = post(proxy, "/refunds/2");
    const name = await firstPending(admin);
    expect(
      (await plugin(["deny", name, "--sidecar", admin, "--as", "bob", "--reason", "not today"])).code,
    ).toBe(0);
    const res = await held;
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({
      error: "approval_denied",
      reason: expect.stringMatching(/bob: not today/),
    });
  });

  it("serves decisions on loopback only, as JSON without an Origin (no browser can forge one)", async () => {
    const { admin, proxy } = await start();
    const held = post(proxy, "/refunds/3");
    const name = await firstPending(admin);
    const ann = ensureApproverCredential(tokens, "ann");
    const raw = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${admin}/approvals/${name}/approve`, { method: "POST", headers }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end(JSON.stringify({ user: "ann" }));
      });
    const auth = { authorization: `Bearer ${ann.token}` };
    expect(await raw({ "content-type": "text/plain", ...auth })).toBe(403);
    expect(await raw({ "content-type": "application/json", origin: "https://evil.example", ...auth })).toBe(
      403,
    );
    expect(await raw({ "content-type": "application/json", ...auth })).toBe(200);
    expect((await held).status).toBe(200);
  });

  // What an agent on the same machine could try: the admin port is loopback and unauthenticated
  // for reads, so it knows the request's name; it does not have the owner-only credentials file.
  it("refuses a decision from another process without an approver credential, whatever name it claims", async () => {
    const { admin, proxy, audit } = await start();
    const held = post(proxy, "/refunds/5");
    const name = await firstPending(admin);
    const agent = (headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const script = `fetch(${JSON.stringify(`${admin}/approvals/${name}/approve`)}, {method: "POST", headers: ${JSON.stringify({ "content-type": "application/json", ...headers })}, body: JSON.stringify({user: "ann"})}).then(async (r) => console.log(JSON.stringify({status: r.status, body: await r.text()})))`;
        execFile(process.execPath, ["-e", script], (err, stdout) =>
          err ? reject(err) : resolve(JSON.parse(stdout) as { status: number; body: string }),
        );
      });
    const none = await agent({});
    expect(none.status).toBe(401);
    expect(none.body).toContain("decisions need an approver credential");
    expect((await agent({ authorization: "Bearer not-a-real-token-0123456789" })).status).toBe(401);
    // A real credential of someone else: the name comes from the token, not from the body.
    const eve = ensureApproverCredential(tokens, "eve");
    const mismatch = await agent({ authorization: `Bearer ${eve.token}` });
    expect(mismatch.status).toBe(403);
    expect(mismatch.body).toContain("the credential is eve's; it cannot decide as ann");
    const listed = (await (await fetch(`${admin}/approvals/${name}`)).json()) as {
      status?: { phase?: string };
    };
    expect(listed.status?.phase ?? "Pending").toBe("Pending");

    // The plugin with the file decides as the credential's user (several in the file: --as picks).
    const several = await plugin(["approve", name, "--sidecar", admin]);
    expect(several.code).toBe(1);
    expect(several.stderr).toMatch(
      /holds several approvers \(.*ann, bob, eve.*\): choose one with --as NAME/,
    );
    const ok = await plugin(["approve", name, "--sidecar", admin, "--as", "bob"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await held).status).toBe(200);
    expect(audit.at(-1)).toMatchObject({ approval: { request: name, approvers: ["bob"] } });
  });

  it("refuses to use a credentials file that other users can read", async () => {
    const { admin, proxy } = await start();
    const held = post(proxy, "/refunds/6").catch((e: Error) => e);
    const name = await firstPending(admin);
    chmodSync(tokens, 0o644);
    try {
      const r = await plugin(["approve", name, "--sidecar", admin, "--as", "ann"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `${tokens} is accessible to other users (mode 644); run \`chmod 600 ${tokens}\``,
      );
      // The sidecar refuses too, even with a valid token.
      const direct = await fetch(`${admin}/approvals/${name}/approve`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${tokenOf("ann")}` },
        body: "{}",
      });
      expect(direct.status).toBe(503);
      expect(await direct.text()).toContain("approver credentials unusable");
    } finally {
      chmodSync(tokens, 0o600);
    }
    expect(
      (await plugin(["deny", name, "--sidecar", admin, "--as", "ann", "--reason", "cleanup"])).code,
    ).toBe(0);
    await held;
  });

  it("keeps pending requests across a restart (AIRLOCK_APPROVALS_FILE)", async () => {
    const first = await start();
    const held = post(first.proxy, "/refunds/4").catch((e: Error) => e);
    const name = await firstPending(first.admin);
    await first.sc.close();
    await held;
    const second = await start();
    const listed = await plugin(["requests", "--sidecar", second.admin]);
    expect(listed.stdout).toContain(name);
    const retried = post(second.proxy, "/refunds/4");
    await new Promise((r) => setTimeout(r, 200));
    expect((await plugin(["approve", name, "--sidecar", second.admin, "--as", "bob"])).code).toBe(0);
    expect((await retried).status).toBe(200);
  });
});
