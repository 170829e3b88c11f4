// Standalone policy source: AgentAccessPolicy YAML files (multi-document allowed), reloaded when
// they change. A file that no longer parses leaves the last good policy set in force.
import { watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { Logger } from "pino";
import { parseAllDocuments } from "yaml";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import type { PolicyStore } from "../runtime/policy-store.ts";
import type { Metrics } from "../telemetry/metrics.ts";

export class PolicyFileError extends Error {}

/** Reads policy documents from files; throws PolicyFileError naming the file and line on bad YAML. */
export async function readPolicyFiles(files: readonly string[]): Promise<AgentAccessPolicy[]> {
  const out: AgentAccessPolicy[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      throw new PolicyFileError(`cannot read policy file ${file}: ${(e as Error).message}`);
    }
    out.push(...parsePolicyDocuments(text, file));
  }
  return out;
}

/**
 * The AgentAccessPolicy documents of one file's text (empty documents skipped); throws
 * PolicyFileError naming `file` on bad YAML or another kind. Shapes are not checked here:
 * compilePolicies validates each policy.
 */
export function parsePolicyDocuments(text: string, file: string): AgentAccessPolicy[] {
  const out: AgentAccessPolicy[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) {
      const err = doc.errors[0];
      throw new PolicyFileError(`${file}: ${err?.message ?? "invalid YAML"}`);
    }
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (e) {
      // An alias to no anchor, or past the alias limit (a billion-laughs document): yaml throws
      // its own ReferenceError, which would not name the file.
      throw new PolicyFileError(`${file}: ${(e as Error).message}`);
    }
    if (value === null || value === undefined) continue;
    const obj = value as Partial<AgentAccessPolicy>;
    if (obj.kind !== "AgentAccessPolicy") {
      throw new PolicyFileError(
        `${file}: expected kind AgentAccessPolicy, found ${JSON.stringify(obj.kind ?? null)}`,
      );
    }
    obj.metadata = { namespace: "default", ...obj.metadata };
    out.push(obj as AgentAccessPolicy);
  }
  return out;
}

export async function startFileSource(opts: {
  files: readonly string[];
  store: PolicyStore;
  logger: Logger;
  metrics?: Metrics;
  watch?: boolean;
}): Promise<{ close(): void; reload(): Promise<void> }> {
  const reload = async () => {
    try {
      opts.store.update(await readPolicyFiles(opts.files));
    } catch (e) {
      opts.metrics?.policyReloads.inc({ result: "error" });
      opts.logger.error(
        { err: (e as Error).message },
        "policy files not loaded; keeping the last good policy set",
      );
    }
  };
  // The first load must succeed whole: starting with no policy, or with a policy left out for a
  // problem (a typo the author believes is enforced), is a misconfiguration, not a state.
  const { problems } = opts.store.update(await readPolicyFiles(opts.files));
  if (problems.length)
    throw new PolicyFileError(
      `invalid policy in ${opts.files.join(", ")}:\n${problems.map((p) => `  ${p.policy}: ${p.path}: ${p.message}`).join("\n")}`,
    );
  // The directories are watched, not the files: editors, `sed -i` and Kubernetes ConfigMap
  // updates replace a file by renaming another over it (a ConfigMap swaps its `..data` symlink),
  // and a watch on the file would follow the old inode and miss every later change. Any event in
  // a directory reloads (debounced); an unchanged set is a no-op for the store.
  const watchers =
    opts.watch === false
      ? []
      : [...new Set(opts.files.map((f) => dirname(resolve(f))))].map((d) =>
          watch(d, { persistent: false }, () => void debounced()),
        );
  let timer: NodeJS.Timeout | undefined;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void reload(), 100);
  };
  return {
    reload,
    close() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
