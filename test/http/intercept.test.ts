// HTTPS interception with real clients and real TLS: curl, Python requests and Node fetch go
// through the explicit proxy (CONNECT) to a local HTTPS upstream with its own CA, trusting only the
// trust bundle the pod CA keeper writes. Inside, the full HTTP guard applies: path rules, masking,
// credential injection, one audit event per request.
import "reflect-metadata";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import {
  type AddressInfo,
  createServer as createNetServer,
  connect as netConnect,
  type Socket,
} from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { NameOutsideConstraintsError } from "../../sidecar/src/protocols/http/tls/pod-ca.ts";
import { type PodCaKeeper, startPodCaKeeper } from "../../sidecar/src/protocols/http/tls/pod-ca-keeper.ts";
import { createCA, issueServingCert } from "../envtest/pki.ts";
import { json, policy, type Sidecar, startSidecar, startUpstream, type Upstream, until } from "./harness.ts";

const run = promisify(execFile);
const REAL_TOKEN = "sk-real-upstream-token";

let upstream: Upstream;
let sc: Sidecar;
let keeper: PodCaKeeper;
let proxyUrl: string;
let dir: string;
let bundle: string;
let origin: string;
let upstreamCaPem: string;

function spec(port: number): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "api",
        protocol: "http",
        target: { host: "localhost", port },
        tls: { mode: "verify-full", caSecretRef: { name: "upstream-ca", key: "ca.crt" } },
        credentials: {
          secretRef: { name: "api-token" },
          http: { header: "Authorization", key: "token", format: "Bearer {value}" },
        },
      },
    ],
    rules: [
      { name: "no-admin", action: "deny", connections: ["api"], match: { http: { paths: ["/admin/**"] } } },
      {
        name: "read",
        action: "allow",
        connections: ["api"],
        match: { http: { methods: ["GET"], paths: ["/v1/**"] } },
      },
    ],
    masking: [{ name: "pii", detectors: ["email"], strategy: "redact" }],
  };
}

const java = await run("java", ["-version"]).then(
  () => true,
  () => false,
);
const python = await run("python3", ["-c", "import requests"]).then(
  () => true,
  () => false,
);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "airlock-intercept-"));
  bundle = join(dir, "trust-bundle.pem");
  const upstreamCa = await createCA("airlock-intercept-upstream-ca");
  const serving = await issueServingCert(upstreamCa, ["localhost"]);
  upstreamCaPem = upstreamCa.certPem;
  upstream = await startUpstream(
    (req, res) =>
      json(res, 200, {
        path: req.url,
        customer: "alice@example.com",
        auth: req.headers.authorization ?? null,
      }),
    { key: serving.keyPem, cert: serving.certPem },
  );
  origin = `https://localhost:${upstream.port}`;
  sc = await startSidecar({
    policies: [policy("intercept", spec(upstream.port))],
    secrets: { "upstream-ca": { "ca.crt": upstreamCa.certPem }, "api-token": { token: REAL_TOKEN } },
    guard: { podCa: () => keeper?.current() },
  });
  keeper = startPodCaKeeper({ policies: sc.ctx.policies, logger: sc.ctx.logger, bundlePath: bundle });
  await keeper.ready();
  proxyUrl = await sc.listenProxy();
});

afterAll(async () => {
  keeper?.stop();
  await sc?.close();
  await upstream?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const clientEnv = () => ({
  PATH: process.env.PATH ?? "",
  HOME: dir,
  HTTPS_PROXY: proxyUrl,
  https_proxy: proxyUrl,
  NO_PROXY: "",
  no_proxy: "",
});

async function curl(path: string): Promise<{ status: number; body: string }> {
  const { stdout } = await run(
    "curl",
    [
      "-sS",
      "--proxy",
      proxyUrl,
      "--cacert",
      bundle,
      "-H",
      "Authorization: Bearer agent-fake",
      "-w",
      "\n%{http_code}",
      `${origin}${path}`,
    ],
    { env: clientEnv() },
  );
  const nl = stdout.lastIndexOf("\n");
  return { status: Number(stdout.slice(nl + 1)), body: stdout.slice(0, nl) };
}

/** CONNECT through the proxy; resolves with the open socket after the 200. */
async function connectThrough(
  authority: string,
  proxy = proxyUrl,
): Promise<{ status: string; socket: Socket }> {
  const url = new URL(proxy);
  const socket = netConnect({ host: url.hostname, port: Number(url.port) });
  await once(socket, "connect");
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  let buf = "";
  while (!buf.includes("\r\n\r\n")) {
    const [chunk] = (await once(socket, "data")) as [Buffer];
    buf += chunk.toString("latin1");
  }
  socket.pause();
  return { status: buf.split("\r\n")[0] ?? "", socket };
}

describe("HTTPS interception on CONNECT", () => {
  it("curl: an allowed path returns masked data; the upstream sees the sidecar's credential", async () => {
    const before = sc.audit.length;
    const r = await curl("/v1/customers");
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { customer: string; auth: string; path: string };
    expect(body.path).toBe("/v1/customers");
    expect(body.customer).not.toContain("alice@example.com");
    expect(r.body).not.toContain("alice@example.com");
    // The upstream echoed what it received: the sidecar's token, never the agent's.
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${REAL_TOKEN}`);
    const events = sc.audit.slice(before).filter((e) => e.connection === "api");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ decision: { action: "allow", rule: "read" } });
  });

  it("curl: a denied path gets 403 naming the rule, and never reaches the upstream", async () => {
    const seen = upstream.requests.length;
    const r = await curl("/admin/users");
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ error: "denied", rule: "no-admin" });
    expect(upstream.requests.length).toBe(seen);
    expect(sc.audit.at(-1)).toMatchObject({
      connection: "api",
      decision: { action: "deny", rule: "no-admin" },
    });
  });

  it.skipIf(!python)("Python requests (REQUESTS_CA_BUNDLE): masked, credential injected", async () => {
    const script = [
      "import requests, sys",
      "r = requests.get(sys.argv[1], headers={'Authorization': 'Bearer agent-fake'}, timeout=20)",
      "print(r.status_code)",
      "print(r.text)",
    ].join("\n");
    const { stdout } = await run("python3", ["-c", script, `${origin}/v1/py`], {
      env: { ...clientEnv(), REQUESTS_CA_BUNDLE: bundle },
    });
    const [status, text = ""] = stdout.split("\n");
    expect(status).toBe("200");
    expect(text).not.toContain("alice@example.com");
    expect(JSON.parse(text)).toMatchObject({ path: "/v1/py", auth: `Bearer ${REAL_TOKEN}` });
  });

  it.skipIf(!java)(
    "a JVM (JAVA_TOOL_OPTIONS → the truststore.p12 beside the bundle): masked, credential injected",
    async () => {
      const url = new URL(proxyUrl);
      const jvm = (options: string) =>
        run("java", [join(import.meta.dirname, "clients", "HttpsGet.java"), `${origin}/v1/java`], {
          env: {
            ...clientEnv(),
            // The JDK skips the proxy for localhost unless told otherwise (http.nonProxyHosts).
            JAVA_TOOL_OPTIONS: `${options} -Dhttps.proxyHost=${url.hostname} -Dhttps.proxyPort=${url.port} -Dhttp.nonProxyHosts=`,
          },
          timeout: 60_000,
        }).then((r) => r.stdout.split("\n"));
      // What the injector sets (JAVA_TRUST_OPTIONS), with this test's path.
      const [status, text = ""] = await jvm(
        `-Djavax.net.ssl.trustStore=${join(dir, "truststore.p12")} -Djavax.net.ssl.trustStoreType=PKCS12`,
      );
      expect(status, text).toBe("200");
      expect(text).not.toContain("alice@example.com");
      expect(JSON.parse(text)).toMatchObject({ path: "/v1/java", auth: `Bearer ${REAL_TOKEN}` });
      // The JDK's own cacerts lack the pod CA: the same client without the truststore fails closed.
      const [outcome, error = ""] = await jvm("");
      expect(outcome).toBe("error");
      expect(error).toMatch(/SSLHandshakeException|PKIX/);
    },
  );

  it("Node fetch (NODE_USE_ENV_PROXY, NODE_EXTRA_CA_CERTS): masked, credential injected", async () => {
    const script = `const r = await fetch(process.argv[1]); console.log(r.status); console.log(await r.text());`;
    const { stdout } = await run(
      process.execPath,
      ["--input-type=module", "-e", script, `${origin}/v1/node`],
      {
        env: { ...clientEnv(), NODE_USE_ENV_PROXY: "1", NODE_EXTRA_CA_CERTS: bundle },
      },
    );
    const [status, text = ""] = stdout.split("\n");
    expect(status).toBe("200");
    expect(text).not.toContain("alice@example.com");
    expect(JSON.parse(text)).toMatchObject({ path: "/v1/node", auth: `Bearer ${REAL_TOKEN}` });
  });

  it("a client without the bundle fails the handshake (no fallback to a raw tunnel)", async () => {
    const seen = upstream.requests.length;
    const err = await run("curl", ["-sS", "--proxy", proxyUrl, `${origin}/v1/customers`], {
      env: clientEnv(),
    }).then(
      () => undefined,
      (e: { stderr?: string }) => e.stderr ?? "",
    );
    expect(err).toMatch(/certificate|SSL/i);
    expect(upstream.requests.length).toBe(seen);
    // Audited (nothing was forwarded) and counted, with the reason an operator can act on.
    const refused = await until(() => sc.audit.find((e) => e.upstream?.error === "tls_untrusted_by_client"));
    expect(refused).toMatchObject({
      connection: "api",
      operation: { kind: "http-tunnel" },
      decision: {
        action: "deny",
        reason: expect.stringMatching(/trust store lacks the Airlock trust bundle/),
      },
    });
    expect(await sc.metrics.registry.metrics()).toMatch(
      /airlock_tls_intercept_refusals_total\{connection="api",reason="tls_untrusted_by_client"\} 1/,
    );
  });

  it("the served leaf validates against the trust bundle with openssl verify", async () => {
    const { status, socket } = await connectThrough(`localhost:${upstream.port}`);
    expect(status).toMatch(/ 200 /);
    const tls = tlsConnect({ socket, servername: "localhost", ca: await readFile(bundle) });
    await once(tls, "secureConnect");
    expect(tls.authorized).toBe(true);
    expect(tls.alpnProtocol).toBe(false);
    const leaf = tls.getPeerCertificate(true);
    tls.destroy();
    const leafPath = join(dir, "served-leaf.pem");
    await writeFile(
      leafPath,
      `-----BEGIN CERTIFICATE-----\n${leaf.raw.toString("base64")}\n-----END CERTIFICATE-----\n`,
    );
    const { stdout } = await run("openssl", [
      "verify",
      "-CAfile",
      bundle,
      "-purpose",
      "sslserver",
      "-verify_hostname",
      "localhost",
      leafPath,
    ]);
    expect(stdout).toMatch(/OK/);
  });

  it("a client that hangs up right after the handshake (a pin checked late) is audited as such", async () => {
    const seen = upstream.requests.length;
    const { socket } = await connectThrough(`localhost:${upstream.port}`);
    const tls = tlsConnect({ socket, servername: "localhost", ca: await readFile(bundle) });
    await once(tls, "secureConnect");
    tls.end(); // what curl --pinnedpubkey does when the key is not the pinned one
    expect(
      await until(() => sc.audit.find((e) => e.upstream?.error === "closed_before_request")),
    ).toMatchObject({
      connection: "api",
      operation: { kind: "http-tunnel" },
      decision: { action: "deny", reason: expect.stringMatching(/pins the server's key/) },
    });
    expect(upstream.requests.length).toBe(seen);
    // A session that carried a request and then closed is not one.
    const before = sc.audit.filter((e) => e.upstream?.error === "closed_before_request").length;
    expect((await curl("/v1/customers")).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(sc.audit.filter((e) => e.upstream?.error === "closed_before_request")).toHaveLength(before);
  });

  it("an SNI other than the CONNECT authority is refused", async () => {
    const seen = upstream.requests.length;
    const { status, socket } = await connectThrough(`localhost:${upstream.port}`);
    expect(status).toMatch(/ 200 /);
    const tls = tlsConnect({
      socket,
      servername: "evil.example",
      ca: await readFile(bundle),
      rejectUnauthorized: false,
    });
    const [err] = (await once(tls, "error")) as [Error];
    expect(err.message).toMatch(/alert|handshake|socket/i);
    expect(upstream.requests.length).toBe(seen);
    expect(sc.logs()).toMatch(
      /"reason":"sni_mismatch".*"sni":"evil.example"|"sni":"evil.example".*"reason":"sni_mismatch"/,
    );
    expect(await until(() => sc.audit.find((e) => e.upstream?.error === "sni_mismatch"))).toMatchObject({
      decision: { action: "deny", reason: expect.stringContaining("SNI evil.example") },
    });
  });

  it("unknown hosts stay refused and the CA mints no leaf outside its constraints", async () => {
    const { status, socket } = await connectThrough("evil.example:443");
    socket.destroy();
    expect(status).toMatch(/ 403 /);
    const ca = keeper.current();
    expect(ca?.covers("localhost")).toBe(true);
    await expect(ca?.leaf("evil.example")).rejects.toBeInstanceOf(NameOutsideConstraintsError);
    await expect(ca?.leaf("a.localhost")).rejects.toBeInstanceOf(NameOutsideConstraintsError);
  });

  it("re-mints the CA (new key, new constraints, new bundle) when the HTTPS hosts change", async () => {
    const before = keeper.current();
    const bundleBefore = await readFile(bundle, "utf8");
    const next = spec(upstream.port);
    next.connections?.push({ name: "other", protocol: "http", target: { host: "other.example", port: 443 } });
    sc.setPolicies([policy("intercept", next)]);
    await keeper.ready();
    const after = keeper.current();
    expect(after).not.toBe(before);
    expect(after?.covers("other.example")).toBe(true);
    expect(before?.covers("other.example")).toBe(false);
    const bundleAfter = await readFile(bundle, "utf8");
    expect(bundleAfter).not.toBe(bundleBefore);
    expect(bundleAfter.startsWith(after?.certPem.trim() ?? "-")).toBe(true);
    // The same hosts again: the CA in force stays (agents keep trusting it).
    sc.setPolicies([policy("intercept", next)]);
    await keeper.ready();
    expect(keeper.current()).toBe(after);
    // Interception keeps working with the new CA and the rewritten bundle.
    const r = await curl("/v1/after");
    expect(r.status).toBe(200);
    expect(r.body).not.toContain("alice@example.com");
  });

  it("captured TLS (transparent listener) with the connection's SNI is intercepted the same way", async () => {
    const conn = sc.ctx.policies.current().connections.get("api");
    if (!conn) throw new Error("no connection");
    // A stand-in for the transparent listener, handing sockets to the guard as it does: either
    // with the ClientHello it peeked (a shared address: the SNI chose), or mapped by address alone
    // before a byte was read (the guard then tells TLS from HTTP itself).
    let peek = true;
    const server = createNetServer((socket) => {
      if (!peek) return sc.guard.accept(socket, conn, { via: "transparent" });
      socket.once("data", (head: Buffer) => {
        socket.pause();
        sc.guard.accept(socket, conn, { via: "transparent", head });
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const get = async (servername: string) => {
      const tls = tlsConnect({ host: "127.0.0.1", port, servername, ca: await readFile(bundle) });
      let out = "";
      tls.on("data", (c: Buffer) => {
        out += c.toString("utf8");
      });
      await once(tls, "secureConnect");
      tls.write(`GET /v1/captured HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
      await once(tls, "close");
      return out;
    };
    try {
      const res = await get("localhost");
      expect(res).toMatch(/^HTTP\/1\.1 200/);
      expect(res).not.toContain("alice@example.com");
      expect(upstream.requests.at(-1)).toMatchObject({ url: "/v1/captured" });
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${REAL_TOKEN}`);
      // An SNI that is not a name of the connection is not intercepted: no tunnel rule, so cut.
      await expect(get("evil.example")).rejects.toThrow();
      peek = false;
      const unpeeked = await get("localhost");
      expect(unpeeked).toMatch(/^HTTP\/1\.1 200/);
      expect(unpeeked).not.toContain("alice@example.com");
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${REAL_TOKEN}`);
      await expect(get("evil.example")).rejects.toThrow();
    } finally {
      server.close();
    }
  });
});

/** The CA certificates at the head of a trust bundle (the pod CAs come before the system roots). */
function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
}

describe("pod CA rotation (6 s lifetime)", () => {
  const LIFETIME_MS = 6000;
  let rsc: Sidecar;
  let rk: PodCaKeeper;
  let rproxy: string;
  let rbundle: string;

  beforeAll(async () => {
    rbundle = join(dir, "rotating-bundle.pem");
    rsc = await startSidecar({
      policies: [policy("intercept", spec(upstream.port))],
      secrets: {
        "upstream-ca": { "ca.crt": upstreamCaPem },
        "api-token": { token: REAL_TOKEN },
      },
      guard: { podCa: () => rk?.current() },
    });
    rk = startPodCaKeeper({
      policies: rsc.ctx.policies,
      logger: rsc.ctx.logger,
      bundlePath: rbundle,
      lifetimeMs: LIFETIME_MS,
      // 80 % (minus up to 5 % jitter): the second rotation (~9 s) comes well after the first CA ends (≤ 6 s).
      rotateFraction: 0.8,
      metrics: rsc.ctx.metrics,
    });
    await rk.ready();
    rproxy = await rsc.listenProxy();
  });

  afterAll(async () => {
    rk?.stop();
    await rsc?.close();
  });

  /** A client holding `ca` in memory (as a process that read the bundle at start): GET through CONNECT. */
  async function get(ca: Buffer | string, path: string) {
    const { status, socket } = await connectThrough(`localhost:${upstream.port}`, rproxy);
    expect(status).toMatch(/ 200 /);
    const tls = tlsConnect({ socket, servername: "localhost", ca });
    const at = Date.now();
    await once(tls, "secureConnect");
    const peer = tls.getPeerCertificate();
    const leaf = new X509Certificate(peer.raw);
    let out = "";
    tls.on("data", (c: Buffer) => {
      out += c.toString("utf8");
    });
    tls.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    await once(tls, "close");
    return { authorized: tls.authorized, leaf, at, response: out };
  }
  const issuedBy = (leaf: X509Certificate, caPem: string | undefined) =>
    caPem !== undefined && leaf.verify(new X509Certificate(caPem).publicKey);

  it("publishes the successor ahead, rotates before expiry, keeps the old CA until its leaves end", async () => {
    const ca1 = rk.current();
    const ca2 = rk.next();
    if (!ca1 || !ca2) throw new Error("no pod CA");
    // The bundle carries the CA in force and its successor before the successor signs anything.
    const early = await readFile(rbundle, "utf8");
    expect(pemBlocks(early).slice(0, 2)).toEqual([ca1.certPem.trim(), ca2.certPem.trim()]);
    expect(ca1.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(LIFETIME_MS);

    const first = await get(early, "/v1/before");
    expect(first.authorized).toBe(true);
    expect(first.response).toMatch(/^HTTP\/1\.1 200/);
    expect(first.response).not.toContain("alice@example.com");
    expect(issuedBy(first.leaf, ca1.certPem)).toBe(true);

    // Connect on and on with the bundle loaded before the rotation, until the old CA is gone.
    const seen: { issuer: "ca1" | "ca2"; serial: string }[] = [];
    let removedAt: number | undefined;
    const deadline = ca1.notAfter.getTime() + 3000;
    while (Date.now() < deadline && removedAt === undefined) {
      const r = await get(early, "/v1/during");
      expect(r.authorized).toBe(true);
      expect(r.response).toMatch(/^HTTP\/1\.1 200/);
      // Never an expired (or not yet valid) leaf.
      expect(Date.parse(r.leaf.validTo)).toBeGreaterThan(r.at);
      expect(Date.parse(r.leaf.validFrom)).toBeLessThanOrEqual(r.at);
      const issuer = issuedBy(r.leaf, ca1.certPem)
        ? "ca1"
        : issuedBy(r.leaf, ca2.certPem)
          ? "ca2"
          : undefined;
      expect(issuer).toBeDefined();
      if (issuer) seen.push({ issuer, serial: r.leaf.serialNumber });
      if (rk.current() === ca2) {
        // After the rotation: the new CA and a new successor lead; the old CA is still trusted until its notAfter.
        const bundleNow = pemBlocks(await readFile(rbundle, "utf8"));
        if (!bundleNow.includes(ca1.certPem.trim())) removedAt = Date.now();
        else {
          expect(bundleNow[0]).toBe(ca2.certPem.trim());
          expect(bundleNow.indexOf(ca1.certPem.trim())).toBe(2);
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    // Rotated ahead of expiry: leaves from both generations were served to the same early client,
    // the old CA first and never again once the new one signed.
    const firstNew = seen.findIndex((s) => s.issuer === "ca2");
    expect(firstNew).toBeGreaterThan(0);
    expect(seen.slice(firstNew).every((s) => s.issuer === "ca2")).toBe(true);
    expect(removedAt).toBeDefined();
    expect(removedAt).toBeGreaterThanOrEqual(ca1.notAfter.getTime());
    expect(rk.trusted()).not.toContain(ca1.certPem);

    // A client reading the bundle now (curl) gets a leaf from the CA in force.
    const { stdout } = await run(
      "curl",
      ["-sS", "--proxy", rproxy, "--cacert", rbundle, "-w", "\n%{http_code}", `${origin}/v1/after`],
      { env: { ...clientEnv(), HTTPS_PROXY: rproxy, https_proxy: rproxy } },
    );
    expect(stdout.endsWith("\n200")).toBe(true);

    const metrics = await rsc.ctx.metrics.registry.metrics();
    expect(metrics).toMatch(/airlock_pod_ca_rotations_total\{reason="schedule",result="ok"\} [1-9]/);
    expect(metrics).toMatch(/airlock_pod_ca_expiry_timestamp_seconds [1-9]/);
    // The pair in force (plus the retired one, should a second rotation already have come).
    expect(metrics).toMatch(/airlock_trust_bundle_pod_cas [23]/);
    const logs = rsc.logs();
    expect(logs).toContain("pod CA rotated");
    expect(logs).toContain("expired pod CA removed from the trust bundle");
    expect(logs).not.toContain("PRIVATE KEY");
  }, 30_000);
});

describe("pod CA keeper without HTTPS hosts", () => {
  it("still writes the bundle at start (system roots only) and mints no CA", async () => {
    const plain = await startSidecar({
      policies: [
        policy("plain", {
          connections: [
            {
              name: "plain",
              protocol: "http",
              target: { host: "localhost", port: 1 },
              tls: { mode: "disable" },
            },
          ],
          rules: [
            { name: "read", action: "allow", connections: ["plain"], match: { http: { methods: ["GET"] } } },
          ],
        }),
      ],
    });
    const path = join(dir, "roots-only.pem");
    const k = startPodCaKeeper({
      policies: plain.ctx.policies,
      logger: plain.ctx.logger,
      bundlePath: path,
      metrics: plain.ctx.metrics,
    });
    try {
      await k.ready();
      expect(k.current()).toBeUndefined();
      const text = await readFile(path, "utf8");
      expect(pemBlocks(text).length).toBeGreaterThan(50);
      expect(pemBlocks(text).some((pem) => new X509Certificate(pem).subject.includes("Airlock pod CA"))).toBe(
        false,
      );
      expect(await plain.ctx.metrics.registry.metrics()).toMatch(/airlock_trust_bundle_pod_cas 0/);
    } finally {
      k.stop();
      await plain.close();
    }
  });
});
