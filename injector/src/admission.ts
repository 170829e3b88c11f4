// AdmissionReview v1 in, AdmissionReview v1 out: decides, injects, and answers a JSON patch.
// No HTTP here (server.ts), no Kubernetes client (the policies come from a PolicySource).
import type { V1Pod } from "@kubernetes/client-node";
import type { InjectorConfig } from "./config.ts";
import { injectPod, podDisplayName } from "./inject.ts";
import type { AdmissionResult } from "./metrics.ts";
import { podPatch } from "./patch.ts";
import { podShapeProblems } from "./pod-shape.ts";
import type { PolicySource } from "./policies.ts";

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { group?: string; version?: string; resource?: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: string;
  object?: unknown;
  dryRun?: boolean;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: "JSONPatch";
  /** base64 of the JSON patch */
  patch?: string;
  warnings?: string[];
  status?: { code: number; reason?: string; message: string };
}

export interface AdmissionReview {
  apiVersion: "admission.k8s.io/v1";
  kind: "AdmissionReview";
  request?: AdmissionRequest;
  response?: AdmissionResponse;
}

export interface AdmissionOutcome {
  review: AdmissionReview;
  result: AdmissionResult;
  /** One line for the log. */
  detail: string;
}

export class BadReviewError extends Error {}

/** Kubernetes shows at most this many characters of a warning. */
const MAX_WARNING = 256;

export function parseReview(body: unknown): AdmissionRequest {
  const review = body as Partial<AdmissionReview> | null;
  if (typeof review !== "object" || review === null) throw new BadReviewError("body is not a JSON object");
  if (review.kind !== "AdmissionReview" || review.apiVersion !== "admission.k8s.io/v1")
    throw new BadReviewError("expected apiVersion admission.k8s.io/v1, kind AdmissionReview");
  const req = review.request;
  if (typeof req !== "object" || req === null || typeof req.uid !== "string" || req.uid === "")
    throw new BadReviewError("request.uid is missing");
  return req;
}

function answer(response: AdmissionResponse): AdmissionReview {
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response };
}

export function admit(
  req: AdmissionRequest,
  deps: {
    config: InjectorConfig;
    policies: PolicySource;
    /** The namespace requires injection (airlock.dev/inject=required): refuse what cannot be injected. */
    required?: boolean;
  },
): AdmissionOutcome {
  const isPodCreate =
    (req.kind?.kind ?? "") === "Pod" &&
    (req.kind?.group ?? "") === "" &&
    (req.resource?.resource ?? "pods") === "pods" &&
    !req.subResource &&
    req.operation === "CREATE";
  if (!isPodCreate || typeof req.object !== "object" || req.object === null) {
    return {
      review: answer({ uid: req.uid, allowed: true }),
      result: "ignored",
      detail: `not a pod creation: ${req.operation ?? "?"} ${req.kind?.kind ?? "?"}${req.subResource ? `/${req.subResource}` : ""}`,
    };
  }
  const shape = podShapeProblems(req.object);
  if (shape.length > 0) {
    // Fail closed: the decisions below compare these fields, a value of another type must not pass.
    const message = `airlock: refusing a pod in namespace ${req.namespace || "?"} whose fields cannot be read: ${shape.slice(0, 10).join("; ")}`;
    return {
      review: answer({ uid: req.uid, allowed: false, status: { code: 403, reason: "Forbidden", message } }),
      result: "refused",
      detail: message,
    };
  }
  const pod = req.object as V1Pod;
  const namespace = req.namespace || pod.metadata?.namespace || "default";
  const outcome = injectPod(pod, {
    config: deps.config,
    namespace,
    policies: deps.policies.policies(namespace),
    required: deps.required ?? false,
  });
  const who = `${namespace}/${podDisplayName(pod)}`;
  switch (outcome.kind) {
    case "skipped":
      return {
        review: answer({ uid: req.uid, allowed: true }),
        result: "skipped",
        detail: `${who}: ${outcome.reason}`,
      };
    case "refused":
      return {
        review: answer({
          uid: req.uid,
          allowed: false,
          status: { code: 403, reason: "Forbidden", message: outcome.message },
        }),
        result: "refused",
        detail: outcome.message,
      };
    case "injected": {
      const patch = podPatch(pod, outcome.pod);
      const response: AdmissionResponse = {
        uid: req.uid,
        allowed: true,
        patchType: "JSONPatch",
        patch: Buffer.from(JSON.stringify(patch)).toString("base64"),
      };
      if (outcome.warnings.length) response.warnings = outcome.warnings.map((w) => w.slice(0, MAX_WARNING));
      return {
        review: answer(response),
        result: "injected",
        detail: `${who}: injected (${patch.length} patch operations; secrets: ${outcome.status.secrets.join(",") || "none"})`,
      };
    }
  }
}

/** The answer for a request the injector failed on: refuse, so that failurePolicy semantics hold. */
export function errorReview(uid: string, message: string): AdmissionReview {
  return answer({ uid, allowed: false, status: { code: 500, reason: "InternalError", message } });
}
