// The agent-facing host key. It must be stable for the agent's known_hosts to keep matching
// across sidecar restarts: it is either given (a Secret-mounted file, read as is) or generated
// once into a file in the sidecar's own volume and reused from then on. A key that exists but does
// not parse is an error at start, never silently replaced (that is what "REMOTE HOST
// IDENTIFICATION HAS CHANGED" would then report).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { generateEd25519, parsePrivateKey, type SshPrivateKey, toOpenSshPrivateKey } from "./keys.ts";

export interface HostKey {
  key: SshPrivateKey;
  /** OpenSSH/PEM private key text, for ssh2. */
  text: string;
  /** Where it came from, for the start log. */
  source: "given" | "file" | "generated" | "ephemeral";
  path?: string;
}

const isCode = (err: unknown, code: string) =>
  err instanceof Error && (err as NodeJS.ErrnoException).code === code;

function parseFrom(text: string, where: string): SshPrivateKey {
  try {
    return parsePrivateKey(text);
  } catch (err) {
    throw new Error(`ssh host key ${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * `text` wins; else `path`: read when it exists, generated (ed25519, mode 0600, exclusive create)
 * when it does not; else an ephemeral key (tests).
 */
export function loadHostKey(opts: { text?: string; path?: string }): HostKey {
  if (opts.text !== undefined)
    return { key: parseFrom(opts.text, "(given)"), text: opts.text, source: "given" };
  const path = opts.path;
  if (!path) {
    const key = generateEd25519();
    return { key, text: toOpenSshPrivateKey(key), source: "ephemeral" };
  }
  const read = (): HostKey => {
    const text = readFileSync(path, "utf8");
    return { key: parseFrom(text, path), text, source: "file", path };
  };
  try {
    return read();
  } catch (err) {
    if (!isCode(err, "ENOENT")) throw err;
  }
  const key = generateEd25519();
  const text = toOpenSshPrivateKey(key, "airlock-sidecar");
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, text, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if (isCode(err, "EEXIST")) return read(); // another start won the race: use its key
    throw new Error(
      `ssh host key ${path}: cannot create it (${err instanceof Error ? err.message : String(err)}); ` +
        "point AIRLOCK_SSH_HOST_KEY_FILE at a writable path or a mounted key",
    );
  }
  return { key, text, source: "generated", path };
}
