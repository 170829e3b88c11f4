// The SidecarContext of the in-process guard harnesses (HTTP, SSH), real parts: the policy store
// holding the test's policies (which must compile), a file SecretStore in a temp dir, metrics, a
// debug logger writing into a buffer, audit events both kept and logged as the sidecar logs them.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { createAuditSink, createMemoryAuditSink } from "../../sidecar/src/audit/sink.ts";
import {
  type CredentialSourcesOptions,
  createCredentialSources,
} from "../../sidecar/src/credentials/index.ts";
import type { WorkloadIdentity } from "../../sidecar/src/identity/index.ts";
import type { SidecarContext } from "../../sidecar/src/runtime/context.ts";
import { createPolicyStore } from "../../sidecar/src/runtime/policy-store.ts";
import { createSecretStore } from "../../sidecar/src/runtime/secrets.ts";
import { createVerifierCache } from "../../sidecar/src/runtime/verifiers.ts";
import { createLogger } from "../../sidecar/src/telemetry/logger.ts";
import { createMetrics, type Metrics } from "../../sidecar/src/telemetry/metrics.ts";

/** The agent pod the tests' sidecar serves. */
export const WORKLOAD: WorkloadIdentity = {
  namespace: "agents",
  podName: "agent-0",
  serviceAccount: "agent",
  subject: "system:serviceaccount:agents:agent",
  labels: { app: "agent" },
};

export interface TestContext {
  ctx: SidecarContext;
  metrics: Metrics;
  audit: AuditEvent[];
  /** Everything the logger wrote (JSON lines), audit events included. */
  logs(): string;
  secretsDir: string;
  /** Writes `<secretsDir>/<name>/<key>`, as a mounted Secret. */
  writeSecret(name: string, key: string, value: string): Promise<void>;
  /** Replaces the policies (they must compile). */
  setPolicies(policies: AgentAccessPolicy[]): void;
  /** Removes the secrets directory. */
  remove(): Promise<void>;
}

export async function testContext(opts: {
  /** Names the secrets directory (airlock-<prefix>-secrets-…). */
  prefix: string;
  policies: AgentAccessPolicy[];
  /** Secrets written before the context exists: name → key → value. */
  secrets?: Record<string, Record<string, string>>;
  /** The SecretStore's cache lifetime (0: every read goes to the files). */
  secretTtlMs?: number;
  /** Credential source options (Vault: the projected token directory, timeouts). */
  credentials?: Partial<Pick<CredentialSourcesOptions, "tokenDir" | "vaultTimeoutMs">>;
  verifierFor?: SidecarContext["verifierFor"];
}): Promise<TestContext> {
  let logText = "";
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      logText += chunk.toString("utf8");
      done();
    },
  });
  const logger = createLogger({ level: "debug", destination });
  const memory = createMemoryAuditSink();
  const logged = createAuditSink(logger);
  const metrics = createMetrics({ defaultMetrics: false });
  const policies = createPolicyStore({ logger, metrics });
  const setPolicies = (next: AgentAccessPolicy[]) => {
    const r = policies.update(next);
    if (r.problems.length > 0) throw new Error(`test policy problems: ${JSON.stringify(r.problems)}`);
  };
  setPolicies(opts.policies);
  const secretsDir = await mkdtemp(join(tmpdir(), `airlock-${opts.prefix}-secrets-`));
  const writeSecret = async (name: string, key: string, value: string) => {
    await mkdir(join(secretsDir, name), { recursive: true });
    await writeFile(join(secretsDir, name, key), value);
  };
  for (const [name, keys] of Object.entries(opts.secrets ?? {}))
    for (const [key, value] of Object.entries(keys)) await writeSecret(name, key, value);
  const secrets = createSecretStore(
    secretsDir,
    opts.secretTtlMs === undefined ? {} : { ttlMs: opts.secretTtlMs },
  );
  const ctx: SidecarContext = {
    logger,
    audit: {
      emit(event) {
        memory.emit(event);
        logged.emit(event);
      },
    },
    metrics,
    workload: WORKLOAD,
    policies,
    secrets,
    credentials: createCredentialSources({ secrets, logger, metrics, ...opts.credentials }),
    hashKey: randomBytes(32),
    verifierFor: opts.verifierFor ?? createVerifierCache(),
  };
  return {
    ctx,
    metrics,
    audit: memory.events,
    logs: () => logText,
    secretsDir,
    writeSecret,
    setPolicies,
    remove: () => rm(secretsDir, { recursive: true, force: true }),
  };
}
