// Fault: the audit sink — the sidecar's stdout — stops taking lines: the log collector's pipe
// reader exits (EPIPE), or stdout is a file on a disk that fills up (ENOSPC). docs/audit.md: the
// operation whose line cannot be written is not answered (its agent connection is closed), and the
// sidecar exits non-zero saying why, rather than proxy without an audit trail. The real `airlock
// sidecar` process, a real HTTP upstream and a real PostgreSQL.
import { spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type PostgresServer } from "../harness/postgres.ts";
import type { Upstream } from "../http/harness.ts";
import { type Standalone, standalone } from "./setup.ts";
import { ofConnection, type SidecarProcess, spawnSidecar, type Workdir } from "./sidecar-process.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let fx: Standalone;
let server: PostgresServer;
let upstream: Upstream;
let w: Workdir;

beforeAll(async () => {
  fx = await standalone("audit-sink", { role: "sink_agent" });
  ({ server, upstream, w } = fx);
});

afterAll(() => fx?.close());

/** What the agent got for one request: a status, or the error that ended it. */
const get = (port: number, path: string) =>
  fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5_000) }).then(
    async (r) => ({ status: r.status, body: await r.text() }),
    (e: Error) => ({ error: String(e.cause ?? e) }),
  );

const exitWithin = (sc: SidecarProcess, ms: number) =>
  Promise.race([sc.exited, sleep(ms).then(() => "still running" as const)]);

describe("stdout closed: the collector's pipe reader exits", () => {
  let sc: SidecarProcess;
  afterAll(() => sc?.kill("SIGKILL"));

  it("the operation whose line cannot be written is not answered; the sidecar exits 1 saying why", async () => {
    const [dbPort, apiPort] = [await freePort(), await freePort()];
    sc = await spawnSidecar(w, { policies: [await fx.policyFile("sink-pipe", dbPort, apiPort)] });
    expect(await get(apiPort, "/before")).toMatchObject({ status: 200 });
    const db = new pg.Client({ host: "127.0.0.1", port: dbPort, user: "agent", database: server.database });
    const dbErrors: Error[] = [];
    db.on("error", (e) => dbErrors.push(e));
    await db.connect();
    expect((await db.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await expect.poll(() => sc.audit().length).toBe(2);

    sc.child.stdout?.destroy(); // the reader's end of the pipe is gone
    const t0 = Date.now();
    const after = await get(apiPort, "/after");
    // Forwarded (the upstream answered), but its answer is never released without its line.
    expect(after).not.toHaveProperty("status");
    expect(upstream.requests.map((r) => r.url)).toContain("/after");
    const exit = await exitWithin(sc, 5_000);
    expect(exit).toEqual({ code: 1, signal: null });
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(sc.stderr()).toMatch(
      /cannot write log and audit lines to fd 1 \(EPIPE\); stopping rather than proxying without an audit trail/,
    );
    // The PostgreSQL session ends with the process: an error, not a hang.
    const q = await db.query("SELECT 2").then(
      () => "answered",
      (e: Error) => e.message,
    );
    expect(q).not.toBe("answered");
    // What the collector got before it went: the two operations answered, nothing else.
    expect(ofConnection(sc.audit(), "api").map((e) => e.operation)).toEqual([
      { kind: "http", method: "GET", path: "/before", websocket: false },
    ]);
    expect(ofConnection(sc.audit(), "db")).toHaveLength(1);
  });
});

describe("stdout on a full disk (ENOSPC)", () => {
  it("/dev/full from the start: the sidecar exits 1 at once and never listens", async () => {
    const [dbPort, apiPort] = [await freePort(), await freePort()];
    const full = openSync("/dev/full", "w");
    try {
      const sc = await spawnSidecar(w, {
        policies: [await fx.policyFile("sink-full", dbPort, apiPort)],
        stdout: full,
        waitReady: "none",
      });
      const exit = await exitWithin(sc, 20_000);
      expect(exit).toEqual({ code: 1, signal: null });
      expect(sc.stderr()).toMatch(/cannot write log and audit lines to fd 1 \(ENOSPC\)/);
      expect(await get(apiPort, "/x")).toMatchObject({ error: expect.stringMatching(/ECONNREFUSED/) });
    } finally {
      closeSync(full);
    }
  });

  // A tmpfs of its own in a private mount namespace holds the audit file; the test fills it up
  // mid-run through /proc/<pid>/root (the namespace's view).
  const unshare = spawnSync("unshare", ["-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], {
    encoding: "utf8",
  });
  const canMount = unshare.status === 0;
  if (!canMount)
    console.warn(
      `skipping the mid-run disk-full case: cannot mount a tmpfs in a private mount namespace (${(unshare.stderr || unshare.error?.message || "").trim()})`,
    );

  it.runIf(canMount)(
    "the disk fills mid-run: the next operation is not answered; exit 1 naming ENOSPC",
    async () => {
      const [dbPort, apiPort] = [await freePort(), await freePort()];
      const dir = join(w.dir, "logs");
      const sc = await spawnSidecar(w, {
        policies: [await fx.policyFile("sink-tmpfs", dbPort, apiPort)],
        wrap: [
          "unshare",
          "-m",
          "sh",
          "-c",
          `mkdir -p ${dir} && mount -t tmpfs -o size=1m tmpfs ${dir} && exec "$@" >${dir}/audit.log`,
          "sh",
        ],
      });
      try {
        expect(await get(apiPort, "/before")).toMatchObject({ status: 200 });
        // unshare and sh exec: the child is the sidecar itself, and its root shows its mounts.
        const view = `/proc/${sc.child.pid}/root${dir}`;
        await expect
          .poll(() => readFileSync(`${view}/audit.log`, "utf8"))
          .toMatch(/"audit":true.*"path":"\/before"/);
        const filler = openSync(`${view}/filler`, "w");
        const block = Buffer.alloc(64 * 1024, 0x61);
        let filled = 0;
        try {
          for (;;) filled += writeSync(filler, block);
        } catch (e) {
          expect((e as NodeJS.ErrnoException).code).toBe("ENOSPC");
        } finally {
          closeSync(filler);
        }
        expect(filled).toBeGreaterThan(0);

        // The file's last page may still take a line or two: requests until one is refused, each
        // answered one with its line already in the file when the answer arrives.
        let answered = 0;
        let refused: { error?: string } | undefined;
        for (let i = 0; i < 50 && !refused; i++) {
          const r = await get(apiPort, `/after-full-${i}`);
          if ("status" in r) {
            expect(r.status).toBe(200);
            expect(readFileSync(`${view}/audit.log`, "utf8")).toContain(`"path":"/after-full-${i}"`);
            answered++;
          } else refused = r;
        }
        expect(refused).toBeDefined();
        expect(answered).toBeLessThan(50);
        expect(await exitWithin(sc, 5_000)).toEqual({ code: 1, signal: null });
        expect(sc.stderr()).toMatch(
          /cannot write log and audit lines to fd 1 \(ENOSPC\); stopping rather than proxying without an audit trail/,
        );
      } finally {
        sc.kill("SIGKILL");
      }
    },
  );
});
