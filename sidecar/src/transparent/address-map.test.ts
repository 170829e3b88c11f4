import { describe, expect, it } from "vitest";
import { testPolicy } from "../../../test/fixtures/transparent.ts";
import { compilePolicies } from "../policy/compile.ts";
import { canonicalIp, createAddressMap } from "./address-map.ts";

const set = (connections: Parameters<typeof testPolicy>[1]) =>
  compilePolicies([testPolicy("p", connections)]).set;
const pg = (name: string, host: string, aliases?: string[]) => ({
  name,
  protocol: "postgres" as const,
  target: { host, port: 5432, ...(aliases ? { aliases } : {}) },
});

describe("canonicalIp", () => {
  it("one spelling per address", () => {
    expect(canonicalIp("FD00:0:0::7")).toBe("fd00::7");
    expect(canonicalIp("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(canonicalIp("10.0.0.1")).toBe("10.0.0.1");
  });
});

describe("address map", () => {
  it("literal addresses apply before any resolution", () => {
    const m = createAddressMap(set([pg("a", "10.0.0.1", ["FD00::1"])]), { resolve: async () => [] });
    expect(m.lookup("10.0.0.1", 5432)).toEqual(["a"]);
    expect(m.lookup("fd00::1", 5432)).toEqual(["a"]);
    expect(m.lookup("10.0.0.1", 5433)).toEqual([]);
  });

  it("resolves host names and aliases; several connections may share an address", async () => {
    const answers: Record<string, string[]> = { "a.db": ["10.0.0.2"], "b.db": ["10.0.0.2", "10.0.0.3"] };
    const m = createAddressMap(set([pg("a", "a.db"), pg("b", "B.db")]), {
      resolve: async (h) => answers[h] ?? [],
    });
    await m.refresh();
    expect(m.lookup("10.0.0.2", 5432)).toEqual(["a", "b"]);
    expect(m.lookup("10.0.0.3", 5432)).toEqual(["b"]);
    expect(m.snapshot()).toEqual({ "a.db": ["10.0.0.2"], "b.db": ["10.0.0.2", "10.0.0.3"] });
  });

  it("keeps the last known addresses of a name that stops resolving, drops names the policy dropped", async () => {
    let fail = false;
    const m = createAddressMap(set([pg("a", "a.db")]), {
      resolve: async () => {
        if (fail) throw new Error("SERVFAIL");
        return ["10.0.0.4"];
      },
    });
    await m.refresh();
    fail = true;
    await m.refresh();
    expect(m.lookup("10.0.0.4", 5432)).toEqual(["a"]);
    await m.refresh(set([pg("c", "10.0.0.9")]));
    expect(m.lookup("10.0.0.4", 5432)).toEqual([]);
    expect(m.lookup("10.0.0.9", 5432)).toEqual(["c"]);
  });

  it("a hanging resolver times out instead of blocking", async () => {
    const m = createAddressMap(set([pg("a", "slow.db")]), {
      resolve: () => new Promise(() => {}),
      resolveTimeoutMs: 50,
    });
    await m.refresh();
    expect(m.lookup("10.0.0.1", 5432)).toEqual([]);
    expect(m.age()).toBeLessThan(1_000);
  });

  it("concurrent refreshes share the work; a new set during a refresh is resolved too", async () => {
    let calls = 0;
    const m = createAddressMap(set([pg("a", "a.db")]), {
      resolve: async (h) => {
        calls++;
        await new Promise((r) => setTimeout(r, 20));
        return h === "a.db" ? ["10.0.0.1"] : ["10.0.0.2"];
      },
    });
    const p1 = m.refresh();
    const p2 = m.refresh();
    expect(p1).toBe(p2);
    const p3 = m.refresh(set([pg("b", "b.db")]));
    await Promise.all([p1, p2, p3]);
    expect(calls).toBe(2);
    expect(m.lookup("10.0.0.2", 5432)).toEqual(["b"]);
  });
});
