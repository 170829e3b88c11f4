// A real PostgreSQL (Debian's server binaries) started on loopback for a test file or a bench run.
//
//   const pg = await startPostgres();            // or startPostgres({ tls: true })
//   await pg.sql("CREATE TABLE t (id int)");     // as the harness superuser, over the unix socket
//   pg.users.scram  -> { user, password }        // one user per upstream auth method
//   await pg.stop();
//
// - initdb refuses to run as root, so the server runs as a non-root system user: `postgres` when
//   the Debian package created it, otherwise `airlock-test`, which the harness creates with
//   `useradd --system` (CI runs as root; on a developer machine running as a normal user the
//   server simply runs as that user).
// - Data directory, unix socket and logs live in a fresh temp dir owned by that user; the server
//   listens on 127.0.0.1 on a free port; fsync is off (test data is disposable).
// - pg_hba: the superuser `airlock_admin` is trusted on the unix socket only (harness setup);
//   over TCP, `airlock_scram` authenticates with SCRAM-SHA-256, `airlock_md5` with MD5 (its
//   password is stored as an MD5 hash) and `airlock_password` with cleartext `password`; any
//   other role a test creates uses SCRAM-SHA-256.
// - `tls: true` turns on ssl with a throwaway CA and a server certificate for 127.0.0.1 and
//   `localhost`; `caPem` is the CA to verify it with.
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports.ts";

const execFileP = promisify(execFile);

export const PG_BIN_DIR = process.env.AIRLOCK_PG_BIN_DIR ?? "/usr/lib/postgresql/15/bin";
export const SUPERUSER = "airlock_admin";
const SYSTEM_USER_CANDIDATES = ["postgres", "airlock-test"];

export interface PgUser {
  user: string;
  password: string;
}

export interface StartPostgresOptions {
  /** Serve TLS (hostssl lines are added; plain host lines stay, so both work). */
  tls?: boolean;
  /** Extra postgresql.conf settings. */
  settings?: Record<string, string | number | boolean>;
  /** Database created for the tests (default `airlock`). */
  database?: string;
  /**
   * Run the server inside this network namespace (root only), listening on all its addresses with
   * TCP logins from its own subnets (pg_hba `samenet`); the unix socket stays reachable from here.
   */
  netns?: string;
  /** Fixed TCP port (default: a free one; with `netns`, 5432). */
  port?: number;
}

export interface PostgresServer {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** Unix socket directory (the superuser connects here with trust). */
  readonly socketDir: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly database: string;
  readonly superuser: string;
  readonly binDir: string;
  /** One login role per upstream authentication method, each owning nothing, granted below. */
  readonly users: { readonly scram: PgUser; readonly md5: PgUser; readonly password: PgUser };
  /** PEM of the CA that signed the server certificate (tls: true only). */
  readonly caPem?: string;
  /** Runs SQL as the superuser through psql over the unix socket; returns unaligned tuples-only output. */
  sql(text: string, opts?: { database?: string }): Promise<string>;
  /** Creates a SCRAM login role with a random password. */
  createUser(name: string, opts?: { superuser?: boolean }): Promise<PgUser>;
  /** `pgbench -i` at the given scale as the superuser, then grants the tables to every test user. */
  initPgbench(scale: number): Promise<void>;
  /** Environment for libpq tools (psql, pgbench) connecting as the superuser over the socket. */
  superuserEnv(): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export { freePort };

interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

function lookupUser(name: string): RunAs | undefined {
  try {
    const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8" }).trim());
    return { uid, gid, name };
  } catch {
    return undefined;
  }
}

/** The account the server runs as: never root. */
function serverAccount(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined; // not root: run as ourselves
  for (const name of SYSTEM_USER_CANDIDATES) {
    const found = lookupUser(name);
    if (found) return found;
  }
  try {
    execFileSync(
      "useradd",
      ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "airlock-test"],
      {
        stdio: "ignore",
      },
    );
  } catch {
    // Another test process may have created it at the same moment: look again below.
  }
  const created = lookupUser("airlock-test");
  if (!created) throw new Error("could not create the airlock-test system user to run PostgreSQL");
  return created;
}

function run(
  file: string,
  args: string[],
  opts: { account?: RunAs; env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 64 * 1024 * 1024,
        ...(opts.account ? { uid: opts.account.uid, gid: opts.account.gid } : {}),
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${file} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
        else resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

const sqlLiteral = (s: string) => `'${s.replace(/'/g, "''")}'`;

async function makeCertificates(dir: string): Promise<{ caPem: string; cert: string; key: string }> {
  const caKey = join(dir, "ca.key");
  const caCrt = join(dir, "ca.crt");
  const key = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const crt = join(dir, "server.crt");
  const ext = join(dir, "server.ext");
  await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", caKey]);
  await run("openssl", [
    "req",
    "-x509",
    "-new",
    "-key",
    caKey,
    "-subj",
    "/CN=airlock test postgres CA",
    "-days",
    "2",
    "-out",
    caCrt,
  ]);
  await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
  await run("openssl", ["req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", csr]);
  await writeFile(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    caCrt,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    ext,
    "-out",
    crt,
  ]);
  return { caPem: readFileSync(caCrt, "utf8"), cert: crt, key };
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A crashed test process must not leave servers behind.
  process.on("exit", () => {
    for (const child of live) child.kill("SIGQUIT");
  });
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const account = serverAccount();
  const work = await mkdtemp(join(tmpdir(), "airlock-pg-"));
  const dataDir = join(work, "data");
  const socketDir = join(work, "sock");
  const logFile = join(work, "postgres.log");
  await mkdir(socketDir);
  if (account) {
    chownSync(work, account.uid, account.gid);
    chownSync(socketDir, account.uid, account.gid);
  }
  const database = options.database ?? "airlock";
  const binDir = PG_BIN_DIR;
  if (!existsSync(join(binDir, "initdb")))
    throw new Error(`PostgreSQL server binaries not found in ${binDir} (apt-get install postgresql)`);

  await run(
    join(binDir, "initdb"),
    ["-D", dataDir, "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--auth=trust", "--no-sync"],
    { ...(account ? { account } : {}), timeoutMs: 120_000 },
  );

  let caPem: string | undefined;
  const conf: Record<string, string | number | boolean> = {
    listen_addresses: options.netns ? "'*'" : "'127.0.0.1'",
    unix_socket_directories: sqlLiteral(socketDir),
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: 200,
    shared_buffers: "'64MB'",
    password_encryption: "'scram-sha-256'",
    log_min_messages: "warning",
    logging_collector: "off",
    ...options.settings,
  };
  let hba = "local all all trust\n";
  if (options.tls) {
    const certDir = join(work, "certs");
    await mkdir(certDir);
    const certs = await makeCertificates(certDir);
    caPem = certs.caPem;
    if (account) {
      chownSync(certDir, account.uid, account.gid);
      chownSync(certs.cert, account.uid, account.gid);
      chownSync(certs.key, account.uid, account.gid);
    }
    await chmod(certs.key, 0o600);
    conf.ssl = "on";
    conf.ssl_cert_file = sqlLiteral(certs.cert);
    conf.ssl_key_file = sqlLiteral(certs.key);
  }
  const from = options.netns ? "samenet" : "127.0.0.1/32";
  hba += [
    `host all airlock_scram ${from} scram-sha-256`,
    `host all airlock_md5 ${from} md5`,
    `host all airlock_password ${from} password`,
    `host all all ${from} scram-sha-256`,
    "",
  ].join("\n");
  await writeFile(
    join(dataDir, "postgresql.auto.conf"),
    `${Object.entries(conf)
      .map(([k, v]) => `${k} = ${v}`)
      .join("\n")}\n`,
  );
  await writeFile(join(dataDir, "pg_hba.conf"), hba);
  if (account) {
    chownSync(join(dataDir, "postgresql.auto.conf"), account.uid, account.gid);
    chownSync(join(dataDir, "pg_hba.conf"), account.uid, account.gid);
  }

  // The port is picked just before the bind; on the rare collision, retry with another.
  let port = 0;
  let child: ChildProcess | undefined;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = options.port ?? (options.netns ? 5432 : await freePort());
    const args = ["-D", dataDir, "-p", String(port)];
    // In a namespace: `ip netns exec` enters it as root, setpriv then drops to the server account.
    const proc = options.netns
      ? spawn(
          "ip",
          [
            "netns",
            "exec",
            options.netns,
            "setpriv",
            ...(account
              ? ["--reuid", String(account.uid), "--regid", String(account.gid), "--clear-groups"]
              : []),
            join(binDir, "postgres"),
            ...args,
          ],
          { stdio: ["ignore", "ignore", "pipe"] },
        )
      : spawn(join(binDir, "postgres"), args, {
          stdio: ["ignore", "ignore", "pipe"],
          ...(account ? { uid: account.uid, gid: account.gid } : {}),
        });
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 64 * 1024) stderr = stderr.slice(-32 * 1024);
    });
    live.add(proc);
    installExitHook();
    const up = await waitReady(proc, socketDir, port, () => stderr);
    if (up === "ok") {
      child = proc;
      proc.stderr?.removeAllListeners("data");
      proc.stderr?.resume();
    } else {
      live.delete(proc);
      if (!/could not bind|Address already in use/.test(stderr))
        throw new Error(`postgres did not start:\n${stderr}`);
    }
  }
  if (!child) throw new Error("postgres did not start: no free port after 5 attempts");
  const server = child;

  const superuserEnv = (): NodeJS.ProcessEnv => ({
    ...process.env,
    PGHOST: socketDir,
    PGPORT: String(port),
    PGUSER: SUPERUSER,
    PGDATABASE: database,
    PGCONNECT_TIMEOUT: "10",
  });

  const sql = async (text: string, opts: { database?: string } = {}) => {
    const { stdout } = await run(
      "psql",
      ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", opts.database ?? database, "-f", "-"],
      { env: superuserEnv(), input: text },
    );
    return stdout.trim();
  };

  await sql(`CREATE DATABASE ${database}`, { database: "postgres" });
  const password = () => randomBytes(12).toString("base64url");
  const users = {
    scram: { user: "airlock_scram", password: password() },
    md5: { user: "airlock_md5", password: password() },
    password: { user: "airlock_password", password: password() },
  };
  await sql(
    [
      `CREATE ROLE airlock_scram LOGIN PASSWORD ${sqlLiteral(users.scram.password)}`,
      `CREATE ROLE airlock_password LOGIN PASSWORD ${sqlLiteral(users.password.password)}`,
      "SET password_encryption = 'md5'",
      `CREATE ROLE airlock_md5 LOGIN PASSWORD ${sqlLiteral(users.md5.password)}`,
      "RESET password_encryption",
      `GRANT ALL ON SCHEMA public TO airlock_scram, airlock_md5, airlock_password`,
      "",
    ].join(";\n"),
  );

  const extraUsers: string[] = [];
  const handle: PostgresServer = {
    host: "127.0.0.1",
    port,
    socketDir,
    dataDir,
    logFile,
    database,
    superuser: SUPERUSER,
    binDir,
    users,
    ...(caPem ? { caPem } : {}),
    sql,
    superuserEnv,
    async createUser(name, opts = {}) {
      const u = { user: name, password: password() };
      await sql(
        `CREATE ROLE ${name} LOGIN ${opts.superuser ? "SUPERUSER" : ""} PASSWORD ${sqlLiteral(u.password)}; GRANT ALL ON SCHEMA public TO ${name};`,
      );
      extraUsers.push(name);
      return u;
    },
    async initPgbench(scale) {
      await run(join(binDir, "pgbench"), ["-i", "-q", "-s", String(scale), database], {
        env: superuserEnv(),
        timeoutMs: 300_000,
      });
      const all = ["airlock_scram", "airlock_md5", "airlock_password", ...extraUsers].join(", ");
      await sql(
        `GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO ${all}`,
      );
    },
    async stop() {
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
        server.kill("SIGINT"); // fast shutdown
        const timer = setTimeout(() => server.kill("SIGQUIT"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      live.delete(server);
      await rm(work, { recursive: true, force: true });
    },
  };
  return handle;
}

async function waitReady(
  proc: ChildProcess,
  socketDir: string,
  port: number,
  stderr: () => string,
): Promise<"ok" | "exited"> {
  const deadline = Date.now() + 60_000;
  let exited = false;
  proc.once("exit", () => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) return "exited";
    try {
      await execFileP(join(PG_BIN_DIR, "pg_isready"), ["-q", "-h", socketDir, "-p", String(port)], {
        timeout: 5_000,
      });
      return "ok";
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  proc.kill("SIGQUIT");
  throw new Error(`postgres did not become ready in 60 s:\n${stderr()}`);
}

/** For messages: which user the server runs as. */
export function describeServerAccount(): string {
  return serverAccount()?.name ?? userInfo().username;
}

/**
 * The non-root account servers run as when the tests run as root (undefined otherwise), for
 * other daemons that refuse root too (PgBouncer).
 */
export function nonRootAccount(): { uid: number; gid: number; name: string } | undefined {
  return serverAccount();
}
