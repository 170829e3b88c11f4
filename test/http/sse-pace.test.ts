// Masked SSE keeps the pace of the upstream: an Anthropic-style answer streamed as 272 text deltas
// through the guard with every detector on. The upstream sends its next delta only once the agent
// has received all but the last MAX_LAG characters of the text sent so far (lockstep), so a guard
// that holds back more — or merges deltas — stalls the stream and fails here, whatever the
// machine's speed. Values cut across deltas must still be masked, exactly as masking the whole
// paragraph at once would.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { createMasker } from "../../sidecar/src/masking/index.ts";
import {
  deltaEvent,
  deltasOf,
  PARAGRAPH,
  readTextDeltas,
  SECRETS,
  STREAM_HEAD,
  STREAM_TAIL,
} from "../fixtures/anthropic-stream.ts";
import { policy, type Sidecar, startSidecar, startUpstream, type Upstream } from "./harness.ts";

/** Most text (characters) the guard may hold back: the longest value in the paragraph and a word. */
const MAX_LAG = 32;
const DELTAS = deltasOf(PARAGRAPH);
const masking = [{ name: "everything", detectors: ["all" as const], strategy: "redact" as const }];
const expected = createMasker({ rules: masking, hashKey: randomBytes(32) }).maskText(PARAGRAPH).text;
// Redaction tokens may be shorter than the values they replace: the agent's text is that much shorter.
const SHRINK = PARAGRAPH.length - expected.length;

function spec(port: number): AgentAccessPolicySpec {
  return {
    connections: [
      { name: "llm", protocol: "http", target: { host: "127.0.0.1", port }, tls: { mode: "disable" } },
    ],
    rules: [{ name: "all", action: "allow", match: { http: { paths: ["/**"] } } }],
    masking,
  };
}

let upstream: Upstream;
let sc: Sidecar;
let base: string;
/** Text the agent has received so far, and a wake-up for the upstream waiting on it. */
let received = "";
let progress: () => void = () => {};
let maxLag = 0;
/** Why the upstream gave up waiting for the agent, if it did. */
let stalled: string | undefined;

async function agentHas(chars: number, k: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (received.length < chars) {
    if (Date.now() > deadline)
      throw new Error(`before delta ${k}: the agent has ${received.length} of ${chars} characters`);
    await new Promise<void>((resolve) => {
      progress = resolve;
      setTimeout(resolve, 50);
    });
  }
}

beforeAll(async () => {
  upstream = await startUpstream(async (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
    res.write(STREAM_HEAD);
    let sent = 0;
    try {
      for (const [k, text] of DELTAS.entries()) {
        await agentHas(sent - MAX_LAG - SHRINK, k);
        maxLag = Math.max(maxLag, sent - received.length);
        res.write(deltaEvent(text));
        sent += text.length;
      }
    } catch (err) {
      stalled = (err as Error).message;
    }
    res.end(STREAM_TAIL);
  });
  sc = await startSidecar({ policies: [policy("llm", spec(upstream.port))] });
  base = await sc.listen("llm");
});

afterAll(async () => {
  await sc?.close();
  await upstream?.close();
});

describe("masked SSE pacing", () => {
  it("releases each delta's decided text at once, holding back at most the value in the making", async () => {
    received = "";
    const res = await fetch(`${base}/v1/messages`, { method: "POST", body: "{}" });
    expect(res.status).toBe(200);
    const deltas = await readTextDeltas(res.body as ReadableStream<Uint8Array>, (text) => {
      received += text;
      progress();
    });
    expect(stalled).toBeUndefined();
    // Every value masked, the text as masking the whole paragraph gives it.
    expect(received).toBe(expected);
    for (const s of SECRETS) expect(received).not.toContain(s);
    // One delta out per delta in (plus at most one carrying the held-back tail): none merged.
    expect(deltas).toBeGreaterThanOrEqual(DELTAS.length);
    expect(deltas).toBeLessThanOrEqual(DELTAS.length + 1);
    expect(maxLag).toBeLessThanOrEqual(MAX_LAG + SHRINK);
    const audit = sc.audit.find((e) => e.operation.kind === "http");
    expect(audit?.masked).toEqual({ email: 1, creditCard: 1, awsAccessKey: 1 });
  });
});
