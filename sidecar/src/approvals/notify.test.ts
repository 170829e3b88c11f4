// Webhook notifications against a real HTTP server on loopback.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AccessRequest } from "../../../api/src/index.ts";
import { createWebhookNotifier, noticeText, webhookUrlsFromEnv } from "./notify.ts";

const request: AccessRequest = {
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AccessRequest",
  metadata: { name: "orders-7k2p9qaz", namespace: "agents" },
  spec: {
    policy: "agents/p",
    rule: "orders",
    connection: "orders-api",
    requester: { user: "sam", serviceAccount: "system:serviceaccount:agents:agent", pod: "agent-0" },
    operation: { protocol: "http", summary: "POST /orders" },
    reason: "refund for ticket 42",
    approvers: { groups: ["dba"] },
    minApprovals: 1,
    expiresAt: "2030-01-01T00:00:00Z",
  },
};

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

async function webhook(statuses: number[]) {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", (c) => {
      text += c;
    });
    req.on("end", () => {
      bodies.push({ type: req.headers["content-type"], body: JSON.parse(text) });
      res.writeHead(statuses.shift() ?? 200).end("ok");
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies };
}

describe("webhook notifications", () => {
  it("posts Slack-compatible JSON, retrying server errors with backoff, without blocking", async () => {
    const hook = await webhook([500, 503]);
    const n = createWebhookNotifier({
      urls: [hook.url],
      logger: pino({ level: "silent" }),
      initialBackoffMs: 20,
    });
    const result: unknown = n.notify({
      kind: "requested",
      request,
      approveHint: "kubectl airlock approve orders-7k2p9qaz -n agents",
    });
    // Fire and forget: nothing to await, and nothing was sent while the caller was still in notify.
    expect(result).toBeUndefined();
    expect(hook.bodies).toHaveLength(0);
    await vi.waitFor(() => expect(hook.bodies).toHaveLength(3), { timeout: 3000 });
    const { type, body } = hook.bodies[2] as { type: string; body: { text: string } };
    expect(type).toBe("application/json");
    expect(Object.keys(body)).toEqual(["text"]);
    expect(body.text).toContain("agents/orders-7k2p9qaz");
    expect(body.text).toContain("POST /orders");
    expect(body.text).toContain("kubectl airlock approve orders-7k2p9qaz -n agents");
    await n.close();
  });

  it("gives up on client errors and on a dead webhook, logging without the URL", async () => {
    const hook = await webhook([404]);
    const lines: string[] = [];
    const logger = pino({ level: "warn" }, { write: (l: string) => void lines.push(l) });
    const n = createWebhookNotifier({
      urls: [hook.url, "http://127.0.0.1:1/secret-token-in-path"],
      logger,
      initialBackoffMs: 10,
      attempts: 2,
    });
    n.notify({ kind: "denied", request, users: ["bob"], reason: "no" });
    await vi.waitFor(() => expect(lines).toHaveLength(2), { timeout: 3000 });
    expect(hook.bodies).toHaveLength(1);
    expect(lines.join("")).not.toContain("secret-token");
    await n.close();
  });

  it("says what was decided", () => {
    expect(noticeText({ kind: "approved", request, users: ["ann", "bob"], grantExpiresAt: "T" })).toMatch(
      /approved.*by ann, bob[\s\S]*grant open until T/,
    );
    expect(noticeText({ kind: "expired", request })).toMatch(/expired/);
    expect(webhookUrlsFromEnv({ AIRLOCK_APPROVAL_WEBHOOKS: "https://a/x, http://b/y  nope" })).toEqual([
      "https://a/x",
      "http://b/y",
    ]);
  });
});
