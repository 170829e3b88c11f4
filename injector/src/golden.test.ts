// Golden tests: injector/testdata/<case>.yaml → <case>.yaml.injected, discovered automatically.
// AIRLOCK_UPDATE_GOLDEN=1 rewrites the expected files. Each case is also injected a second time
// to prove idempotency (an injected pod comes back unchanged), and for pods the JSON patch the
// webhook would answer must turn the input into exactly the golden output.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { V1Pod } from "@kubernetes/client-node";
import { applyPatch, type Patch } from "rfc6902";
import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { admit } from "./admission.ts";
import { defaultConfig } from "./config.ts";
import { InjectionRefusedError, injectManifests, isPolicy, parseManifests } from "./manifests.ts";
import { staticPolicySource } from "./policies.ts";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "testdata");
const UPDATE = process.env.AIRLOCK_UPDATE_GOLDEN === "1";
const config = defaultConfig({ version: "0.0.0-golden", image: "ghcr.io/airlock-dev/airlock:golden" });

function render(input: string): string {
  try {
    return injectManifests(input, { config, namespace: "agents" }).yaml;
  } catch (err) {
    if (err instanceof InjectionRefusedError) return `# refused\n${err.messages.join("\n")}\n`;
    throw err;
  }
}

const cases = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("golden injection", () => {
  it("has cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(15);
  });

  for (const file of cases) {
    it(file, () => {
      const input = readFileSync(join(DIR, file), "utf8");
      const out = render(input);
      const goldenPath = join(DIR, `${file}.injected`);
      if (UPDATE || !existsSync(goldenPath)) writeFileSync(goldenPath, out);
      expect(out).toBe(readFileSync(goldenPath, "utf8"));

      if (out.startsWith("# refused")) return;
      // Idempotent: injecting the output again changes nothing.
      expect(render(out)).toBe(out);

      // The webhook's JSON patch turns each input pod into the golden pod.
      const docs = parseManifests(input);
      const policies = docs.filter(isPolicy) as unknown as AgentAccessPolicy[];
      const expected = parseManifests(out);
      docs.forEach((doc, i) => {
        if (doc.kind !== "Pod") return;
        const outcome = admit(
          {
            uid: `golden-${i}`,
            kind: { group: "", version: "v1", kind: "Pod" },
            resource: { group: "", version: "v1", resource: "pods" },
            operation: "CREATE",
            namespace: doc.metadata?.namespace ?? "agents",
            object: doc,
          },
          { config, policies: staticPolicySource(policies) },
        );
        const response = outcome.review.response;
        expect(response?.allowed).toBe(true);
        const patch = response?.patch
          ? (JSON.parse(Buffer.from(response.patch, "base64").toString("utf8")) as Patch)
          : [];
        // Applied to the JSON the API server would hold (applyPatch works in place).
        const pod = JSON.parse(JSON.stringify(doc)) as V1Pod;
        expect(applyPatch(pod, patch)).toEqual(patch.map(() => null));
        expect(pod).toEqual(expected[i]);
      });
    });
  }
});
