// Masking by content, not by label, and the identity headers an upstream must not take from the
// agent. A raw-socket upstream logs exactly what reaches it (request side) and answers exactly
// what the test scripts (response side).
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { makeKey, signToken, TestIdp, type TestKey } from "../fixtures/oidc-provider.ts";
import { policy, type Sidecar, startSidecar } from "./harness.ts";
import { type RawUpstream, rawRequest, requestLine, startRawUpstream } from "./raw.ts";

const AWS_KEY = "AKIAIOSFODNN7EXAMPLE";
const EMAIL = "ada.lovelace@example.com";
const NOT_TEXT = Buffer.concat([Buffer.from("89504e470d0a1a0a", "hex"), Buffer.from(`\0${AWS_KEY}\0`)]);

let requests: RawUpstream; // request-masking connection "llm"
let responses: RawUpstream; // response-masking connection "api"
let sc: Sidecar;
let llm: number;
let api: number;
let idp: TestIdp;
let key: TestKey;

/** What the response-side upstream answers, by request path. */
const scripted: Record<string, string | Buffer> = {
  "/untyped": `HTTP/1.1 200 OK\r\ncontent-length: ${`contact ${EMAIL}`.length}\r\n\r\ncontact ${EMAIL}`,
  "/octet": `HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${`{"email":"${EMAIL}"}`.length}\r\n\r\n{"email":"${EMAIL}"}`,
  "/header": `HTTP/1.1 204 No Content\r\nx-contact: ${EMAIL}\r\n\r\n`,
  "/png": Buffer.concat([
    Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: ${NOT_TEXT.length}\r\n\r\n`),
    NOT_TEXT,
  ]),
  "/gzip-untyped": (() => {
    const z = gzipSync(`contact ${EMAIL}`);
    return Buffer.concat([
      Buffer.from(`HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: ${z.length}\r\n\r\n`),
      z,
    ]);
  })(),
};

const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  key = await makeKey("RS256", "k1");
  idp = await TestIdp.start([key]);
  requests = await startRawUpstream();
  responses = await startRawUpstream((head) => {
    const path = (requestLine(head).split(" ")[1] ?? "").split("?")[0] ?? "";
    return scripted[path] ?? "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
  });
  const spec: AgentAccessPolicySpec = {
    identity: { oidc: { issuer: idp.url, audiences: ["airlock"], jwksUri: idp.jwksUri } },
    connections: [
      {
        name: "llm",
        protocol: "http",
        target: { host: "127.0.0.1", port: requests.port },
        tls: { mode: "disable" },
        userHeader: "X-Forwarded-User",
      },
      {
        name: "api",
        protocol: "http",
        target: { host: "127.0.0.1", port: responses.port },
        tls: { mode: "disable" },
      },
    ],
    rules: [
      {
        name: "uploads",
        action: "allow",
        connections: ["llm"],
        match: { http: { methods: ["POST"], paths: ["/upload/**"], binaryBodies: true } },
      },
      {
        name: "llm-calls",
        action: "allow",
        connections: ["llm"],
        match: { http: { methods: ["GET", "POST"] } },
      },
      {
        name: "api-reads",
        action: "allow",
        connections: ["api"],
        match: { http: { methods: ["GET"], websocket: true } },
      },
    ],
    masking: [
      {
        name: "no-secrets-out",
        connections: ["llm"],
        detectors: ["awsAccessKey", "email"],
        strategy: "redact",
        direction: "request",
      },
      { name: "no-pii-in", connections: ["api"], detectors: ["email"], strategy: "redact" },
    ],
  };
  sc = await startSidecar({ policies: [policy("content", spec)] });
  llm = Number(new URL(await sc.listen("llm")).port);
  api = Number(new URL(await sc.listen("api")).port);
});

afterAll(async () => {
  await sc?.close();
  await requests?.close();
  await responses?.close();
  await idp?.stop();
});

const post = (path: string, body: Buffer | string, headers: string[] = []) => {
  const bytes = Buffer.from(body);
  return rawRequest(
    llm,
    Buffer.concat([
      Buffer.from(
        `POST ${path} HTTP/1.1\r\nHost: llm\r\n${headers.map((h) => `${h}\r\n`).join("")}content-length: ${bytes.length}\r\nConnection: close\r\n\r\n`,
      ),
      bytes,
    ]),
  );
};
const lastBody = () => requests.bodies.at(-1)?.toString("utf8") ?? "";

describe("request bodies are judged by their bytes, not their declared type", () => {
  it.each([
    ["application/octet-stream", ["content-type: application/octet-stream"]],
    ["no Content-Type at all", []],
    ["text/plain", ["content-type: text/plain"]],
  ])("an AWS key in a POST body labelled %s is masked before the upstream sees it", async (_l, headers) => {
    const r = await post("/v1/messages", `please store ${AWS_KEY} for me`, headers);
    expect(r.status, r.text).toBe(200);
    expect(lastBody()).toBe("please store [REDACTED:awsAccessKey] for me");
    expect(sc.audit.at(-1)?.masked).toMatchObject({ awsAccessKey: 1 });
  });

  it("a gzip-encoded untyped body is decoded, masked and forwarded without its encoding", async () => {
    const r = await post("/v1/messages", gzipSync(`key ${AWS_KEY}`), ["content-encoding: gzip"]);
    expect(r.status, r.text).toBe(200);
    expect(lastBody()).toBe("key [REDACTED:awsAccessKey]");
    expect(requests.heads.at(-1)).not.toMatch(/content-encoding/i);
  });

  it("a body that is not text is refused (415), whatever it is labelled, and nothing reaches the upstream", async () => {
    const before = requests.heads.length;
    for (const type of ["application/json", "application/octet-stream"]) {
      const r = await post("/v1/messages", NOT_TEXT, [`content-type: ${type}`]);
      expect(r.status, r.text).toBe(415);
      expect(JSON.parse(r.text)).toMatchObject({ error: "binary_request_body" });
    }
    expect(requests.heads.length).toBe(before);
  });

  it("a rule with binaryBodies: true lets a body that is not text through, byte for byte", async () => {
    const r = await post("/upload/avatar", NOT_TEXT, ["content-type: image/png"]);
    expect(r.status, r.text).toBe(200);
    expect(requests.bodies.at(-1)?.equals(NOT_TEXT)).toBe(true);
  });
});

describe("query strings and headers pass the detectors when request masking applies", () => {
  it("masks query values (decoded first) and header values; framing headers are left alone", async () => {
    const r = await rawRequest(
      llm,
      `GET /v1/search?q=${AWS_KEY}&to=ada.lovelace%40example.com&page=2 HTTP/1.1\r\nHost: llm\r\nX-Note: key ${AWS_KEY}\r\nConnection: close\r\n\r\n`,
    );
    expect(r.status, r.text).toBe(200);
    const head = requests.heads.at(-1) ?? "";
    expect(requestLine(head)).toBe(
      "GET /v1/search?q=%5BREDACTED%3AawsAccessKey%5D&to=%5BREDACTED%3Aemail%5D&page=2 HTTP/1.1",
    );
    expect(head).toMatch(/\r\nx-note: key \[REDACTED:awsAccessKey\]/i);
    expect(head).not.toContain(AWS_KEY);
    expect(sc.audit.at(-1)?.masked).toMatchObject({ awsAccessKey: 2, email: 1 });
  });
});

describe("response bodies and headers are masked by content", () => {
  const get = async (path: string) =>
    rawRequest(api, `GET ${path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n`);

  it.each([
    ["/untyped", "contact [REDACTED:email]"],
    ["/octet", '{"email":"[REDACTED:email]"}'],
    ["/gzip-untyped", "contact [REDACTED:email]"],
  ])("%s: a text body without a textual Content-Type is masked", async (path, body) => {
    const r = await get(path);
    expect(r.status).toBe(200);
    expect(r.text).toBe(body);
  });

  it("a response header carrying PII is masked", async () => {
    const r = await rawRequest(api, "GET /header HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n");
    expect(r.status).toBe(204);
    expect(r.head).toMatch(/\r\nx-contact: \[REDACTED:email\]/i);
    expect(r.head).not.toContain(EMAIL);
  });

  it("a body that is not text passes byte for byte", async () => {
    const r = await rawRequest(api, "GET /png HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n");
    expect(r.status).toBe(200);
    expect(r.bytes.equals(NOT_TEXT)).toBe(true);
  });

  it("a WebSocket upgrade is refused where masking applies (frames are not masked)", async () => {
    const r = await rawRequest(
      api,
      "GET /stream HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text)).toMatchObject({ error: "websocket_unmaskable" });
  });
});

describe("identity headers", () => {
  const FORGED = [
    "X-Forwarded-User: admin",
    "X-Remote-User: admin",
    "X-Remote-Group: system:masters",
    "X-Remote-Extra-Scopes: all",
    "X-Auth-Request-Email: admin@example.com",
    "X-WEBAUTH-USER: admin",
    "Remote-User: admin",
    "X-Goog-Authenticated-User-Email: accounts.google.com:admin@example.com",
  ];

  it("forged identity headers never reach the upstream", async () => {
    const r = await rawRequest(
      llm,
      `GET /v1/models HTTP/1.1\r\nHost: llm\r\n${FORGED.map((h) => `${h}\r\n`).join("")}Connection: close\r\n\r\n`,
    );
    expect(r.status, r.text).toBe(200);
    const head = (requests.heads.at(-1) ?? "").toLowerCase();
    for (const h of FORGED) expect(head).not.toContain(h.split(":")[0]?.toLowerCase());
  });

  it("the connection's userHeader carries the verified user, never the agent's claim", async () => {
    const jwt = await signToken(key, {
      iss: idp.url,
      aud: "airlock",
      sub: "alice",
      iat: now(),
      exp: now() + 300,
    });
    const r = await rawRequest(
      llm,
      `GET /v1/models HTTP/1.1\r\nHost: llm\r\nX-Airlock-Identity: Bearer ${jwt}\r\nX-Forwarded-User: admin\r\nConnection: close\r\n\r\n`,
    );
    expect(r.status, r.text).toBe(200);
    const head = requests.heads.at(-1) ?? "";
    expect(head.match(/\r\nx-forwarded-user: [^\r]*/gi)).toEqual(["\r\nx-forwarded-user: alice"]);
    expect(head.toLowerCase()).not.toContain("x-airlock-identity");
  });
});
