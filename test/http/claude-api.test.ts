// The Claude-API-like case end to end: an agent that holds no API key calls a local HTTPS fake of
// `POST /v1/messages` through its connection listener (as with ANTHROPIC_BASE_URL). The sidecar
// adds `x-api-key` from the Secret, masks secrets in the prompt, and streams the SSE answer back
// with the email and card number masked. Neither the key nor the values appear in audit or logs.
import "reflect-metadata";
import type { ServerResponse } from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { createCA, issueServingCert } from "../envtest/pki.ts";
import {
  json,
  policy,
  type Sidecar,
  sleep,
  startSidecar,
  startUpstream,
  type Upstream,
  until,
} from "./harness.ts";

const API_KEY = "sk-ant-api03-test-6b0c2f4e9d";
const EMAIL = "jane.doe@example.com";
const CARD = "4242 4242 4242 4242";
const GITHUB_TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";

let upstream: Upstream;
let sc: Sidecar;
let base: string;
const seenKeys: (string | undefined)[] = [];

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

async function streamAnswer(res: ServerResponse) {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
  const text = `Sure. The customer is ${EMAIL} and the card on file is ${CARD}.`;
  const events = [
    sse("message_start", { type: "message_start", message: { id: "msg_1", role: "assistant", content: [] } }),
    sse("content_block_start", {
      type: "content_block_start",
      index: 0,
      content_block: { type: "text", text: "" },
    }),
    // The text arrives in small deltas the way the real API streams it, so the email and the card
    // number are each split across several events; each event is also written in small pieces.
    ...(text.match(/.{1,6}/gs) ?? []).map((t) =>
      sse("content_block_delta", {
        type: "content_block_delta",
        index: 0,
        delta: { type: "text_delta", text: t },
      }),
    ),
    sse("content_block_stop", { type: "content_block_stop", index: 0 }),
    sse("message_stop", { type: "message_stop" }),
  ];
  for (const e of events) {
    const bytes = Buffer.from(e);
    for (let i = 0; i < bytes.length; i += 7) {
      res.write(bytes.subarray(i, i + 7));
      await sleep(1);
    }
  }
  res.end();
}

function spec(port: number): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "anthropic",
        protocol: "http",
        target: { host: "localhost", port },
        tls: { mode: "verify-full", caSecretRef: { name: "anthropic-ca", key: "ca.crt" } },
        credentials: {
          secretRef: { name: "anthropic-api-key" },
          http: { header: "x-api-key", key: "api-key", format: "{value}" },
        },
        listen: { port: 15001 },
      },
    ],
    rules: [
      {
        name: "call-model",
        action: "allow",
        match: { http: { methods: ["POST"], paths: ["/v1/messages", "/v1/messages/count_tokens"] } },
      },
    ],
    masking: [
      { name: "pii-in-responses", detectors: ["email", "creditCard"], strategy: "partial" },
      { name: "secrets-in-prompts", detectors: ["githubToken"], strategy: "redact", direction: "request" },
    ],
  };
}

beforeAll(async () => {
  const ca = await createCA("fake-anthropic-ca");
  const serving = await issueServingCert(ca, ["localhost"]);
  upstream = await startUpstream(
    async (req, res) => {
      seenKeys.push(req.headers["x-api-key"] as string | undefined);
      if (req.method !== "POST" || req.url !== "/v1/messages") return json(res, 404, { type: "error" });
      if (req.headers["x-api-key"] !== API_KEY || req.headers.authorization !== undefined)
        return json(res, 401, { type: "error", error: { type: "authentication_error" } });
      if (req.body.toString("utf8").includes(GITHUB_TOKEN))
        return json(res, 400, { type: "error", leaked: true });
      await streamAnswer(res);
    },
    { key: serving.keyPem, cert: serving.certPem },
  );
  sc = await startSidecar({
    policies: [policy("claude-agent", spec(upstream.port))],
    secrets: { "anthropic-api-key": { "api-key": API_KEY }, "anthropic-ca": { "ca.crt": ca.certPem } },
  });
  base = await sc.listen("anthropic");
});

afterAll(async () => {
  await sc.close();
  await upstream.close();
});

it("adds x-api-key, masks the prompt's secrets and streams the answer back masked", async () => {
  // The agent's SDK call: no key (or a placeholder it was given), a prompt with a token in it.
  const res = await fetch(`${base}/v1/messages`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "anthropic-version": "2023-06-01",
      "x-api-key": "placeholder",
    },
    body: JSON.stringify({
      model: "claude-sonnet-4-5",
      max_tokens: 256,
      stream: true,
      messages: [{ role: "user", content: `Look up the customer; my token is ${GITHUB_TOKEN}` }],
    }),
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const body = await res.text();
  expect(seenKeys.at(-1)).toBe(API_KEY);

  const events = body.split("\n\n").filter(Boolean);
  expect(events[0]).toMatch(/^event: message_start\n/);
  expect(events.at(-1)).toMatch(/^event: message_stop\n/);
  expect(events.at(-2)).toMatch(/^event: content_block_stop\n/);
  const deltas = events
    .filter((e) => e.startsWith("event: content_block_delta"))
    .map((e) => JSON.parse(e.slice(e.indexOf("data: ") + 6)) as { delta: { text: string } });
  const text = deltas.map((d) => d.delta.text).join("");
  expect(text).not.toContain(EMAIL);
  expect(text).not.toContain(CARD);
  expect(text).toContain("Sure. The customer is");
  // partial keeps the last four characters
  expect(text).toMatch(/4242\./);

  const forwarded = upstream.requests.at(-1);
  expect(forwarded?.body.toString("utf8")).not.toContain(GITHUB_TOKEN);
  expect(Number(forwarded?.headers["content-length"])).toBe(forwarded?.body.length);

  const event = await until(() => sc.audit.at(-1));
  expect(event).toMatchObject({
    connection: "anthropic",
    operation: { kind: "http", method: "POST", path: "/v1/messages" },
    decision: { action: "allow", rule: "call-model" },
    upstream: { status: 200 },
    masked: { githubToken: 1 },
  });
  expect(event.masked).toEqual({ githubToken: 1, email: 1, creditCard: 1 });

  const serialized = JSON.stringify(sc.audit) + sc.logs();
  for (const v of [API_KEY, EMAIL, CARD, GITHUB_TOKEN]) expect(serialized).not.toContain(v);
});
