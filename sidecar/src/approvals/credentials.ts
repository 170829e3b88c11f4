// Approver credentials for standalone approvals: without an API server there is no authenticator,
// so deciding a request needs a bearer token from a file only its owner can read. The approving
// name comes from the token's line, never from the request body. The sidecar creates the file at
// start (one line for the configured approver) and re-reads it on every decision, so approvers can
// be added (`NAME TOKEN` lines) without a restart; `kubectl airlock --sidecar` reads the same file.
//
// What this protects against: any other local user, and any process that cannot read the file (an
// agent running as another OS user, or in a container without the file mounted). An agent running
// as the sidecar's own OS user can read its owner's files: run agents as another user.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

export interface ApproverCredential {
  user: string;
  token: string;
}

export class CredentialFileError extends Error {}

const USER = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,255}$/;
const HEADER = "# Airlock approver credentials: one `NAME TOKEN` per line. Keep this file mode 0600.\n";

export function defaultApproverTokenFile(
  env: Readonly<Record<string, string | undefined>> = process.env,
): string {
  if (env.AIRLOCK_APPROVER_TOKEN_FILE) return env.AIRLOCK_APPROVER_TOKEN_FILE;
  const base = env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "airlock", "approver-tokens");
}

/** Refuses a file others could read or write, or that another user owns. */
function checkOwnerOnly(file: string, fd: number): void {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new CredentialFileError(`${file} is not a regular file`);
  if (typeof process.getuid === "function" && st.uid !== process.getuid())
    throw new CredentialFileError(
      `${file} belongs to another user (uid ${st.uid}); approver credentials must be your own`,
    );
  if ((st.mode & 0o077) !== 0)
    throw new CredentialFileError(
      `${file} is accessible to other users (mode ${(st.mode & 0o777).toString(8)}); run \`chmod 600 ${file}\``,
    );
}

function parse(file: string, text: string): ApproverCredential[] {
  const out: ApproverCredential[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const [user, token, ...rest] = line.split(/\s+/);
    if (!user || !token || rest.length || !USER.test(user) || token.length < 16)
      throw new CredentialFileError(`${file}:${i + 1}: expected \`NAME TOKEN\` (a token of 16+ characters)`);
    out.push({ user, token });
  });
  return out;
}

/** Reads the credentials; throws CredentialFileError when missing, malformed or not owner-only. */
export function readApproverCredentials(file: string): ApproverCredential[] {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    throw new CredentialFileError(`cannot read approver credentials ${file}: ${(e as Error).message}`);
  }
  try {
    checkOwnerOnly(file, fd);
    return parse(file, readFileSync(fd, "utf8"));
  } finally {
    closeSync(fd);
  }
}

/** Makes sure `user` has a credential in `file` (creating the file, mode 0600, if needed). */
export function ensureApproverCredential(file: string, user: string): ApproverCredential {
  if (!USER.test(user)) throw new CredentialFileError(`approver name ${JSON.stringify(user)} is not valid`);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  let fd: number;
  let created = false;
  try {
    fd = openSync(file, "wx", 0o600);
    created = true;
  } catch {
    fd = openSync(file, "r+");
  }
  try {
    if (created) {
      chmodSync(file, 0o600);
      writeSync(fd, HEADER);
    }
    checkOwnerOnly(file, fd);
    const existing = parse(file, readFileSync(file, "utf8")).find((c) => c.user === user);
    if (existing) return existing;
    const credential = { user, token: randomBytes(24).toString("base64url") };
    writeSync(fd, `${user} ${credential.token}\n`, fstatSync(fd).size);
    return credential;
  } finally {
    closeSync(fd);
  }
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/** The approver a bearer token belongs to, compared in constant time; undefined when none. */
export function approverFor(credentials: readonly ApproverCredential[], token: string): string | undefined {
  const given = digest(token);
  let found: string | undefined;
  for (const c of credentials) if (timingSafeEqual(digest(c.token), given)) found ??= c.user;
  return found;
}
