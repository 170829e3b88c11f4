// Fuzz target: the injector's AdmissionReview handler (injector/src/admission.ts), given the body
// the webhook server reads (server.ts: JSON.parse, parseReview, admit), with a real policy that
// selects the pod's labels and references Secrets. Invariants:
//  - A malformed body is refused by SyntaxError or BadReviewError only (the server's 400).
//  - admit never throws: the server would otherwise answer an InternalError naming a TypeError.
//  - Where injection is required, a pod is admitted without injection only in a system namespace
//    or when it carries Airlock's init containers (a forged airlock.dev/status is not enough).
//  - The answer echoes the uid; a refusal carries 403 and a message; an injection's patch is a
//    base64 JSON Patch that applies to the pod as sent, op by op, and gives a pod with the sidecar
//    as an init container, automountServiceAccountToken false, the projected token mounted into
//    the sidecar alone, and the airlock.dev/status annotation, so admitting it again injects
//    nothing more.
import { readFileSync } from "node:fs";
import { applyPatch, type Operation } from "rfc6902";
import { parse } from "yaml";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { admit, BadReviewError, parseReview } from "../../injector/src/admission.ts";
import { defaultConfig } from "../../injector/src/config.ts";
import { staticPolicySource } from "../../injector/src/policies.ts";
import { check, fail } from "./support/invariant.ts";

const example = parse(
  readFileSync(new URL("../../examples/claude-agent.yaml", import.meta.url), "utf8"),
) as AgentAccessPolicy;
const policy: AgentAccessPolicy = { ...example, metadata: { ...example.metadata, namespace: "agents" } };
const deps = { config: defaultConfig({ version: "0.0.0-fuzz" }), policies: staticPolicySource([policy]) };

type Pod = {
  metadata?: { annotations?: Record<string, string> };
  spec?: {
    automountServiceAccountToken?: boolean;
    initContainers?: { name?: string; image?: string; volumeMounts?: { name?: string }[] }[];
    containers?: { name?: string; volumeMounts?: { name?: string }[] }[];
  };
};

export function fuzz(data: Buffer): void {
  let body: unknown;
  try {
    body = JSON.parse(data.toString("utf8"));
  } catch (err) {
    if (err instanceof SyntaxError) return;
    throw err;
  }
  let request: ReturnType<typeof parseReview>;
  try {
    request = parseReview(body);
  } catch (err) {
    if (err instanceof BadReviewError) return;
    throw err;
  }
  const text = data.toString("utf8").slice(0, 4000);
  const required = admit(request, { ...deps, required: true });
  if (required.result === "skipped") {
    const inits = (request.object as Pod).spec?.initContainers ?? [];
    const guarded =
      inits[0]?.name === "airlock-init" &&
      inits[1]?.name === "airlock-sidecar" &&
      [inits[0], inits[1]].every((c) => c.image === deps.config.image);
    const ns =
      request.namespace ||
      (request.object as { metadata?: { namespace?: string } }).metadata?.namespace ||
      "default";
    if (!guarded && !deps.config.systemNamespaces.includes(ns))
      fail("a pod without Airlock's containers is admitted where injection is required", {
        text,
        detail: required.detail,
      });
  }
  const out = admit(request, deps);
  const res = out.review.response;
  check(res?.uid === request.uid && typeof res.allowed === "boolean", "the answer does not echo the uid", {
    text,
    res,
  });
  if (out.result === "refused")
    check(
      res.allowed === false && res.status?.code === 403 && (res.status.message ?? "").length > 0,
      "a refusal without 403 and a message",
      {
        text,
        res,
      },
    );
  if (out.result !== "injected") return;
  check(
    res.allowed && res.patchType === "JSONPatch" && typeof res.patch === "string",
    "an injection without a patch",
    { text, res },
  );
  const patch = JSON.parse(Buffer.from(res.patch ?? "", "base64").toString("utf8")) as Operation[];
  const pod = structuredClone(request.object) as Pod;
  const errors = applyPatch(pod, patch);
  if (errors.some((e) => e !== null))
    fail("the patch does not apply to the pod sent", { text, patch, errors: errors.map(String) });
  const inits = pod.spec?.initContainers ?? [];
  if (!inits.some((c) => c.name === "airlock-sidecar"))
    fail("the injected pod has no sidecar", { text, pod });
  if (pod.spec?.automountServiceAccountToken !== false)
    fail("the injected pod automounts the service-account token", { text, pod });
  for (const c of [...inits, ...(pod.spec?.containers ?? [])])
    if (c.name !== "airlock-sidecar" && (c.volumeMounts ?? []).some((m) => m.name === "airlock-token"))
      fail(`container ${c.name} mounts the sidecar's token`, { text, pod });
  if (!pod.metadata?.annotations?.["airlock.dev/status"])
    fail("the injected pod has no status annotation", { text, pod });
  const again = admit({ ...request, object: pod }, deps);
  if (again.result === "injected") fail("an injected pod is injected again", { text, again: again.review });
}
