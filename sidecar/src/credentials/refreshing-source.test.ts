import pino from "pino";
import { describe, expect, it } from "vitest";
import { refreshingSource } from "./refreshing-source.ts";
import { CredentialError, type CredentialSource, heldFields } from "./source.ts";

// The inner source is scripted: each read hands out the next value or fails, and counts releases.
function scripted() {
  const state = {
    reads: 0,
    released: [] as string[],
    fail: false,
    value: "v1",
    gate: undefined as Promise<void> | undefined,
  };
  const source: CredentialSource = {
    kind: "vault",
    async acquire() {
      state.reads++;
      await state.gate;
      if (state.fail) throw new CredentialError("unreachable", "vault down");
      const v = state.value;
      return heldFields(new Map([["token", v]]), { source: "vault" }, "kv", () => state.released.push(v));
    },
  };
  return { state, source };
}

const logger = pino({ level: "silent" });
const req = { session: "s", keys: ["token"] };

describe("refreshingSource", () => {
  it("reads once per period, shares a read in flight, releases the value it replaces", async () => {
    let t = 0;
    const { state, source } = scripted();
    const s = refreshingSource(source, { connection: "c", refreshMs: 1000, logger, now: () => t });
    let open!: () => void;
    state.gate = new Promise<void>((r) => (open = r));
    const both = Promise.all([s.acquire(req), s.acquire(req)]);
    open();
    expect((await both).map((h) => h.get("token"))).toEqual(["v1", "v1"]);
    state.gate = undefined;
    t = 999;
    (await s.acquire(req)).release(); // a caller's release does not end the shared hold
    expect(state).toMatchObject({ reads: 1, released: [] });
    t = 1000;
    state.value = "v2";
    expect((await s.acquire(req)).get("token")).toBe("v2");
    expect(state).toMatchObject({ reads: 2, released: ["v1"] });
  });

  it("rides out a failed re-read for one more period, spacing retries, then fails", async () => {
    let t = 0;
    const { state, source } = scripted();
    const s = refreshingSource(source, {
      connection: "c",
      refreshMs: 1000,
      retryMs: 100,
      logger,
      now: () => t,
    });
    await s.acquire(req);
    state.fail = true;
    t = 1500;
    expect((await s.acquire(req)).get("token")).toBe("v1");
    t = 1550; // within retryMs: no new read
    expect((await s.acquire(req)).get("token")).toBe("v1");
    expect(state.reads).toBe(2);
    t = 2000;
    await expect(s.acquire(req)).rejects.toThrow(CredentialError);
    state.fail = false;
    state.value = "v3";
    expect((await s.acquire(req)).get("token")).toBe("v3");
  });

  it("a first read that fails fails the request (nothing cached to fall back on)", async () => {
    const { state, source } = scripted();
    state.fail = true;
    const s = refreshingSource(source, { connection: "c", refreshMs: 1000, logger });
    await expect(s.acquire(req)).rejects.toThrow("vault down");
  });
});
