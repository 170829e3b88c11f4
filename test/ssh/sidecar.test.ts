// The SSH guard inside the composed sidecar (app.ts): a standalone sidecar from a policy file and
// a secrets directory serves the SSH connection on its listen port, signs certificates the real
// sshd accepts, records to the policy's recording directory, and `airlock sessions` replays it.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { stringify } from "yaml";
import { type Sidecar, startSidecar } from "../../sidecar/src/app.ts";
import { createLogger } from "../../sidecar/src/telemetry/logger.ts";
import { freePort } from "../harness/postgres.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import { agentClient, exec, sshPolicy, waitFor } from "./support.ts";

let sshd: SshdServer;
let work: string;
let sidecar: Sidecar;
let logs = "";
let port: number;

beforeAll(async () => {
  sshd = await startSshd();
  work = await mkdtemp(join(tmpdir(), "airlock-ssh-sidecar-"));
  port = await freePort();
  const policy = sshPolicy(sshd, {
    rules: [{ name: "basic", action: "allow", match: { ssh: { commands: ["echo *"] } } }],
    masking: [{ name: "keys", detectors: ["awsAccessKey"], strategy: "redact" }],
    audit: { destination: "file", directory: join(work, "recordings") },
  });
  policy.spec.connections[0] = { ...policy.spec.connections[0]!, listen: { port } };
  await writeFile(join(work, "policy.yaml"), stringify(policy));
  for (const [secret, key, value] of [
    ["ssh-cred", "ca", sshd.caPrivateKey],
    ["ssh-known-hosts", "known_hosts", `${sshd.knownHosts}\n`],
  ] as const) {
    await mkdir(join(work, "secrets", secret), { recursive: true });
    await writeFile(join(work, "secrets", secret, key), value);
  }
  sidecar = await startSidecar({
    policyFiles: [join(work, "policy.yaml")],
    secretsDir: join(work, "secrets"),
    serviceAccount: "agents/agent",
    hashKeyFile: join(work, "hash.key"),
    adminPort: 0,
    proxyPort: 0,
    logger: createLogger({
      destination: new Writable({
        write(chunk: Buffer, _e, done) {
          logs += chunk.toString();
          done();
        },
      }),
    }),
  });
});

afterAll(async () => {
  await sidecar?.close();
  await sshd?.stop();
  await rm(work, { recursive: true, force: true });
});

it("serves the policy's SSH connection on its listen port, masks, records, and replays", async () => {
  expect(sidecar.listeners.ports().get("box")).toBe(port);
  const client = await agentClient(port);
  const r = await exec(client, "echo AKIAIOSFODNN7EXAMPLE");
  const denied = await exec(client, "echo hi; id");
  client.end();
  expect(r.code).toBe(0);
  expect(r.stdout).not.toContain("AKIAIOSFODNN7EXAMPLE");
  expect(denied.code).toBe(126);

  const audit = logs
    .split("\n")
    .filter((l) => l.includes('"audit":true'))
    .map((l) => JSON.parse(l));
  expect(audit.map((a) => [a.protocol, a.decision.action])).toEqual([
    ["ssh", "allow"],
    ["ssh", "deny"],
  ]);
  const session = audit[0].session as string;
  expect(sshd.logs()).toContain(`session=${session}`);

  const dir = join(work, "recordings");
  const replay = await waitFor(
    () =>
      new Promise<string | undefined>((resolve) =>
        execFile(
          process.execPath,
          [
            join(import.meta.dirname, "../../bin/airlock.js"),
            "sessions",
            "replay",
            session,
            "--dir",
            dir,
            "--speed",
            "0",
            "--quiet",
          ],
          (err, stdout) => resolve(err || !stdout.includes("airlock: denied") ? undefined : stdout),
        ),
      ),
    10_000,
    "the recording",
  );
  expect(replay).not.toContain("AKIAIOSFODNN7EXAMPLE");
  expect(replay).toContain('airlock: denied: no rule allows this operation (default deny) (for "id")\n');
});
