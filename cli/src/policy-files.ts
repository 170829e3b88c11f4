// Policy files as the CLI's offline commands read them: compiled with the sidecar's own compiler,
// with problems and unknown connection names turned into usage errors that say what to fix.
import type { CompiledConnection, PolicySet } from "../../sidecar/src/policy/compile.ts";
import { compilePolicies } from "../../sidecar/src/policy/compile.ts";
import { readPolicyFiles } from "../../sidecar/src/sources/files.ts";
import { UsageError } from "./command.ts";

export async function loadConnection(
  files: readonly string[],
  name: string,
): Promise<{ set: PolicySet; connection: CompiledConnection }> {
  const { set, problems } = compilePolicies(await readPolicyFiles(files));
  if (problems.length) {
    throw new UsageError(
      `invalid policy:\n${problems.map((p) => `  ${p.policy}: ${p.path}: ${p.message}`).join("\n")}`,
    );
  }
  const connection = set.connections.get(name);
  if (!connection) {
    throw new UsageError(
      `unknown connection ${name}; the policies define: ${[...set.connections.keys()].join(", ") || "none"}`,
    );
  }
  return { set, connection };
}
