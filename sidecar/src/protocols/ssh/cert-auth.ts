// Certificate authentication for the ssh2 client. ssh2 1.x cannot authenticate with an OpenSSH
// certificate: its `publickey` request uses one algorithm name for both the key and the signature,
// but for `ssh-ed25519-cert-v01@openssh.com` the signature must be named `ssh-ed25519` (OpenSSH
// refuses anything else). So, per client instance and only for keys made here, the signed
// USERAUTH_REQUEST is built by this module (RFC 4252 §7) and handed to ssh2's own packet writer.
// The unsigned "would this key be accepted?" query still goes through ssh2 unchanged.
//
// This reaches into ssh2 internals (`_protocol.authPK`, `_packetRW`, `_kex.sessionID`,
// `_authsQueue`, `sendPacket`), so it is pinned to ssh2 1.17.x: `assertSupportedSsh2` refuses
// other versions at startup, and test/ssh proves it against a real sshd.

import { sign } from "node:crypto";
import { createRequire } from "node:module";
import type { Client, ParsedKey } from "ssh2";
import ssh2 from "ssh2";
import type { SignedCertificate } from "./certificate.ts";
import { toOpenSshPrivateKey } from "./keys.ts";
import { SshWriter } from "./wire.ts";

const require = createRequire(import.meta.url);

interface Ssh2ProtocolInternals {
  authPK(username: string, key: unknown, keyAlgo?: unknown, cbSign?: unknown): void;
  _kex: { sessionID: Buffer };
  _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(p: Buffer): Buffer } };
  _authsQueue: string[];
}

const SUPPORTED_SSH2 = /^1\.17\./;
const MSG_USERAUTH_REQUEST = 50;
const CERTIFICATE = Symbol("airlock.ssh.certificate");

let sendPacket: ((proto: unknown, packet: Buffer) => boolean) | undefined;

/** Throws unless the installed ssh2 is the version this module's internals were written for. */
export function assertSupportedSsh2(): void {
  const version = (require("ssh2/package.json") as { version: string }).version;
  if (!SUPPORTED_SSH2.test(version))
    throw new Error(`SSH certificate authentication is written for ssh2 1.17.x, found ${version}`);
  sendPacket ??= (require("ssh2/lib/protocol/utils.js") as { sendPacket: typeof sendPacket }).sendPacket;
}

/** An ssh2 key object that presents `cert` and signs with its key. Pass it as `publickey` auth. */
export function certificateKey(cert: SignedCertificate): ParsedKey {
  assertSupportedSsh2();
  const base = ssh2.utils.parseKey(toOpenSshPrivateKey(cert.key));
  if (base instanceof Error) throw base;
  // The prototype keeps ssh2's private markers (it checks them to accept a parsed key).
  return Object.create(base, {
    type: { value: cert.certType },
    getPublicSSH: { value: () => cert.blob },
    [CERTIFICATE]: { value: cert },
  }) as ParsedKey;
}

function certificateOf(key: unknown): SignedCertificate | undefined {
  if (typeof key !== "object" || key === null) return undefined;
  return (key as { [CERTIFICATE]?: SignedCertificate })[CERTIFICATE];
}

/** Lets `client` authenticate with keys from certificateKey(). Call right after client.connect(). */
export function enableCertificateAuth(client: Client): void {
  assertSupportedSsh2();
  const proto = (client as unknown as { _protocol?: Ssh2ProtocolInternals })._protocol;
  if (!proto || typeof proto.authPK !== "function")
    throw new Error("enableCertificateAuth must be called after client.connect()");
  const original = proto.authPK;
  proto.authPK = function authPK(this: Ssh2ProtocolInternals, username, key, keyAlgo, cbSign) {
    const cert = certificateOf(key);
    const signCb = typeof keyAlgo === "function" ? keyAlgo : cbSign;
    if (!cert || typeof signCb !== "function") {
      original.call(this, username, key, keyAlgo, cbSign);
      return;
    }
    const head = new SshWriter()
      .byte(MSG_USERAUTH_REQUEST)
      .string(username)
      .string("ssh-connection")
      .string("publickey")
      .bool(true)
      .string(cert.certType)
      .string(cert.blob)
      .toBuffer();
    const signed = new SshWriter().string(this._kex.sessionID).raw(head).toBuffer();
    const signature = new SshWriter()
      .string(cert.key.signatureAlgorithm)
      .string(sign(null, signed, cert.key.privateKey))
      .toBuffer();
    const payload = new SshWriter().raw(head).string(signature).toBuffer();
    const p = this._packetRW.write.allocStart;
    const packet = this._packetRW.write.alloc(payload.length);
    packet.set(payload, p);
    this._authsQueue.push("publickey");
    sendPacket?.(this, this._packetRW.write.finalize(packet));
  };
}
