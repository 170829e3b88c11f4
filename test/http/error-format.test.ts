// Refusals in the upstream API's own error shape (`errorFormat`), asserted with the official
// Anthropic and OpenAI SDKs: a policy denial is their typed permission error whose message names
// Airlock, the rule and the next step; the sidecar's own refusals are not retried into
// (`x-should-retry: false`), upstream failures still are.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { json, policy, type Sidecar, send, startSidecar, startUpstream, type Upstream } from "./harness.ts";

let upstream: Upstream;
let sc: Sidecar;
const base: Record<string, string> = {};

function spec(port: number): AgentAccessPolicySpec {
  const target = { host: "127.0.0.1", port };
  const tls = { mode: "disable" as const };
  return {
    connections: [
      { name: "anthropic", protocol: "http", target, tls, errorFormat: "anthropic", listen: { port: 15101 } },
      { name: "openai", protocol: "http", target, tls, errorFormat: "openai", listen: { port: 15102 } },
      { name: "plain", protocol: "http", target, tls, listen: { port: 15103 } },
      // Nothing listens on port 9: the upstream is down.
      {
        name: "anthropic-down",
        protocol: "http",
        target: { host: "127.0.0.1", port: 9 },
        tls,
        errorFormat: "anthropic",
        listen: { port: 15104 },
      },
    ],
    rules: [
      {
        name: "no-file-uploads",
        action: "deny",
        connections: ["anthropic", "openai", "plain"],
        match: { http: { paths: ["/v1/files/**"] } },
      },
      {
        name: "call-model",
        action: "allow",
        match: { http: { methods: ["POST"], paths: ["/v1/messages", "/v1/chat/completions"] } },
      },
    ],
    masking: [{ name: "pii", connections: ["anthropic"], detectors: ["email"], strategy: "redact" }],
  };
}

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    // A response the sidecar cannot decode, so it cannot mask it: refused, never passed on.
    if (req.url === "/v1/messages")
      return json(res, 200, { content: [{ type: "text", text: "x" }] }, { "content-encoding": "x-unknown" });
    return json(res, 200, { id: "chatcmpl-1", object: "chat.completion", choices: [] });
  });
  sc = await startSidecar({ policies: [policy("model-access", spec(upstream.port))] });
  for (const name of ["anthropic", "openai", "plain", "anthropic-down"]) base[name] = await sc.listen(name);
});

afterAll(async () => {
  await sc?.close();
  await upstream?.close();
});

const anthropic = (url: string, maxRetries = 2) =>
  new Anthropic({ apiKey: "placeholder", baseURL: url, maxRetries });

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("the call succeeded; a refusal was expected");
}

describe("errorFormat: anthropic", () => {
  it("a path outside every allow rule is the SDK's PermissionDeniedError naming Airlock and the default deny", async () => {
    const err = await caught(anthropic(base.anthropic as string).models.list());
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    const e = err as InstanceType<typeof Anthropic.PermissionDeniedError>;
    expect(e.status).toBe(403);
    expect(e.type).toBe("permission_error");
    expect(e.apiMessage).toMatch(/^Airlock refused this request: /);
    expect(e.apiMessage).toContain("under policy agents/model-access");
    expect(e.apiMessage).toContain("not an authentication failure");
    expect(e.error).toMatchObject({
      type: "error",
      airlock: { error: "denied", policy: "agents/model-access" },
    });
  });

  it("a deny rule is named in the message", async () => {
    const err = await caught(
      anthropic(base.anthropic as string).beta.files.list({ betas: ["files-api-2025-04-14"] }),
    );
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    const e = err as InstanceType<typeof Anthropic.PermissionDeniedError>;
    expect(e.apiMessage).toContain("rule no-file-uploads");
    expect(e.headers?.get("x-should-retry")).toBe("false");
  });

  it("a response the sidecar cannot mask is a 502 the SDK does not retry", async () => {
    const before = upstream.requests.length;
    const err = await caught(
      anthropic(base.anthropic as string, 2).messages.create({
        model: "claude-sonnet-4-5",
        max_tokens: 16,
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    const e = err as InstanceType<typeof Anthropic.InternalServerError>;
    expect(e.status).toBe(502);
    expect(e.type).toBe("api_error");
    expect(e.apiMessage).toContain("not passed on unmasked");
    // maxRetries 2 would have sent three requests; the sidecar said its refusal is final.
    expect(upstream.requests.length - before).toBe(1);
  });

  it("an unreachable upstream is retryable: the SDK retries it", async () => {
    const before = sc.audit.filter((a) => a.connection === "anthropic-down").length;
    const err = await caught(
      anthropic(base["anthropic-down"] as string, 1).messages.create({
        model: "claude-sonnet-4-5",
        max_tokens: 16,
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    const e = err as InstanceType<typeof Anthropic.APIError>;
    expect(e.status).toBe(502);
    expect(e.headers?.get("x-should-retry")).toBe("true");
    expect(sc.audit.filter((a) => a.connection === "anthropic-down").length - before).toBe(2);
  });
});

describe("errorFormat: openai", () => {
  it("a denial is the SDK's PermissionDeniedError with Airlock's code and rule", async () => {
    const client = new OpenAI({ apiKey: "placeholder", baseURL: `${base.openai}/v1`, maxRetries: 2 });
    const err = await caught(client.files.list());
    expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
    const e = err as InstanceType<typeof OpenAI.PermissionDeniedError>;
    expect(e.status).toBe(403);
    expect(e.code).toBe("denied");
    expect(e.type).toBe("permission_error");
    expect(e.message).toContain("Airlock refused this request");
    expect(e.message).toContain("rule no-file-uploads");
  });

  it("an allowed call still works through the same connection", async () => {
    const client = new OpenAI({ apiKey: "placeholder", baseURL: `${base.openai}/v1`, maxRetries: 0 });
    const out = await client.chat.completions.create({
      model: "gpt-x",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(out.id).toBe("chatcmpl-1");
  });
});

describe("errorFormat absent: Airlock's JSON", () => {
  it("keeps the stable `error` code at the top level", async () => {
    const r = await send(`${base.plain}/v1/files/abc`);
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: "denied", rule: "no-file-uploads" });
    expect(r.headers["x-should-retry"]).toBe("false");
  });
});
