// Footprint rows of `npm run bench`: the sidecar process idle, as the image runs it
// (sidecar-process.ts), for an HTTP-only policy and for HTTP + PostgreSQL with masking (the
// PostgreSQL guard and the SQL parser load with such a policy); and the HTTP-only one without
// the image's settings, to show what they save. RSS and its private part (the node binary's
// pages are shared by every sidecar on a node), V8 heap in use, after 3 s idle past /readyz.
// Bare Node idle is the floor every row stands on.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../harness/ports.ts";
import { processMemory, type SidecarLaunch, sidecarLaunch, spawnSidecar } from "./sidecar-process.ts";

export interface FootprintRow {
  name: string;
  launch: string;
  rssMb: number;
  anonMb: number;
  heapUsedMb: number;
}

function policy(p: { http: number; pg?: number; upstream: number }): string {
  return `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: footprint, namespace: default }
spec:
  connections:
    - name: api
      protocol: http
      target: { host: 127.0.0.1, port: ${p.upstream} }
      tls: { mode: disable }
      credentials: { secretRef: { name: api }, http: { key: token } }
      listen: { port: ${p.http} }${
        p.pg
          ? `
    - name: db
      protocol: postgres
      target: { host: 127.0.0.1, port: ${p.upstream} }
      listen: { port: ${p.pg} }
      tls: { mode: disable }
      database: app
      credentials: { secretRef: { name: db } }`
          : ""
      }
  rules:
    - { name: read-api, action: allow, connections: [api], match: { http: { methods: [GET], paths: ["/customers/**"] } } }
  masking:
    - { name: pii, connections: [api], detectors: [email, phone, creditCard], strategy: partial }${
      p.pg
        ? "\n    - { name: emails, connections: [db], columns: [email], detectors: [email], strategy: partial }"
        : ""
    }
`;
}

async function idleSidecar(
  name: string,
  withPostgres: boolean,
  launch: SidecarLaunch,
): Promise<FootprintRow> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-footprint-"));
  let sidecar: ChildProcess | undefined;
  try {
    for (const [s, k, v] of [
      ["api", "token", "t"],
      ["db", "username", "u"],
      ["db", "password", "p"],
    ] as const) {
      mkdirSync(join(dir, "secrets", s), { recursive: true });
      writeFileSync(join(dir, "secrets", s, k), v);
    }
    const [http, pg, upstream, admin] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    writeFileSync(join(dir, "policy.yaml"), policy({ http, upstream, ...(withPostgres ? { pg } : {}) }));
    sidecar = spawnSidecar(dir, { adminPort: admin, launch });
    for (let i = 0; ; i++) {
      const ready = await fetch(`http://127.0.0.1:${admin}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      if (i > 200 || sidecar.exitCode !== null)
        throw new Error(`footprint: the ${name} sidecar did not become ready`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 3000));
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    const heap = /^airlock_process_nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics);
    return {
      name,
      launch: launch.label,
      ...processMemory(sidecar.pid as number),
      heapUsedMb: heap ? Number(heap[1]) / 1024 / 1024 : Number.NaN,
    };
  } finally {
    sidecar?.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bare Node idle. */
async function bareNode(): Promise<{ rssMb: number; anonMb: number }> {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 10000)"], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 1500));
  const memory = processMemory(child.pid as number);
  child.kill();
  return memory;
}

export async function benchFootprint(
  log: (s: string) => void,
): Promise<{ bareNode: { rssMb: number; anonMb: number }; rows: FootprintRow[] }> {
  const image = await sidecarLaunch();
  const checkout: SidecarLaunch = {
    execArgv: [],
    env: { NODE_DISABLE_COMPILE_CACHE: "1", NODE_OPTIONS: "" },
    label: "without the image's settings (Node strips the types, default heap)",
  };
  const rows: FootprintRow[] = [];
  for (const [name, pg, launch] of [
    ["HTTP only", false, image],
    ["HTTP + PostgreSQL", true, image],
    ["HTTP only", false, checkout],
  ] as const) {
    log(`  footprint: ${name}, ${launch.label}`);
    rows.push(await idleSidecar(name, pg, launch));
  }
  return { bareNode: await bareNode(), rows };
}
