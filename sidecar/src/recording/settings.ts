// Where a connection's sessions are recorded: its policy's `audit` block (recordSessions default
// true, destination default stdout). Compiled connections do not carry `audit`, so the sidecar
// keeps the policy objects it was last given next to its PolicyStore (withPolicyObjects) and
// resolves settings from them by the connection's owning policy.
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { policyKey } from "../policy/compile.ts";
import type { PolicyStore } from "../runtime/policy-store.ts";
import {
  DEFAULT_RECORDING_SETTINGS,
  type RecordingSettings,
  type RecordingSettingsResolver,
} from "./recorder.ts";

export type AuditSpec = NonNullable<AgentAccessPolicy["spec"]["audit"]>;

export function settingsFromAudit(audit: AuditSpec | undefined): RecordingSettings {
  if (!audit) return DEFAULT_RECORDING_SETTINGS;
  const destination = audit.destination ?? "stdout";
  return {
    enabled: audit.recordSessions ?? true,
    destination: destination === "file" && audit.directory ? "file" : "stdout",
    ...(audit.directory ? { directory: audit.directory } : {}),
  };
}

export function recordingSettingsFrom(
  objects: () => readonly AgentAccessPolicy[],
): RecordingSettingsResolver {
  return (connection) =>
    settingsFromAudit(objects().find((p) => policyKey(p) === connection.policy)?.spec.audit);
}

/** The store, remembering the policy objects of the last accepted update. */
export function withPolicyObjects(
  store: PolicyStore,
): PolicyStore & { objects(): readonly AgentAccessPolicy[] } {
  let objects: readonly AgentAccessPolicy[] = [];
  return {
    current: () => store.current(),
    generation: () => store.generation(),
    onChange: (listener) => store.onChange(listener),
    update(policies) {
      const result = store.update(policies);
      if (result.accepted) objects = policies;
      return result;
    },
    objects: () => objects,
  };
}
