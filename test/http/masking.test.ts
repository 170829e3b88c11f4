// Response and request masking through the guard: JSON (nested, arrays), text, gzip/br/deflate
// decoded with a fixed Content-Length, SSE masked while streaming, request bodies masked before
// they reach the upstream. Audit events and logs carry counts, never the values.
import { promisify } from "node:util";
import { brotliCompress, constants, createGzip, deflate, gzip } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import {
  json,
  policy,
  type Sidecar,
  send,
  sleep,
  startSidecar,
  startUpstream,
  type Upstream,
  until,
} from "./harness.ts";

const EMAIL = "alice.smith@example.com";
/** PNG signature, then a NUL-laden chunk that happens to contain an address: not text. */
const BINARY = Buffer.concat([
  Buffer.from("89504e470d0a1a0a0000000d49484452", "hex"),
  Buffer.from(`\0\0${EMAIL}\0`),
]);
const EMAIL2 = "bob@example.org";
const CARD = "4111 1111 1111 1111";
const SSN = "123-45-6789";
const NOTE = "called about the divorce";
const AWS_KEY = "AKIAIOSFODNN7EXAMPLE";
const RAW_VALUES = [EMAIL, EMAIL2, CARD, SSN, NOTE, AWS_KEY, "4111111111111111"];

const customers = {
  customers: [
    { id: 1, email: EMAIL, card: CARD, profile: { ssn: SSN, internalNotes: NOTE, tags: ["vip", EMAIL2] } },
    { id: 2, email: null, contacts: [[{ mail: EMAIL2 }]] },
  ],
  total: 2,
};

function spec(port: number): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "crm",
        protocol: "http",
        target: { host: "127.0.0.1", port },
        tls: { mode: "disable" },
        limits: { maxResponseBodyBytes: 64 * 1024 },
      },
    ],
    rules: [{ name: "all", action: "allow", match: { http: { paths: ["/**"] } } }],
    masking: [
      { name: "pii", detectors: ["email", "creditCard", "usSsn"], strategy: "redact" },
      { name: "notes", fields: ["$..internalNotes"], strategy: "redact" },
      { name: "prompt-secrets", detectors: ["awsAccessKey"], strategy: "redact", direction: "request" },
    ],
  };
}

let upstream: Upstream;
let sc: Sidecar;
let base: string;
/** Resolved by the SSE test when the agent has seen the first event. */
let firstEventSeen: Promise<void> = Promise.resolve();

async function writeSlowly(res: import("node:http").ServerResponse, text: string, delayMs = 1) {
  for (const byte of Buffer.from(text, "utf8")) {
    res.write(Buffer.from([byte]));
    await sleep(delayMs);
  }
}

beforeAll(async () => {
  upstream = await startUpstream(async (req, res) => {
    const body = Buffer.from(JSON.stringify(customers));
    switch (req.url) {
      case "/customers":
        return json(res, 200, customers);
      case "/gzip": {
        const z = await promisify(gzip)(body);
        res.writeHead(200, {
          "content-type": "application/json",
          "content-encoding": "gzip",
          "content-length": z.length,
        });
        return void res.end(z);
      }
      case "/br": {
        const z = await promisify(brotliCompress)(body);
        res.writeHead(200, {
          "content-type": "application/json; charset=utf-8",
          "content-encoding": "br",
          "content-length": z.length,
        });
        return void res.end(z);
      }
      case "/deflate": {
        const z = await promisify(deflate)(body);
        res.writeHead(200, { "content-type": "application/json", "content-encoding": "deflate" });
        return void res.end(z);
      }
      case "/text":
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        return void res.end(`Customer ${EMAIL} paid with ${CARD}.\n`);
      case "/binary":
        res.writeHead(200, { "content-type": "application/octet-stream" });
        return void res.end(BINARY);
      case "/big":
        return json(res, 200, { rows: Array.from({ length: 4000 }, (_, i) => ({ i, email: EMAIL })) });
      case "/zstd-unknown":
        res.writeHead(200, { "content-type": "application/json", "content-encoding": "compress" });
        return void res.end("xx");
      case "/echo":
        return json(res, 200, {
          got: req.body.toString("utf8"),
          length: req.headers["content-length"] ?? null,
        });
      case "/sse": {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        // The first event carries an email split byte by byte across writes.
        await writeSlowly(res, `event: message\ndata: {"text":"write to ${EMAIL} today"}\n\n`);
        // Nothing more until the agent has the first event: a buffering proxy would hang here.
        await Promise.race([firstEventSeen, sleep(5000)]);
        await writeSlowly(res, `data: card ${CARD} on file\n\n`);
        await writeSlowly(res, "data: [DONE]\n\n");
        return void res.end();
      }
      case "/sse-gzip": {
        res.writeHead(200, { "content-type": "text/event-stream", "content-encoding": "gzip" });
        const z = createGzip();
        z.pipe(res);
        for (const event of [`data: {"email":"${EMAIL}"}\n\n`, `data: ssn ${SSN}\n\n`]) {
          z.write(event);
          z.flush(constants.Z_SYNC_FLUSH);
          await sleep(20);
        }
        return void z.end();
      }
      default:
        return json(res, 404, { error: "nope" });
    }
  });
  sc = await startSidecar({ policies: [policy("crm", spec(upstream.port))] });
  base = await sc.listen("crm");
});

afterAll(async () => {
  await sc.close();
  await upstream.close();
});

afterEach(() => {
  const serialized = JSON.stringify(sc.audit) + sc.logs();
  for (const v of RAW_VALUES) expect(serialized).not.toContain(v);
});

const expectNoRawValues = (text: string) => {
  for (const v of RAW_VALUES) expect(text).not.toContain(v);
};

describe("buffered JSON and text", () => {
  it("masks nested objects and arrays, fixes Content-Length and reports counts", async () => {
    const res = await send(`${base}/customers`);
    expect(res.status).toBe(200);
    expectNoRawValues(res.text);
    expect(Number(res.headers["content-length"])).toBe(res.body.length);
    const body = res.json<typeof customers>();
    expect(body.total).toBe(2);
    expect(body.customers[0]?.id).toBe(1);
    expect(body.customers[0]?.profile?.tags[0]).toBe("vip");
    const event = await until(() => sc.audit.at(-1));
    expect(event.masked).toEqual({ email: 3, creditCard: 1, usSsn: 1, field: 1 });
    expect(await sc.metrics.registry.metrics()).toMatch(
      /airlock_masked_values_total\{connection="crm",detector="email"\} \d+/,
    );
  });

  it.each(["/gzip", "/br", "/deflate"])("decodes %s, masks, and drops Content-Encoding", async (path) => {
    const res = await send(`${base}${path}`, { headers: { "accept-encoding": "gzip, br" } });
    expect(res.status).toBe(200);
    expect(res.headers["content-encoding"]).toBeUndefined();
    expect(Number(res.headers["content-length"])).toBe(res.body.length);
    expectNoRawValues(res.text);
    expect(res.json<typeof customers>().customers).toHaveLength(2);
    // The sidecar offers only what the agent accepts and it can decode.
    expect(upstream.requests.at(-1)?.headers["accept-encoding"]).toBe("gzip, br");
  });

  it("masks text/plain", async () => {
    const res = await send(`${base}/text`);
    expect(res.text).toMatch(/^Customer \S+ paid with .+\.\n$/);
    expectNoRawValues(res.text);
  });

  it("passes bodies that are not text through untouched (judged by their bytes)", async () => {
    const res = await send(`${base}/binary`);
    expect(res.body.equals(BINARY)).toBe(true);
  });

  it("refuses (502) a body too large to buffer for masking instead of passing it unmasked", async () => {
    const res = await send(`${base}/big`);
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: "response_too_large_to_mask" });
    expect(sc.audit.at(-1)).toMatchObject({ upstream: { status: 200, error: "response_too_large_to_mask" } });
  });

  it("refuses (502) an encoding it cannot decode", async () => {
    const res = await send(`${base}/zstd-unknown`);
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: "unsupported_content_encoding" });
  });
});

describe("server-sent events", () => {
  it("masks values split across chunks and releases each event before the stream ends", async () => {
    let seen!: () => void;
    firstEventSeen = new Promise((r) => {
      seen = r;
    });
    const res = await fetch(`${base}/sse`);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(res.headers.get("content-length")).toBeNull();
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let received = "";
    const arrivals: string[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += decoder.decode(value, { stream: true });
      if (arrivals.length === 0 && received.includes("\n\n")) {
        arrivals.push(received);
        // The stream is still open: the upstream waits for this before sending more.
        expect(sc.audit.some((e) => e.operation.kind === "http" && e.operation.path === "/sse")).toBe(false);
        seen();
      }
    }
    expect(arrivals[0]).toMatch(/^event: message\ndata: \{"text":"write to .+ today"\}\n\n$/);
    expectNoRawValues(received);
    expect(received).toContain("data: [DONE]\n\n");
    expect(received.split("\n\n").filter(Boolean)).toHaveLength(3);
    const event = await until(() =>
      sc.audit.find((e) => e.operation.kind === "http" && e.operation.path === "/sse"),
    );
    expect(event.masked).toEqual({ email: 1, creditCard: 1 });
    expect(event.upstream).toEqual({ status: 200 });
  });

  it("decodes a gzip-encoded event stream while streaming", async () => {
    const res = await send(`${base}/sse-gzip`, { headers: { "accept-encoding": "gzip" } });
    expect(res.headers["content-encoding"]).toBeUndefined();
    expect(res.text.split("\n\n").filter(Boolean)).toHaveLength(2);
    expectNoRawValues(res.text);
  });
});

describe("request masking", () => {
  it("masks JSON request bodies before they reach the upstream and fixes Content-Length", async () => {
    const prompt = JSON.stringify({
      messages: [{ role: "user", content: `my key is ${AWS_KEY}, email ${EMAIL}` }],
    });
    const res = await send(`${base}/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: prompt,
    });
    const got = res.json<{ got: string; length: string }>();
    const forwarded = upstream.requests.at(-1);
    expect(forwarded?.body.toString("utf8")).not.toContain(AWS_KEY);
    expect(Number(forwarded?.headers["content-length"])).toBe(forwarded?.body.length);
    // Request rules only: the email (a response rule) goes to the upstream as sent...
    expect(forwarded?.body.toString("utf8")).toContain(EMAIL);
    // ...and is masked on the way back.
    expect(got.got).not.toContain(EMAIL);
    const event = await until(() => sc.audit.at(-1));
    expect(event.masked).toMatchObject({ awsAccessKey: 1 });
  });

  it("decodes a gzip request body to mask it", async () => {
    const z = await promisify(gzip)(Buffer.from(`key=${AWS_KEY}`));
    await send(`${base}/echo`, {
      method: "POST",
      headers: { "content-type": "text/plain", "content-encoding": "gzip" },
      body: z,
    });
    const forwarded = upstream.requests.at(-1);
    expect(forwarded?.headers["content-encoding"]).toBeUndefined();
    expect(forwarded?.body.toString("utf8")).toMatch(/^key=/);
    expect(forwarded?.body.toString("utf8")).not.toContain(AWS_KEY);
  });
});
