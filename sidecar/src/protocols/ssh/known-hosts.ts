// known_hosts (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT") for upstream host-key verification:
// plain and hashed (`|1|salt|hash`) host patterns, `*`/`?` wildcards, `!negation`, `[host]:port`
// for non-22 ports, and `@revoked` keys. `@cert-authority` lines are ignored: the sidecar does
// not negotiate host certificates, so a host must be listed with its key.
import { createHmac } from "node:crypto";

export interface KnownHostKey {
  type: string;
  blob: Buffer;
}

export interface HostKeyPolicy {
  /** Keys listed for the host (any may match). */
  keys: KnownHostKey[];
  /** Keys that must never be accepted, whatever else says. */
  revoked: KnownHostKey[];
  /** Host-key algorithms to offer the server, so it presents a key we can check. */
  algorithms: string[];
  /** "ok", or why the presented key is refused. */
  check(blob: Buffer): "ok" | "mismatch" | "revoked";
}

const ALGORITHMS: Record<string, string[]> = {
  "ssh-ed25519": ["ssh-ed25519"],
  "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
  "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
  "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
  "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
};

/** The name known_hosts uses for a host: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

function wildcard(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split("")
      .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
      .join("")}$`,
    "i",
  );
  return re.test(name);
}

function hashedMatch(entry: string, name: string): boolean {
  const parts = entry.split("|"); // ["", "1", salt, hash]
  if (parts.length !== 4 || parts[1] !== "1") return false;
  const salt = Buffer.from(parts[2] as string, "base64");
  const hash = Buffer.from(parts[3] as string, "base64");
  return createHmac("sha1", salt).update(name).digest().equals(hash);
}

/** Whether a comma-separated pattern list matches any of the names (a negation excludes). */
function patternsMatch(patterns: string, names: string[]): boolean {
  if (patterns.startsWith("|")) return names.some((n) => hashedMatch(patterns, n));
  let matched = false;
  for (const raw of patterns.split(",")) {
    const negated = raw.startsWith("!");
    const p = negated ? raw.slice(1) : raw;
    if (names.some((n) => wildcard(p, n))) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

export function parseKnownHosts(text: string, host: string, port: number): HostKeyPolicy {
  const names = [knownHostsName(host, port)];
  const keys: KnownHostKey[] = [];
  const revoked: KnownHostKey[] = [];
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const fields = trimmed.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]?.startsWith("@")) marker = fields.shift();
    const [patterns, type, b64] = fields;
    if (!patterns || !type || !b64) continue;
    if (marker === "@cert-authority") continue;
    if (!patternsMatch(patterns, names)) continue;
    const blob = Buffer.from(b64, "base64");
    if (marker === "@revoked") revoked.push({ type, blob });
    else if (marker === undefined) keys.push({ type, blob });
  }
  const algorithms = [...new Set(keys.flatMap((k) => ALGORITHMS[k.type] ?? []))];
  return {
    keys,
    revoked,
    algorithms,
    check(blob) {
      if (revoked.some((k) => k.blob.equals(blob))) return "revoked";
      return keys.some((k) => k.blob.equals(blob)) ? "ok" : "mismatch";
    },
  };
}
