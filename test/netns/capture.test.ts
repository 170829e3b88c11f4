// Egress capture end to end, with the real pieces: airlock-init installs real iptables/ip6tables
// rules in an "agent" network namespace; the sidecar's transparent listener (SO_ORIGINAL_DST via the
// N-API addon) runs there as the proxy UID 1717; an "upstream" namespace behind a veth pair serves
// TCP and UDP. Agent processes run under ordinary identities and try to get out every way they can.
// The suite runs once per iptables backend that works here (nft and/or legacy). When the machine
// cannot create namespaces or run iptables it is skipped, and the reason is printed.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { nativeAddonStatus } from "../../sidecar/src/transparent/original-dst.ts";
import {
  createTopology,
  missingFeature,
  reapStale,
  type Service,
  startService,
  type Topology,
  workingBackends,
} from "./netns.ts";

const here = import.meta.dirname;
const INIT = join(here, "..", "..", "init", "bin", "airlock-init.js");
const SIDECAR = join(here, "sidecar-server.ts");
const UPSTREAM = join(here, "upstream.ts");
const PROBE = join(here, "probe.ts");

const PROXY = 1717;
const AGENT = 1000;
const ALLOWED = 8080; // in the policy, by address (IPv4 and IPv6)
const BY_NAME = 8081; // in the policy, by host name resolved through the namespace's /etc/hosts
const SHARED = 8082; // two HTTP connections on one address: the Host header decides
const UNKNOWN = 9090; // not in the policy
const EXCLUDED_PORT = 7070;

const missing = missingFeature();
const backends = missing ? [] : workingBackends();
const skipReason =
  missing ?? (backends.length === 0 ? "neither iptables-nft nor iptables-legacy works here" : undefined);
// A missing feature shows up as a skipped test whose name says why (and on stderr), never as a pass.
if (skipReason) {
  console.warn(`[netns] egress capture tests SKIPPED: ${skipReason}`);
  describe("egress capture in network namespaces", () => {
    it.skip(`skipped: ${skipReason}`, () => {});
  });
}
for (const b of ["nft", "legacy"] as const) {
  if (skipReason || backends.includes(b)) continue;
  console.warn(`[netns] iptables-${b} does not work in a network namespace here; its suite is SKIPPED`);
  describe(`egress capture in network namespaces (iptables-${b})`, () => {
    it.skip(`skipped: iptables-${b} does not work in a network namespace on this machine`, () => {});
  });
}

function policy(t: Topology): AgentAccessPolicy {
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "capture", namespace: "agents" },
    spec: {
      connections: [
        { name: "echo-v4", protocol: "postgres", target: { host: t.upstreamV4, port: ALLOWED } },
        { name: "echo-v6", protocol: "postgres", target: { host: t.upstreamV6, port: ALLOWED } },
        { name: "echo-name", protocol: "postgres", target: { host: "upstream.test", port: BY_NAME } },
        { name: "api-a", protocol: "http", target: { host: "a.test", port: SHARED } },
        { name: "api-b", protocol: "http", target: { host: "b.test", port: SHARED } },
      ],
      rules: [{ name: "all", action: "allow" }],
    },
  };
}

interface ProbeSpec {
  drop?: { uid: number; gid: number; groups?: number[] };
  trySetuid?: number;
  tcp?: { host: string; port: number; send?: string };
  udp?: { host: string; port: number; send: string };
  loopback?: boolean;
  timeoutMs?: number;
}

interface TcpResult {
  ok: boolean;
  data?: string;
  code?: string;
}

const bracket = (a: string) => (a.includes(":") ? `[${a}]` : a);

describe.each(backends)("egress capture in network namespaces (iptables-%s)", (backend) => {
  let t: Topology;
  let upstream: Service;
  let sidecar: Service | undefined;
  const initArgs = (t: Topology) => [
    "--proxy-uid",
    String(PROXY),
    "--proxy-gid",
    String(PROXY),
    "--redirect-port",
    "15900",
    "--exclude-cidrs",
    `${t.upstreamV4Excluded}/32,${t.upstreamV6Excluded}`,
    "--exclude-ports",
    String(EXCLUDED_PORT),
    "--dns-servers",
    "none",
  ];

  async function probe(spec: ProbeSpec, wrapper: readonly string[] = []): Promise<Record<string, unknown>> {
    const r = await t.exec(t.agent, wrapper[0] ?? process.execPath, [
      ...(wrapper.length ? [...wrapper.slice(1), process.execPath] : []),
      PROBE,
      JSON.stringify(spec),
    ]);
    if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }
  const asAgent = (tcp: ProbeSpec["tcp"], extra: Partial<ProbeSpec> = {}) =>
    probe({ drop: { uid: AGENT, gid: AGENT }, tcp, ...extra }).then((r) => r.tcp as TcpResult);
  const asProxy = (tcp: ProbeSpec["tcp"]) =>
    probe({ drop: { uid: PROXY, gid: PROXY }, tcp }).then((r) => r.tcp as TcpResult);
  const sawAccepted = () => sidecar?.lines.filter((l) => "accepted" in l).length ?? 0;

  beforeAll(async () => {
    const addon = nativeAddonStatus();
    if (!addon.ok) throw new Error(addon.reason);
    reapStale();
    t = createTopology();
    t.hosts({
      "upstream.test": [t.upstreamV4, t.upstreamV6],
      "a.test": [t.upstreamV4],
      "b.test": [t.upstreamV4],
    });
    upstream = startService(t.upstream, UPSTREAM, {
      tcp: [ALLOWED, BY_NAME, SHARED, UNKNOWN, EXCLUDED_PORT],
      udp: [53, 5353],
      udpHosts: [t.upstreamV4, t.upstreamV4Excluded, t.upstreamV6, t.upstreamV6Excluded],
    });
    await upstream.waitFor((l) => l.ready === true);
  });

  afterAll(async () => {
    await sidecar?.stop();
    await upstream?.stop();
    t?.cleanup();
  });

  it("before capture, the agent reaches the upstream directly (the topology works)", async () => {
    expect(await asAgent({ host: t.upstreamV4, port: UNKNOWN })).toEqual({
      ok: true,
      data: `UPSTREAM ${t.upstreamV4}:${UNKNOWN}\nping\n`,
    });
    expect((await asAgent({ host: t.upstreamV6, port: UNKNOWN })).ok).toBe(true);
  });

  it("airlock-init installs the rules; a re-run replaces them (idempotent)", async () => {
    const args = [...initArgs(t), "--iptables-backend", backend];
    const first = await t.exec(t.agent, process.execPath, [INIT, ...args]);
    expect(first.code, first.stderr).toBe(0);
    const save4 = await t.exec(t.agent, `iptables-${backend}-save`, []);
    const save6 = await t.exec(t.agent, `ip6tables-${backend}-save`, []);
    // Second run with auto detection: it must find its own rules in this backend and keep using it.
    const second = await t.exec(t.agent, process.execPath, [INIT, ...initArgs(t)]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain(`iptables backend ${backend}`);
    const strip = (s: string) => s.replace(/^#.*\n/gm, "").replace(/\[\d+:\d+\]/g, "");
    expect(strip((await t.exec(t.agent, `iptables-${backend}-save`, [])).stdout)).toBe(strip(save4.stdout));
    expect(strip((await t.exec(t.agent, `ip6tables-${backend}-save`, [])).stdout)).toBe(strip(save6.stdout));
    const jumps = save4.stdout.split("\n").filter((l) => /^-A OUTPUT .*-j AIRLOCK_/.test(l));
    expect(jumps).toHaveLength(2); // nat (TCP) and filter (non-TCP), once each
  });

  it("what --dry-run prints is exactly what is in force", async () => {
    const dry = await t.exec(t.agent, process.execPath, [INIT, ...initArgs(t), "--dry-run"]);
    expect(dry.code, dry.stderr).toBe(0);
    const [v4, v6] = dry.stdout.split("# ip6tables-restore --noflush (IPv6)\n");
    const ours = (text: string) =>
      text
        .split("\n")
        .map((l) => l.replace(/^-I OUTPUT 1 /, "-A OUTPUT "))
        .filter((l) => /^-A (AIRLOCK_|OUTPUT .*-j AIRLOCK_)/.test(l))
        .sort();
    for (const [tool, printed] of [
      ["iptables", v4],
      ["ip6tables", v6],
    ] as const) {
      const saved = (await t.exec(t.agent, `${tool}-${backend}-save`, [])).stdout;
      expect(ours(printed ?? "").length).toBeGreaterThan(10);
      expect(ours(saved)).toEqual(ours(printed ?? ""));
    }
  });

  it("changing options on a re-run converges (non-TCP rules removed, then restored)", async () => {
    const before = (await t.exec(t.agent, `iptables-${backend}-save`, [])).stdout;
    const allow = await t.exec(t.agent, process.execPath, [INIT, ...initArgs(t), "--non-tcp", "allow"]);
    expect(allow.code, allow.stderr).toBe(0);
    for (const tool of ["iptables", "ip6tables"]) {
      const saved = (await t.exec(t.agent, `${tool}-${backend}-save`, [])).stdout;
      expect(saved).not.toContain("AIRLOCK_NON_TCP");
      expect(saved).toContain("AIRLOCK_REDIRECT");
    }
    const back = await t.exec(t.agent, process.execPath, [INIT, ...initArgs(t)]);
    expect(back.code, back.stderr).toBe(0);
    const strip = (x: string) => x.replace(/^#.*\n/gm, "").replace(/\[\d+:\d+\]/g, "");
    expect(strip((await t.exec(t.agent, `iptables-${backend}-save`, [])).stdout)).toBe(strip(before));
  });

  it("with the sidecar not running, the agent cannot reach anything (fail closed)", async () => {
    for (const host of [t.upstreamV4, t.upstreamV6])
      for (const port of [ALLOWED, UNKNOWN])
        expect(await asAgent({ host, port }), `${host}:${port}`).toMatchObject({
          ok: false,
          code: "ECONNREFUSED",
        });
  });

  it("the sidecar starts as UID 1717 on 127.0.0.1:15900 and [::1]:15900", async () => {
    sidecar = startService(t.agent, SIDECAR, {
      policies: [policy(t)],
      port: 15900,
      uid: PROXY,
      gid: PROXY,
    });
    const ready = await sidecar.waitFor((l) => l.ready === true);
    expect(ready).toMatchObject({ uid: PROXY, gid: PROXY });
    expect((ready.addresses as { address: string }[]).map((a) => a.address)).toEqual(["127.0.0.1", "::1"]);
    expect((ready.resolved as Record<string, string[]>)["upstream.test"]?.sort()).toEqual([
      t.upstreamV4,
      t.upstreamV6,
    ]);
  });

  for (const family of [4, 6] as const) {
    it(`IPv${family}: an agent (UID 1000) dialling an allowed upstream reaches the sidecar, which recovers the original destination and forwards`, async () => {
      const host = family === 4 ? t.upstreamV4 : t.upstreamV6;
      const before = sawAccepted();
      const r = await asAgent({ host, port: ALLOWED });
      expect(r).toEqual({ ok: true, data: `UPSTREAM ${bracket(host)}:${ALLOWED}\nping\n` });
      expect(sawAccepted()).toBe(before + 1);
      const accepted = await sidecar?.waitFor(
        (l) => (l.accepted as { connection?: string } | undefined)?.connection === `echo-v${family}`,
      );
      expect(accepted?.accepted).toMatchObject({
        originalDst: { address: host, port: ALLOWED, family },
        uid: PROXY,
      });
    });
  }

  it("a policy target given by host name maps by the addresses the sidecar resolved", async () => {
    // Either address of upstream.test reaches the connection; the sidecar then dials the configured
    // target (the name), so the upstream may see either family whichever the agent dialled.
    for (const host of [t.upstreamV4, t.upstreamV6]) {
      const r = await asAgent({ host, port: BY_NAME });
      expect(r.ok).toBe(true);
      expect(r.data).toMatch(
        new RegExp(`^UPSTREAM (10\\.250\\.0\\.2|\\[fd00:250::2\\]):${BY_NAME}\nping\n$`),
      );
    }
    const accepted = sidecar?.lines
      .map((l) => l.accepted as { connection?: string; originalDst?: { address: string } } | undefined)
      .filter((a) => a?.connection === "echo-name");
    expect(accepted?.map((a) => a?.originalDst?.address)).toEqual([t.upstreamV4, t.upstreamV6]);
  });

  it("two HTTP connections on one address: the Host header picks, and the peeked bytes are forwarded", async () => {
    const request = "GET /v1/x HTTP/1.1\r\nHost: b.test\r\n\r\n";
    const r = await asAgent({ host: t.upstreamV4, port: SHARED, send: request });
    expect(r).toEqual({ ok: true, data: `UPSTREAM ${t.upstreamV4}:${SHARED}\n${request}` });
    const accepted = await sidecar?.waitFor(
      (l) => (l.accepted as { connection?: string })?.connection === "api-b",
    );
    expect(accepted?.accepted).toMatchObject({ head: request });
  });

  it("an unknown destination is refused with a reset and audited", async () => {
    for (const host of [t.upstreamV4, t.upstreamV6]) {
      expect(await asAgent({ host, port: UNKNOWN })).toMatchObject({
        ok: false,
        code: "ECONNRESET",
        data: "",
      });
      const audit = await sidecar?.waitFor(
        (l) =>
          (l.audit as { operation?: { destination?: string } })?.operation?.destination ===
          `${bracket(host)}:${UNKNOWN}`,
      );
      expect(audit?.audit).toMatchObject({
        protocol: "tcp",
        operation: { kind: "tcp" },
        decision: {
          action: "deny",
          reason: `unknown destination ${bracket(host)}:${UNKNOWN}: no policy connection for it`,
        },
      });
    }
  });

  it("the proxy UID passes straight through (no sidecar involved)", async () => {
    const before = sidecar?.lines.length;
    for (const host of [t.upstreamV4, t.upstreamV6])
      expect(await asProxy({ host, port: UNKNOWN })).toEqual({
        ok: true,
        data: `UPSTREAM ${bracket(host)}:${UNKNOWN}\nping\n`,
      });
    expect(sidecar?.lines.length).toBe(before);
  });

  it("supplementary group 1717 does not exempt an agent (only the primary GID does)", async () => {
    const r = await probe({
      drop: { uid: AGENT, gid: AGENT, groups: [PROXY] },
      tcp: { host: t.upstreamV4, port: UNKNOWN },
    });
    expect(r).toMatchObject({ uid: AGENT, gid: AGENT });
    expect(r.groups).toContain(PROXY);
    expect(r.tcp).toMatchObject({ ok: false, code: "ECONNRESET" });
  });

  it("primary GID 1717 is exempt, as the rules say: the injector must refuse agents with runAsGroup 1717", async () => {
    const r = await probe({ drop: { uid: AGENT, gid: PROXY }, tcp: { host: t.upstreamV4, port: UNKNOWN } });
    expect(r.tcp).toMatchObject({ ok: true });
  });

  it("an agent running as root without CAP_SETUID/CAP_SETGID cannot become 1717 and stays captured", async () => {
    const r = await probe({ trySetuid: PROXY, tcp: { host: t.upstreamV4, port: UNKNOWN } }, [
      "setpriv",
      "--inh-caps=-setuid,-setgid",
      "--bounding-set=-setuid,-setgid",
    ]);
    expect(r).toMatchObject({ uid: 0, setuid: "EPERM", setgid: "EPERM", uidAfter: 0 });
    expect(r.tcp).toMatchObject({ ok: false, code: "ECONNRESET" });
  });

  it("with CAP_SETUID (the opt-out) root can become 1717 and bypass: why the injector drops it", async () => {
    const r = await probe({ trySetuid: PROXY, tcp: { host: t.upstreamV4, port: UNKNOWN } });
    expect(r).toMatchObject({ setuid: "ok", uidAfter: PROXY });
    expect(r.tcp).toMatchObject({ ok: true });
  });

  it("a non-Node client under setpriv (bash /dev/tcp, UID 1000) is captured too", async () => {
    const script = (host: string, port: number) =>
      `exec 3<>/dev/tcp/${host}/${port} && printf 'ping\\n' >&3 && timeout 3 head -n 2 <&3; echo "rc=$?"`;
    const run = (port: number) =>
      t.exec(t.agent, "setpriv", [
        "--reuid",
        String(AGENT),
        "--regid",
        String(AGENT),
        "--clear-groups",
        "bash",
        "-c",
        script(t.upstreamV4, port),
      ]);
    const allowed = await run(ALLOWED);
    expect(allowed.stdout).toContain(`UPSTREAM ${t.upstreamV4}:${ALLOWED}\nping\n`);
    const unknown = await run(UNKNOWN);
    expect(unknown.stdout).not.toContain("UPSTREAM");
    expect(unknown.stdout).toMatch(/rc=[1-9]/);
  });

  it("loopback traffic is unaffected", async () => {
    const before = sidecar?.lines.length;
    const r = await probe({ drop: { uid: AGENT, gid: AGENT }, loopback: true });
    expect(r.loopback).toEqual({
      "127.0.0.1": { ok: true, data: "LOCAL\nping\n" },
      "::1": { ok: true, data: "LOCAL\nping\n" },
    });
    expect(sidecar?.lines.length).toBe(before);
  });

  it("excluded CIDRs and ports bypass the sidecar", async () => {
    const before = sidecar?.lines.length;
    for (const host of [t.upstreamV4Excluded, t.upstreamV6Excluded])
      expect(await asAgent({ host, port: UNKNOWN })).toEqual({
        ok: true,
        data: `UPSTREAM ${bracket(host)}:${UNKNOWN}\nping\n`,
      });
    for (const host of [t.upstreamV4, t.upstreamV6])
      expect(await asAgent({ host, port: EXCLUDED_PORT })).toEqual({
        ok: true,
        data: `UPSTREAM ${bracket(host)}:${EXCLUDED_PORT}\nping\n`,
      });
    expect(sidecar?.lines.length).toBe(before);
  });

  it("non-TCP egress is refused except DNS; the proxy's is not", async () => {
    const udp = (host: string, port: number, uid: number) =>
      probe({ drop: { uid, gid: uid }, udp: { host, port, send: "hi" }, timeoutMs: 1_500 }).then(
        (r) => r.udp,
      );
    for (const host of [t.upstreamV4, t.upstreamV6]) {
      expect(await udp(host, 5353, AGENT), host).toMatchObject({ ok: false });
      expect(await udp(host, 53, AGENT), host).toEqual({ ok: true, data: "UDP hi" });
      expect(await udp(host, 5353, PROXY), host).toEqual({ ok: true, data: "UDP hi" });
    }
  });

  it("connections straight to the capture port are refused as a loop", async () => {
    const r = await asAgent({ host: "127.0.0.1", port: 15900 });
    expect(r).toMatchObject({ ok: false, code: "ECONNRESET" });
    const audit = await sidecar?.waitFor((l) =>
      /connection loop|no original destination/.test(
        (l.audit as { decision?: { reason?: string } })?.decision?.reason ?? "",
      ),
    );
    expect(audit).toBeDefined();
  });

  it("stopping the sidecar fails closed; airlock-init --clean removes every rule", async () => {
    await sidecar?.stop();
    expect(await asAgent({ host: t.upstreamV4, port: ALLOWED })).toMatchObject({
      ok: false,
      code: "ECONNREFUSED",
    });
    expect(await asAgent({ host: t.upstreamV6, port: ALLOWED })).toMatchObject({
      ok: false,
      code: "ECONNREFUSED",
    });
    const clean = await t.exec(t.agent, process.execPath, [INIT, "--clean"]);
    expect(clean.code, clean.stderr).toBe(0);
    for (const tool of ["iptables", "ip6tables"])
      expect((await t.exec(t.agent, `${tool}-${backend}-save`, [])).stdout).not.toContain("AIRLOCK");
    expect((await asAgent({ host: t.upstreamV4, port: UNKNOWN })).ok).toBe(true);
  });
});
