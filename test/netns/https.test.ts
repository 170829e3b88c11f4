// HTTPS at layer 7 with unmodified clients, in network namespaces with the real capture rules:
// airlock-init's iptables rules in an "agent" namespace with no route out; the real sidecar
// (app.ts: pod CA, interception, HTTP guard) as UID 1717; an "upstream" namespace serving
// https://api.example.test and https://api.anthropic.com with a certificate from the test's own CA
// (given to the connections; no system root signs it). Both names resolve, through the agent
// namespace's /etc/hosts, to the upstream. The agent (UID 1000) runs curl, Python requests, Node
// fetch, Go net/http, a JVM's HttpClient and the Anthropic TypeScript SDK with default settings and
// only what the injector gives an agent container: the trust variables (TRUST_ENV, and
// JAVA_TOOL_OPTIONS naming the truststore) and, in the "proxied" runs, the proxy variables
// (PROXY_ENV) too. Skipped, with the reason printed, without root or netns.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { ANTHROPIC_PLACEHOLDER_API_KEY } from "../../injector/src/names.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { compilePolicies } from "../../sidecar/src/policy/compile.ts";
import { NameOutsideConstraintsError, PodCa } from "../../sidecar/src/protocols/http/tls/pod-ca.ts";
import { passthroughNames, podCaHosts } from "../../sidecar/src/protocols/http/tls/pod-ca-keeper.ts";
import { nativeAddonStatus } from "../../sidecar/src/transparent/original-dst.ts";
import { type AgentPod, type Mode, PROXY_UID as PROXY, startAgentPod } from "./agent-pod.ts";
import { anthropicConnection, customerApiConnection, pinnedConnection } from "./connections.ts";
import { missingFeature, type Service, type Topology, workingBackends } from "./netns.ts";
import {
  ANTHROPIC_HOST,
  CUSTOMER,
  EXAMPLE_HOST,
  PINNED_HOST,
  PLACEHOLDER_TOKEN,
  REAL_ANTHROPIC_KEY,
  REAL_API_TOKEN,
} from "./tls-fixtures.ts";

const here = import.meta.dirname;

const missing = missingFeature();
const backend = missing ? undefined : workingBackends()[0];
const skipReason = missing ?? (backend ? undefined : "neither iptables-nft nor iptables-legacy works here");
if (skipReason) console.warn(`[netns] HTTPS interception tests SKIPPED: ${skipReason}`);
// Agent clients from the machine (.ci/run installs them); a missing one skips its cases, said here.
const hasGo = !skipReason && spawnSync("go", ["version"]).status === 0;
const hasRequests = !skipReason && spawnSync("/usr/bin/python3", ["-c", "import requests"]).status === 0;
const hasJava = !skipReason && spawnSync("java", ["-version"]).status === 0;
if (!skipReason && !hasJava) console.warn("[netns] HTTPS: no java on PATH: the JVM cases are SKIPPED");
if (!skipReason && !hasGo) console.warn("[netns] HTTPS: no go on PATH: the Go net/http cases are SKIPPED");
if (!skipReason && !hasRequests)
  console.warn(
    "[netns] HTTPS: /usr/bin/python3 lacks requests (apt-get install python3-requests): its cases are SKIPPED",
  );

function policy(): AgentAccessPolicy {
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "https-agent", namespace: "agents" },
    spec: {
      connections: [
        customerApiConnection("example-api", "api-token"),
        anthropicConnection(),
        pinnedConnection(),
      ],
      rules: [
        {
          name: "no-admin",
          action: "deny",
          connections: ["example-api"],
          match: { http: { paths: ["/admin/**"] } },
        },
        {
          name: "read",
          action: "allow",
          connections: ["example-api"],
          match: { http: { methods: ["GET"], paths: ["/v1/**"] } },
        },
        {
          name: "call-model",
          action: "allow",
          connections: ["anthropic"],
          match: { http: { methods: ["POST"], paths: ["/v1/messages"] } },
        },
        {
          name: "open-pinned",
          action: "allow",
          connections: ["pinned-api"],
          match: { http: { methods: ["CONNECT"] } },
        },
      ],
      // Not the passthrough connection: its bytes stay encrypted (the loader refuses masking there).
      masking: [
        {
          name: "pii",
          connections: ["example-api", "anthropic"],
          detectors: ["email", "phone"],
          strategy: "partial",
        },
      ],
    },
  };
}

interface Http {
  status?: number;
  contentType?: string | null;
  body?: string;
  error?: string;
}

describe.skipIf(skipReason !== undefined)(
  `HTTPS interception in network namespaces (iptables-${backend})`,
  () => {
    let pod: AgentPod;
    let t: Topology;
    let bundle: string;
    let upstreamCaFile: string;
    let realKeyPin: string;
    let nodeBin: string;
    let goBin: string;
    let sidecar: Service;
    const envFor = (mode: Mode, extra: Record<string, string> = {}) => pod.envFor(mode, extra);
    const asAgent = (env: Record<string, string>, command: string, args: readonly string[]) =>
      pod.asAgent(env, command, args);
    const audits = () => pod.audits();
    const requests = () => pod.requests();
    const auditOf = (connection: string, path: string, from: number) => pod.auditOf(connection, path, from);

    // --- the clients, each with its defaults ---------------------------------------------------
    const curl = async (mode: Mode, url: string, extra: readonly string[] = []): Promise<Http> => {
      const r = await asAgent(envFor(mode), "curl", [
        "-sS",
        "--max-time",
        "15",
        "-H",
        `Authorization: Bearer ${PLACEHOLDER_TOKEN}`,
        "-w",
        "\n%{http_code} %{content_type}",
        ...extra,
        url,
      ]);
      if (r.code !== 0) return { error: r.stderr.trim() };
      const nl = r.stdout.lastIndexOf("\n");
      const [status, contentType = ""] = r.stdout.slice(nl + 1).split(" ");
      return { status: Number(status), contentType, body: r.stdout.slice(0, nl) };
    };
    const python = async (mode: Mode, url: string): Promise<Http> => {
      const script = [
        "import json, sys, requests",
        "try:",
        `    r = requests.get(sys.argv[1], headers={'Authorization': 'Bearer ${PLACEHOLDER_TOKEN}'}, timeout=15)`,
        "    print(json.dumps({'status': r.status_code, 'contentType': r.headers.get('content-type'), 'body': r.text}))",
        "except Exception as e:",
        "    print(json.dumps({'error': repr(e)}))",
      ].join("\n");
      const r = await asAgent(envFor(mode), "/usr/bin/python3", ["-c", script, url]);
      return r.code === 0 ? (JSON.parse(r.stdout) as Http) : { error: r.stderr };
    };
    const node = async (mode: Mode, url: string): Promise<Http> => {
      const r = await asAgent(envFor(mode), nodeBin, [
        join(here, "clients", "node-fetch.ts"),
        url,
        JSON.stringify({ authorization: `Bearer ${PLACEHOLDER_TOKEN}` }),
      ]);
      return r.code === 0 ? (JSON.parse(r.stdout) as Http) : { error: r.stderr };
    };
    const go = async (mode: Mode, url: string, extra: readonly string[] = []): Promise<Http> => {
      const r = await asAgent(envFor(mode), goBin, [
        "-H",
        `Authorization: Bearer ${PLACEHOLDER_TOKEN}`,
        ...extra,
        url,
      ]);
      return r.stdout ? (JSON.parse(r.stdout) as Http) : { error: r.stderr };
    };
    const java = async (mode: Mode, url: string): Promise<Http> => {
      const r = await asAgent(envFor(mode), "java", [
        join(here, "..", "http", "clients", "HttpsGet.java"),
        url,
      ]);
      const [status = "", ...rest] = r.stdout.split("\n");
      if (r.code !== 0 || status === "error") return { error: `${rest.join("\n")}${r.stderr}` };
      return { status: Number(status), body: rest.join("\n").trim() };
    };
    const clients = { curl, python, node, go, java } as const;

    beforeAll(async () => {
      const addon = nativeAddonStatus();
      if (!addon.ok) throw new Error(addon.reason);
      pod = await startAgentPod({
        policy: policy(),
        backend: backend ?? "nft",
        // Each name alone on its address: captured sockets are mapped by address, before the sidecar
        // has read a byte (the HTTP guard then tells TLS from plain HTTP by the first bytes).
        hosts: (t) => ({
          [EXAMPLE_HOST]: [t.upstreamV4],
          [ANTHROPIC_HOST]: [t.upstreamV4Excluded],
          [PINNED_HOST]: [t.upstreamV6],
        }),
        secrets: [
          ["api-token", "token", REAL_API_TOKEN],
          ["anthropic-api-key", "api-key", REAL_ANTHROPIC_KEY],
        ],
      });
      ({ t, bundle, upstreamCaFile, nodeBin, sidecar } = pod);
      realKeyPin = `sha256//${createHash("sha256")
        .update(new X509Certificate(pod.serving.certPem).publicKey.export({ type: "spki", format: "der" }))
        .digest("base64")}`;
      // The agent's Go program, built where UID 1000 can run it.
      goBin = join(pod.binDir, "go-https");
      if (hasGo)
        execFileSync("go", ["build", "-trimpath", "-o", goBin, "."], {
          cwd: join(here, "clients", "go-https"),
          env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-mod=mod" },
          stdio: ["ignore", "ignore", "pipe"],
        });
    }, 60_000);

    afterAll(async () => {
      await pod?.close();
    });

    it("the agent namespace has no route out; the sidecar runs as UID 1717 and wrote the bundle", async () => {
      const routes = await t.exec(t.agent, "ip", ["route", "show", "default"]);
      expect(routes.stdout.trim()).toBe("");
      const out = await asAgent(envFor("captured"), "curl", [
        "-sS",
        "--max-time",
        "5",
        "https://198.51.100.7/",
      ]);
      expect(out.code).not.toBe(0);
      expect(sidecar.lines.find((l) => l.ready === true)).toMatchObject({ uid: PROXY, gid: PROXY });
      // The pod CA leads the bundle; the upstream's own CA is nowhere in it.
      const pem = readFileSync(bundle, "utf8");
      const first = new X509Certificate(pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25));
      expect(first.subject).toContain("Airlock pod CA");
      expect(pem).not.toContain(readFileSync(upstreamCaFile, "utf8").trim());
    });

    let customer = 100;
    for (const mode of ["captured", "proxied"] as const)
      for (const [name, client] of Object.entries(clients))
        it.skipIf(
          (name === "go" && !hasGo) || (name === "python" && !hasRequests) || (name === "java" && !hasJava),
        )(
          `${name} (${mode}): an allowed path comes back masked; the upstream sees the sidecar's credential`,
          async () => {
            const from = sidecar.lines.length;
            const seen = requests().length;
            const path = `/v1/customers/${++customer}`;
            const r = await client(mode, `https://${EXAMPLE_HOST}${path}`);
            expect(r.error, r.error).toBeUndefined();
            expect(r.status).toBe(200);
            const body = JSON.parse(r.body ?? "{}") as { email: string; phone: string; name: string };
            expect(body.name).toBe(CUSTOMER.name);
            expect(r.body).not.toContain(CUSTOMER.email);
            expect(body.email).toMatch(/\*/);
            expect(body.phone).not.toBe(CUSTOMER.phone);
            const got = requests().slice(seen);
            expect(got).toHaveLength(1);
            expect(got[0]).toMatchObject({ host: EXAMPLE_HOST, method: "GET", url: path });
            expect(got[0]?.authorization).toBe(`Bearer ${REAL_API_TOKEN}`);
            expect(JSON.stringify(got)).not.toContain(PLACEHOLDER_TOKEN);
            const event = await auditOf("example-api", path, from);
            expect(event).toMatchObject({
              protocol: "http",
              operation: { kind: "http", method: "GET", path },
              decision: { action: "allow", rule: "read" },
              upstream: { status: 200 },
              identity: { serviceAccount: "system:serviceaccount:agents:agent" },
            });
            expect(event.masked).toMatchObject({ email: 1, phone: 1 });
            // How it got there: curl, requests and Go honour HTTPS_PROXY (a CONNECT to 127.0.0.1:15901,
            // which the rules leave alone); fetch and the JVM ignore it, so their TLS is captured on port 443 (and,
            // api.example.test being alone on its address, mapped before a byte was read).
            const captured = sidecar.lines
              .slice(from)
              .filter((l) => l.msg === "captured connection mapped" && l.connection === "example-api");
            const viaProxy = mode === "proxied" && name !== "node" && name !== "java";
            expect(captured.map((l) => l.by)).toEqual(viaProxy ? [] : ["address"]);
          },
        );

    it("a denied path is refused with the sidecar's error and never reaches the upstream (curl, Go)", async () => {
      const seen = requests().length;
      for (const [client, mode] of [
        [curl, "captured"],
        [hasGo ? go : curl, "proxied"],
      ] as const) {
        const from = sidecar.lines.length;
        const r = await client(mode, `https://${EXAMPLE_HOST}/admin/users`);
        expect(r.status).toBe(403);
        expect(JSON.parse(r.body ?? "{}")).toMatchObject({ error: "denied", rule: "no-admin" });
        expect(await auditOf("example-api", "/admin/users", from)).toMatchObject({
          decision: { action: "deny", rule: "no-admin" },
        });
      }
      expect(requests().slice(seen)).toEqual([]);
    });

    it("SSE: the event stream comes back with the PII masked (curl, Node fetch)", async () => {
      for (const [client, mode] of [
        [curl, "captured"],
        [node, "captured"],
      ] as const) {
        const r = await client(mode, `https://${EXAMPLE_HOST}/v1/events`);
        expect(r.status).toBe(200);
        expect(r.contentType).toContain("text/event-stream");
        const events = (r.body ?? "").split("\n\n").filter(Boolean);
        expect(events.map((e) => /^event: (\w+)/m.exec(e)?.[1])).toEqual(["signup", "login"]);
        expect(r.body).not.toContain(CUSTOMER.email);
        for (const e of events) expect(JSON.parse(/^data: (.*)$/m.exec(e)?.[1] ?? "{}").email).toMatch(/\*/);
      }
    });

    it("the Anthropic SDK with its defaults: the key is the sidecar's, the answer masked (JSON and SSE)", async () => {
      for (const how of ["create", "stream"] as const) {
        const from = sidecar.lines.length;
        const seen = requests().length;
        const r = await asAgent(
          envFor("captured", { ANTHROPIC_API_KEY: ANTHROPIC_PLACEHOLDER_API_KEY }),
          nodeBin,
          [join(here, "clients", "anthropic-sdk.ts"), how],
        );
        const out = JSON.parse(r.stdout || "{}") as { text?: string; error?: string; deltas?: number };
        expect(out.error, r.stderr).toBeUndefined();
        expect(out.text).toMatch(/^Hello from the stand-in\. The customer is /);
        expect(out.text).not.toContain(CUSTOMER.email);
        if (how === "stream") expect(out.deltas).toBeGreaterThan(3);
        const got = requests().slice(seen);
        expect(got).toHaveLength(1);
        expect(got[0]).toMatchObject({
          host: ANTHROPIC_HOST,
          url: "/v1/messages",
          xApiKey: REAL_ANTHROPIC_KEY,
        });
        expect(JSON.stringify(got)).not.toContain(ANTHROPIC_PLACEHOLDER_API_KEY);
        expect(await auditOf("anthropic", "/v1/messages", from)).toMatchObject({
          decision: { action: "allow", rule: "call-model" },
          upstream: { status: 200 },
          masked: { email: 1 },
        });
      }
    });

    it("pinned clients fail closed and are audited: curl --pinnedpubkey, Go trusting only the real CA, system roots only", async () => {
      const seen = requests().length;
      const before = audits().length;
      const pinned = await curl("captured", `https://${EXAMPLE_HOST}/v1/customers/1`, [
        "--pinnedpubkey",
        realKeyPin,
      ]);
      expect(pinned.error).toMatch(/pinned public key/i);
      if (hasGo) {
        const goPinned = await go("captured", `https://${EXAMPLE_HOST}/v1/customers/2`, [
          "-roots",
          upstreamCaFile,
        ]);
        expect(goPinned.error).toMatch(/certificate signed by unknown authority/);
      }
      const systemOnly = await curl("captured", `https://${EXAMPLE_HOST}/v1/customers/3`, [
        "--cacert",
        "/etc/ssl/certs/ca-certificates.crt",
      ]);
      expect(systemOnly.error).toMatch(/certificate/i);
      expect(requests().slice(seen)).toEqual([]);
      // Each is audited with the reason an operator can act on: the two that rejected the pod CA's
      // certificate in the handshake, and curl, which checks its pin after the handshake and hangs up.
      const refusals = () =>
        audits()
          .slice(before)
          .filter((e) => e.operation.kind === "http-tunnel");
      const expected = [
        ...(hasGo ? ["tls_untrusted_by_client"] : []),
        "tls_untrusted_by_client",
        "closed_before_request",
      ].sort();
      await sidecar.waitFor(() => refusals().length >= expected.length);
      expect(
        refusals()
          .map((e) => e.upstream?.error)
          .sort(),
      ).toEqual(expected);
      for (const e of refusals())
        expect(e).toMatchObject({
          connection: "example-api",
          decision: {
            action: "deny",
            reason: expect.stringMatching(/lacks the Airlock trust bundle|pins the server's key/),
          },
        });
      expect(sidecar.lines.some((l) => /a pinning client/.test(String(l.msg)))).toBe(true);
    });

    it("no leaf outside the name constraints: an SNI no policy names gets no certificate, and the CA cannot mint one", async () => {
      const seen = requests().length;
      for (const [address, sni] of [
        [t.upstreamV4, "evil.example.test"],
        [t.upstreamV4, `x.${EXAMPLE_HOST}`],
        [t.upstreamV4Excluded, "evil.example.test"],
      ] as const) {
        const r = await asAgent(envFor("captured"), "openssl", [
          "s_client",
          "-connect",
          `${address}:443`,
          "-servername",
          sni,
          "-CAfile",
          bundle,
        ]);
        expect(`${r.stdout}${r.stderr}`).toMatch(/no peer certificate available/);
        expect(r.stdout).not.toMatch(/BEGIN CERTIFICATE/);
      }
      // Through the explicit proxy: a CONNECT to a host no policy names is refused outright.
      const viaProxy = await curl("proxied", "https://evil.example.test/");
      expect(viaProxy.error).toMatch(/403|CONNECT/);
      expect(requests().slice(seen)).toEqual([]);

      // The pod CA in the bundle is constrained to exactly the policy's HTTPS hosts.
      const text = execFileSync("openssl", ["x509", "-noout", "-text", "-in", bundle], { encoding: "utf8" });
      const constraints = /X509v3 Name Constraints: critical\s+Permitted:\s+((?:DNS:\S+\s+)+)/.exec(
        text,
      )?.[1];
      expect(constraints?.trim().split(/\s+/).sort()).toEqual([
        `DNS:${ANTHROPIC_HOST}`,
        `DNS:${EXAMPLE_HOST}`,
      ]);
      // The passthrough host is excluded: no leaf for it can ever verify, whatever is permitted.
      expect(text).toMatch(new RegExp(`Excluded:\\s+DNS:${PINNED_HOST.replace(/\./g, "\\.")}`));
      // The CA code path with the same policy: a leaf for any other name is refused.
      const hosts = podCaHosts(compilePolicies([policy()]).set);
      expect(hosts).toEqual([ANTHROPIC_HOST, EXAMPLE_HOST]);
      const ca = await PodCa.create({ hosts, excluded: passthroughNames(compilePolicies([policy()]).set) });
      await expect(ca.leaf(EXAMPLE_HOST)).resolves.toMatchObject({ name: EXAMPLE_HOST });
      for (const name of [
        "evil.example.test",
        `x.${EXAMPLE_HOST}`,
        "example.test",
        "198.51.100.7",
        PINNED_HOST,
      ])
        await expect(ca.leaf(name)).rejects.toBeInstanceOf(NameOutsideConstraintsError);
    });

    it("tls.mode passthrough: a pinned client gets the upstream's own TLS, relayed opaque and audited as one tunnel", async () => {
      // curl trusting the upstream's real CA and pinning its real key: what an app with a pinned
      // certificate does. Captured on port 443 and through HTTPS_PROXY (a CONNECT) alike.
      const pin = ["--cacert", upstreamCaFile, "--pinnedpubkey", realKeyPin];
      for (const mode of ["captured", "proxied"] as const) {
        const from = sidecar.lines.length;
        const seen = requests().length;
        const path = `/v1/customers/${++customer}`;
        const r = await curl(mode, `https://${PINNED_HOST}${path}`, pin);
        expect(r.error, r.error).toBeUndefined();
        expect(r.status).toBe(200);
        // Nothing inside was read: no masking, no credential; the upstream got the agent's own
        // request over the agent's own TLS session (its server name, its placeholder header).
        expect(r.body).toContain(CUSTOMER.email);
        const got = requests().slice(seen);
        expect(got).toHaveLength(1);
        expect(got[0]).toMatchObject({
          host: PINNED_HOST,
          servername: PINNED_HOST,
          url: path,
          authorization: `Bearer ${PLACEHOLDER_TOKEN}`,
        });
        const line = await sidecar.waitFor(
          (l) =>
            sidecar.lines.indexOf(l) >= from &&
            (l.audit as { connection?: string } | undefined)?.connection === "pinned-api",
          10_000,
        );
        const event = line.audit as AuditEvent;
        expect(event).toMatchObject({
          protocol: "http",
          operation: { kind: "http-tunnel", sni: PINNED_HOST },
          decision: { action: "allow", rule: "open-pinned" },
          upstream: { status: "connected" },
          identity: { serviceAccount: "system:serviceaccount:agents:agent" },
        });
        const bytes = (event.operation as { bytes?: { fromAgent: number; fromUpstream: number } }).bytes;
        expect(bytes?.fromAgent).toBeGreaterThan(300);
        expect(bytes?.fromUpstream).toBeGreaterThan(r.body?.length ?? 0);
        expect(sidecar.lines.slice(from).some((l) => l.msg === "captured connection mapped")).toBe(
          mode === "captured",
        );
      }
      // The same pinned clients against an intercepted connection still fail closed: trusting only
      // the upstream's CA, the handshake; trusting the bundle too, the pin after it.
      const before = audits().length;
      const seen = requests().length;
      for (const trust of [upstreamCaFile, bundle]) {
        const intercepted = await curl("captured", `https://${EXAMPLE_HOST}/v1/customers/1`, [
          "--cacert",
          trust,
          "--pinnedpubkey",
          realKeyPin,
        ]);
        expect(intercepted.error).toMatch(trust === bundle ? /pinned public key/i : /certificate/i);
      }
      const refusals = () =>
        audits()
          .slice(before)
          .filter((e) => e.connection === "example-api")
          .map((e) => e.upstream?.error)
          .sort();
      await sidecar.waitFor(() => refusals().length >= 2);
      expect(refusals()).toEqual(["closed_before_request", "tls_untrusted_by_client"]);
      expect(requests().slice(seen)).toEqual([]);
    });

    it("tls.mode passthrough: a ClientHello naming another host on the passthrough address is relayed nowhere", async () => {
      const seen = requests().length;
      const before = audits().length;
      const r = await asAgent(envFor("captured"), "openssl", [
        "s_client",
        "-connect",
        `[${t.upstreamV6}]:443`,
        "-servername",
        EXAMPLE_HOST,
        "-CAfile",
        upstreamCaFile,
      ]);
      expect(`${r.stdout}${r.stderr}`).toMatch(/no peer certificate available/);
      const ofPinned = () =>
        audits()
          .slice(before)
          .find((e) => e.connection === "pinned-api");
      await sidecar.waitFor(() => ofPinned() !== undefined);
      const event = ofPinned();
      expect(event).toMatchObject({
        operation: { kind: "http-tunnel", sni: EXAMPLE_HOST },
        decision: { action: "deny" },
        upstream: { error: "sni_mismatch" },
      });
      expect(requests().slice(seen)).toEqual([]);
    });

    it("the sidecar's output holds neither credential nor the raw PII", () => {
      const text = JSON.stringify(sidecar.lines) + sidecar.stderr();
      for (const v of [REAL_API_TOKEN, REAL_ANTHROPIC_KEY, CUSTOMER.email, "PRIVATE KEY"])
        expect(text).not.toContain(v);
    });
  },
);

if (skipReason)
  describe("HTTPS interception in network namespaces", () => {
    it.skip(`skipped: ${skipReason}`, () => {});
  });
