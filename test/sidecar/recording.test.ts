// HTTP sessions are recorded as ordered JSON lines where the policy says (here: files), and the
// replay CLI prints them as a timeline.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { Agent, createServer, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { expect, it } from "vitest";
import { startSidecar } from "../../sidecar/src/app.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));

it("records an HTTP session's operations in order to the policy's directory and replays them", async () => {
  const dir = mkdtempSync(join(tmpdir(), "airlock-recording-"));
  const recordings = join(dir, "recordings");
  mkdirSync(join(dir, "secrets", "api"), { recursive: true });
  writeFileSync(join(dir, "secrets", "api", "token"), "t0ken");
  const upstream = createServer((_req, res) =>
    res.writeHead(200, { "content-type": "application/json" }).end('{"email":"ada@example.com"}'),
  );
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const upPort = (upstream.address() as { port: number }).port;
  writeFileSync(
    join(dir, "policy.yaml"),
    `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: rec, namespace: default }
spec:
  connections:
    - { name: api, protocol: http, target: { host: 127.0.0.1, port: ${upPort} }, tls: { mode: disable }, credentials: { secretRef: { name: api } } }
  rules:
    - { name: no-admin, action: deny, match: { http: { paths: ["/admin/**"] } } }
    - { name: read, action: allow, match: { http: { methods: [GET] } } }
  masking:
    - { name: pii, detectors: [email], strategy: redact }
  audit: { recordSessions: true, destination: file, directory: ${recordings} }
`,
  );
  const sidecar = await startSidecar({
    policyFiles: [join(dir, "policy.yaml")],
    secretsDir: join(dir, "secrets"),
    hashKeyFile: join(dir, "hash.key"),
    adminPort: 0,
    proxyPort: 0,
    logger: pino({ level: "silent" }),
  });
  try {
    // Through the explicit proxy on one keep-alive connection: one agent session.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        request(
          { host: "127.0.0.1", port: sidecar.proxyPort, path: `http://127.0.0.1:${upPort}${path}`, agent },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        )
          .on("error", reject)
          .end();
      });
    expect(await get("/customers/1")).toBe(200);
    expect(await get("/admin/keys")).toBe(403);
    agent.destroy();
  } finally {
    await sidecar.close();
    await new Promise<void>((r) => upstream.close(() => r()));
  }
  const files = readdirSync(recordings).filter((f) => f.endsWith(".jsonl"));
  expect(files).toHaveLength(1);
  const lines = readFileSync(join(recordings, files[0] as string), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines[0]).toMatchObject({ format: "jsonl", protocol: "http", connection: "api" });
  expect(lines.slice(1).map((l) => [l.operation.method, l.operation.path, l.decision.action])).toEqual([
    ["GET", "/customers/1", "allow"],
    ["GET", "/admin/keys", "deny"],
  ]);
  expect(JSON.stringify(lines)).not.toContain("ada@example.com");
  const session = (files[0] as string).replace(/\.jsonl$/, "");
  const replay = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ["bin/airlock.js", "sessions", "replay", session, "--dir", recordings],
      { cwd: root },
      (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)),
    ),
  );
  expect(replay).toMatch(/GET \/customers\/1/);
  expect(replay).toMatch(/GET \/admin\/keys/);
  expect(replay).toMatch(/no-admin/);
});
