// The HTTPS server with real TLS on loopback: certificates from the bootstrap generator, files
// rewritten under a running server (hot reload), the admission endpoint, health and metrics.

import { X509Certificate } from "node:crypto";
import { renameSync } from "node:fs";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateCertificates, renewalReason } from "./bootstrap.ts";
import { defaultConfig } from "./config.ts";
import { staticPolicySource } from "./policies.ts";
import { type InjectorServer, startInjectorServer } from "./server.ts";
import { loadTlsFiles, type TlsFileSource } from "./tls.ts";

interface Reply {
  status: number;
  body: string;
  peerCert: X509Certificate | undefined;
}

function call(port: number, ca: string, path: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: body === undefined ? "GET" : "POST",
        ca,
        agent: false,
        headers: body === undefined ? {} : { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        const raw = (
          res.socket as unknown as { getPeerX509Certificate?: () => X509Certificate | undefined }
        ).getPeerX509Certificate?.();
        res.setEncoding("utf8").on("data", (d: string) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, peerCert: raw }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

let dir: string;
let server: InjectorServer;
let files: TlsFileSource;
let ca: { caCert: string; caKey: string };
let ready = false;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "airlock-injector-tls-"));
  const bundle = await generateCertificates({ hosts: ["127.0.0.1", "localhost"] });
  ca = bundle;
  await writeFile(join(dir, "tls.crt"), bundle.cert);
  await writeFile(join(dir, "tls.key"), bundle.key);
  files = await loadTlsFiles({
    certFile: join(dir, "tls.crt"),
    keyFile: join(dir, "tls.key"),
    pollMs: 100,
    onChange: (m) => server.setTls(m),
  });
  server = await startInjectorServer({
    config: defaultConfig(),
    policies: staticPolicySource([]),
    tls: files.current(),
    host: "127.0.0.1",
    port: 0,
    ready: () => ready,
  });
});

afterAll(async () => {
  files?.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("certificates", () => {
  it("issues a serving certificate for DNS names and IPs, signed by the CA", async () => {
    const b = await generateCertificates({ hosts: ["inj.airlock-system.svc", "10.1.2.3"] });
    const leaf = new X509Certificate(b.cert);
    const caCert = new X509Certificate(b.caCert);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(caCert.ca).toBe(true);
    expect(leaf.subjectAltName).toContain("DNS:inj.airlock-system.svc");
    expect(leaf.subjectAltName).toContain("IP Address:10.1.2.3");
    expect(renewalReason(b, ["inj.airlock-system.svc", "10.1.2.3"])).toBeUndefined();
    expect(renewalReason(b, ["other.svc"])).toContain("lacks other.svc");
    const short = await generateCertificates({
      hosts: ["a"],
      validityDays: 10,
      ca: { cert: b.caCert, key: b.caKey },
    });
    expect(renewalReason(short, ["a"])).toBe("certificate expires soon");
    // Renewal with the same CA keeps the caBundle valid.
    expect(new X509Certificate(short.cert).verify(caCert.publicKey)).toBe(true);
  });
});

describe("webhook server", () => {
  it("serves /healthz always and /readyz only when ready", async () => {
    expect((await call(server.port, ca.caCert, "/healthz")).status).toBe(200);
    expect((await call(server.port, ca.caCert, "/readyz")).status).toBe(503);
    ready = true;
    expect((await call(server.port, ca.caCert, "/readyz")).status).toBe(200);
  });

  it("refuses admissions until ready, then answers AdmissionReviews on POST /inject, 400 on garbage", async () => {
    const review = {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid: "abc",
        kind: { group: "", version: "v1", kind: "Pod" },
        resource: { group: "", version: "v1", resource: "pods" },
        operation: "CREATE",
        namespace: "agents",
        object: { metadata: { name: "p" }, spec: { containers: [{ name: "a", image: "x" }] } },
      },
    };
    ready = false;
    const early = JSON.parse(
      (await call(server.port, ca.caCert, "/inject", JSON.stringify(review))).body,
    ) as {
      response: { allowed: boolean; status: { message: string } };
    };
    expect(early.response.allowed).toBe(false);
    expect(early.response.status.message).toContain("policy cache not synced");
    ready = true;
    const r = await call(server.port, ca.caCert, "/inject", JSON.stringify(review));
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { response: { uid: string; allowed: boolean; patchType: string } };
    expect(body.response).toMatchObject({ uid: "abc", allowed: true, patchType: "JSONPatch" });
    expect((await call(server.port, ca.caCert, "/inject", "{not json")).status).toBe(400);
    const metrics = await (await call(server.port, ca.caCert, "/metrics")).body;
    expect(metrics).toContain('airlock_injector_admissions_total{result="injected"} 1');
    expect(metrics).toContain('airlock_injector_admissions_total{result="error"} 2');
    expect(metrics).toMatch(/airlock_injector_admission_duration_seconds_count\{result="injected"\} 1/);
  });

  it("picks up a rotated certificate without restarting, and ignores a broken pair", async () => {
    const before = (await call(server.port, ca.caCert, "/healthz")).peerCert;
    const next = await generateCertificates({ hosts: ["127.0.0.1"], ca: { cert: ca.caCert, key: ca.caKey } });
    // The way a Secret volume updates: new files, then an atomic rename.
    await writeFile(join(dir, "tls.crt.new"), next.cert);
    await writeFile(join(dir, "tls.key.new"), next.key);
    await rename(join(dir, "tls.key.new"), join(dir, "tls.key"));
    await rename(join(dir, "tls.crt.new"), join(dir, "tls.crt"));
    await expect
      .poll(async () => (await call(server.port, ca.caCert, "/healthz")).peerCert?.serialNumber, {
        timeout: 5000,
      })
      .not.toBe(before?.serialNumber);
    const after = (await call(server.port, ca.caCert, "/healthz")).peerCert;
    expect(after?.serialNumber).toBe(new X509Certificate(next.cert).serialNumber);

    // A key that does not match: the server keeps serving the last good pair.
    const other = await generateCertificates({ hosts: ["127.0.0.1"] });
    await writeFile(join(dir, "tls.key"), other.key);
    expect(await files.reload()).toBe(false);
    expect((await call(server.port, ca.caCert, "/healthz")).peerCert?.serialNumber).toBe(after?.serialNumber);
  });
});

describe("certificate files changed while a reload reads them", () => {
  it("reads them again: a change signalled during a read is never lost until the next poll", async () => {
    const d = await mkdtemp(join(tmpdir(), "airlock-injector-tls-race-"));
    try {
      const first = await generateCertificates({ hosts: ["127.0.0.1"] });
      await writeFile(join(d, "tls.crt"), first.cert);
      await writeFile(join(d, "tls.key"), first.key);
      const seen: string[] = [];
      const src = await loadTlsFiles({
        certFile: join(d, "tls.crt"),
        keyFile: join(d, "tls.key"),
        pollMs: 0,
        onChange: (m) => seen.push(m.cert),
      });
      try {
        for (let round = 0; round < 50; round++) {
          const next = await generateCertificates({ hosts: ["127.0.0.1"] });
          await writeFile(join(d, "tls.key.new"), next.key);
          await writeFile(join(d, "tls.crt.new"), next.cert);
          const inFlight = src.reload(); // its reads run on the thread pool, racing the renames
          renameSync(join(d, "tls.key.new"), join(d, "tls.key"));
          renameSync(join(d, "tls.crt.new"), join(d, "tls.crt"));
          // The change is signalled while that read may still be under way (as a watch event is).
          const after = src.reload();
          await Promise.all([inFlight, after]);
          expect(src.current().cert, `round ${round}`).toBe(next.cert);
        }
        expect(seen.length).toBeGreaterThan(0);
      } finally {
        src.close();
      }
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
