// A real OpenSSH server (Debian's openssh-server) started on loopback for a test file.
//
//   const sshd = await startSshd();
//   sshd.port, sshd.user                 // 127.0.0.1:<free port>, the login user
//   sshd.knownHosts                      // "[127.0.0.1]:<port> ssh-ed25519 AAAA..." for the host key
//   sshd.caPrivateKey                    // OpenSSH private key of the user CA sshd trusts
//   sshd.userPrivateKey                  // a plain key in the user's authorized_keys
//   sshd.principals                      // principals sshd accepts for the user (AuthorizedPrincipalsFile)
//   await sshd.stop();
//
// - Everything lives in a fresh temp dir: host key (ed25519), user CA (ed25519, made with
//   ssh-keygen), a plain user key, sshd_config, AuthorizedPrincipalsFile and AuthorizedKeysFile.
// - sshd is started as `/usr/sbin/sshd -D -e -f <config>` (it insists on an absolute path) and
//   needs its privilege separation directory /run/sshd, which the harness creates.
// - The login user: as root (CI), a system user `airlock-ssh-test` with a home directory and
//   /bin/sh is created with `useradd` when missing, and its password field set to `*` (no
//   password, but not "locked", which sshd without PAM would refuse). Not root: sshd can only log
//   in the user it runs as, so the current user is used.
// - UsePAM no, password and keyboard-interactive off: only public keys and certificates work.
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./postgres.ts";

const execFileP = promisify(execFile);

export const SSHD = process.env.AIRLOCK_SSHD ?? "/usr/sbin/sshd";
export const SSH_TEST_USER = "airlock-ssh-test";

export interface StartSshdOptions {
  /** Principals accepted for the login user (default: [user, "airlock-agents"]). */
  principals?: string[];
  /** Extra sshd_config lines. */
  config?: string[];
  /** The user CA public keys sshd trusts (TrustedUserCAKeys), instead of the harness's own CA. */
  trustedUserCaKeys?: string;
}

export interface SshdServer {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly user: string;
  readonly home: string;
  readonly dir: string;
  readonly principals: readonly string[];
  /** known_hosts line for the server's host key. */
  readonly knownHosts: string;
  readonly hostPublicKey: string;
  readonly caPrivateKey: string;
  readonly caPublicKey: string;
  readonly caPrivateKeyPath: string;
  readonly userPrivateKey: string;
  readonly userPrivateKeyPath: string;
  /** sshd's stderr so far (LogLevel VERBOSE: accepted keys, certificate IDs, refusals). */
  logs(): string;
  /** Runs the OpenSSH client against the server with these extra arguments. */
  ssh(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<SshResult>;
  stop(): Promise<void>;
}

export interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

function ensureUser(): { name: string; home: string } {
  if (process.getuid?.() !== 0) {
    const me = userInfo();
    return { name: me.username, home: me.homedir };
  }
  try {
    execFileSync("id", ["-u", SSH_TEST_USER], { stdio: "ignore" });
  } catch {
    execFileSync("useradd", ["--system", "--create-home", "--shell", "/bin/sh", SSH_TEST_USER]);
  }
  // `*` = no password, not locked (`!`), so sshd without PAM lets keys and certificates in.
  execFileSync("usermod", ["-p", "*", SSH_TEST_USER]);
  const home = execFileSync("getent", ["passwd", SSH_TEST_USER], { encoding: "utf8" }).split(":")[5] ?? "";
  if (home && !existsSync(home)) {
    mkdirSync(home, { recursive: true });
    execFileSync("chown", [`${SSH_TEST_USER}:`, home]);
  }
  return { name: SSH_TEST_USER, home };
}

async function keygen(path: string, comment: string, type = "ed25519"): Promise<void> {
  await execFileP("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", comment, "-f", path]);
}

const live = new Set<ChildProcess>();
let exitHook = false;

export async function startSshd(options: StartSshdOptions = {}): Promise<SshdServer> {
  const user = ensureUser();
  const dir = await mkdtemp(join(tmpdir(), "airlock-sshd-"));
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = join(dir, "ssh_host_ed25519_key");
  const caKey = join(dir, "user_ca");
  const userKey = join(dir, "user_key");
  await Promise.all([
    keygen(hostKey, "airlock-test-host"),
    keygen(caKey, "airlock-test-user-ca"),
    keygen(userKey, "airlock-test-user"),
  ]);
  const principals = options.principals ?? [user.name, "airlock-agents"];
  await mkdir(join(dir, "principals"));
  await mkdir(join(dir, "authorized_keys"));
  await writeFile(join(dir, "principals", user.name), `${principals.join("\n")}\n`);
  await writeFile(join(dir, "authorized_keys", user.name), await readFile(`${userKey}.pub`, "utf8"));
  let trusted = `${caKey}.pub`;
  if (options.trustedUserCaKeys !== undefined) {
    trusted = join(dir, "trusted_user_ca_keys");
    await writeFile(trusted, `${options.trustedUserCaKeys.trim()}\n`);
  }
  const port = await freePort();
  const config = [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, "sshd.pid")}`,
    `TrustedUserCAKeys ${trusted}`,
    `AuthorizedPrincipalsFile ${join(dir, "principals", "%u")}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys", "%u")}`,
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    "PermitRootLogin no",
    "StrictModes no",
    `AllowUsers ${user.name}`,
    "AllowTcpForwarding yes",
    "AllowAgentForwarding yes",
    "X11Forwarding no",
    "PrintMotd no",
    "PrintLastLog no",
    "Banner none",
    "LogLevel VERBOSE",
    "MaxStartups 100",
    "Subsystem sftp internal-sftp",
    ...(options.config ?? []),
  ];
  const configPath = join(dir, "sshd_config");
  await writeFile(configPath, `${config.join("\n")}\n`);
  await chmod(dir, 0o755);

  let logText = "";
  const child = spawn(SSHD, ["-D", "-e", "-f", configPath], { stdio: ["ignore", "ignore", "pipe"] });
  live.add(child);
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const c of live) c.kill("SIGTERM");
    });
  }
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => {
    logText += d;
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start:\n${logText}`)), 15_000);
    const check = () => {
      if (logText.includes("Server listening on")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr?.on("data", check);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`sshd exited with ${code}:\n${logText}`));
    });
    check();
  });

  const hostPublicKey = (await readFile(`${hostKey}.pub`, "utf8")).trim();
  const [type, key] = hostPublicKey.split(" ");
  const knownHostsPath = join(dir, "known_hosts");
  const knownHosts = `[127.0.0.1]:${port} ${type} ${key}`;
  await writeFile(knownHostsPath, `${knownHosts}\n`);

  return {
    host: "127.0.0.1",
    port,
    user: user.name,
    home: user.home,
    dir,
    principals,
    knownHosts,
    hostPublicKey,
    caPrivateKey: await readFile(caKey, "utf8"),
    caPublicKey: (await readFile(`${caKey}.pub`, "utf8")).trim(),
    caPrivateKeyPath: caKey,
    userPrivateKey: await readFile(userKey, "utf8"),
    userPrivateKeyPath: userKey,
    logs: () => logText,
    ssh(args, opts = {}) {
      return new Promise((resolve) => {
        const c = execFile(
          "ssh",
          [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            `UserKnownHostsFile=${knownHostsPath}`,
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-p",
            String(port),
            "-l",
            user.name,
            ...args,
          ],
          { timeout: opts.timeoutMs ?? 20_000, encoding: "utf8" },
          (err, stdout, stderr) => {
            const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
            resolve({ code, stdout, stderr });
          },
        );
        if (opts.input !== undefined) c.stdin?.end(opts.input);
        else c.stdin?.end();
      });
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.once("exit", () => r()));
        child.kill("SIGTERM");
        await exited;
      }
      live.delete(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
