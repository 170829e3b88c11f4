// The SSH guard: the sidecar as an SSH server for the agent and an SSH client to the
// upstream, with per-session certificates, command analysis, masking and asciicast recording.
// Behaviour, refusals and decisions: README.md in this directory.

export type { ApprovalGate, ApprovalInput, ApprovalOutcome } from "../../approvals/gate.ts";
export { decideExec, type ExecDecision } from "../../decisions/ssh-exec.ts";
export {
  analyzeCommand,
  type ChainOperator,
  type CommandAnalysis,
  type CommandPart,
  MAX_COMMAND_LENGTH,
  renderCommand,
  shellQuote,
} from "../../shell/command.ts";
export { assertSupportedSsh2, certificateKey, enableCertificateAuth } from "./cert-auth.ts";
export {
  type CertificatePermissions,
  type CertificateRequest,
  ED25519_CERT_TYPE,
  extensionNames,
  type ParsedCertificate,
  parseCertificate,
  type SignedCertificate,
  signUserCertificate,
} from "./certificate.ts";
export { createSshGuard, type SshGuard, type SshGuardOptions } from "./guard.ts";
export {
  fingerprint,
  generateEd25519,
  parsePrivateKey,
  publicBlobOf,
  publicKeyLine,
  SshKeyError,
  type SshKeyType,
  type SshPrivateKey,
  toOpenSshPrivateKey,
} from "./keys.ts";
export { type HostKeyPolicy, knownHostsName, parseKnownHosts } from "./known-hosts.ts";
export { EXIT_DENIED, EXIT_UPSTREAM } from "./session.ts";
export {
  connectUpstream,
  DEFAULT_CERT_VALIDITY,
  type Upstream,
  UpstreamError,
  type UpstreamErrorCode,
} from "./upstream.ts";
