// The MutatingWebhookConfiguration that sends pod creations to the injector. Two webhooks, as
// Istio does: one for namespaces labelled airlock.dev/inject=enabled (pods may opt out with the
// pod label "false"), one for pods labelled airlock.dev/inject=true in namespaces without the
// label; and a third for namespaces labelled airlock.dev/inject=required, which sees every pod
// (no objectSelector, so an opt-out label cannot route around it) on its own path, where the
// injector refuses what it cannot protect. System namespaces are excluded by name. The chart
// renders the same object.
import type {
  V1LabelSelector,
  V1LabelSelectorRequirement,
  V1MutatingWebhookConfiguration,
  AdmissionregistrationV1WebhookClientConfig as V1WebhookClientConfig,
} from "@kubernetes/client-node";
import {
  LABEL_INJECT,
  NAMESPACE_INJECT_ENABLED,
  NAMESPACE_INJECT_REQUIRED,
  SYSTEM_NAMESPACES,
} from "./names.ts";

export const WEBHOOK_PATH = "/inject";
/** Where namespaces with airlock.dev/inject=required are admitted: injection is mandatory there. */
export const REQUIRED_WEBHOOK_PATH = "/inject-required";

export interface WebhookConfigOptions {
  name: string;
  /** Either a URL (tests, out-of-cluster) or a Service. */
  url?: string;
  service?: { namespace: string; name: string; port?: number };
  /** PEM; may be empty in bootstrap mode, where the injector fills it in. */
  caBundlePem?: string;
  failurePolicy?: "Fail" | "Ignore";
  timeoutSeconds?: number;
  /** Extra namespace requirements (tests scope the webhook to their own namespaces). */
  extraNamespaceSelector?: V1LabelSelectorRequirement[];
  systemNamespaces?: readonly string[];
}

export function webhookConfiguration(opts: WebhookConfigOptions): V1MutatingWebhookConfiguration {
  const clientConfig: V1WebhookClientConfig = {};
  if (opts.url) clientConfig.url = opts.url;
  else if (opts.service)
    clientConfig.service = {
      namespace: opts.service.namespace,
      name: opts.service.name,
      path: WEBHOOK_PATH,
      port: opts.service.port ?? 443,
    };
  else throw new Error("webhookConfiguration: give url or service");
  if (opts.caBundlePem) clientConfig.caBundle = Buffer.from(opts.caBundlePem).toString("base64");
  const notSystem: V1LabelSelectorRequirement = {
    key: "kubernetes.io/metadata.name",
    operator: "NotIn",
    values: [...(opts.systemNamespaces ?? SYSTEM_NAMESPACES)],
  };
  const extra = opts.extraNamespaceSelector ?? [];
  const requiredClientConfig: V1WebhookClientConfig = structuredClone(clientConfig);
  if (requiredClientConfig.url) {
    const u = new URL(requiredClientConfig.url);
    u.pathname = u.pathname.endsWith(WEBHOOK_PATH)
      ? `${u.pathname.slice(0, -WEBHOOK_PATH.length)}${REQUIRED_WEBHOOK_PATH}`
      : REQUIRED_WEBHOOK_PATH;
    requiredClientConfig.url = u.toString();
  }
  if (requiredClientConfig.service) requiredClientConfig.service.path = REQUIRED_WEBHOOK_PATH;
  const common = {
    admissionReviewVersions: ["v1"],
    clientConfig,
    failurePolicy: opts.failurePolicy ?? "Fail",
    matchPolicy: "Equivalent",
    reinvocationPolicy: "IfNeeded",
    rules: [
      {
        apiGroups: [""],
        apiVersions: ["v1"],
        operations: ["CREATE"],
        resources: ["pods"],
        scope: "Namespaced",
      },
    ],
    sideEffects: "None",
    timeoutSeconds: opts.timeoutSeconds ?? 10,
  };
  const nsSelector = (reqs: V1LabelSelectorRequirement[]): V1LabelSelector => ({
    matchExpressions: [...reqs, notSystem, ...extra],
  });
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: opts.name, labels: { "app.kubernetes.io/part-of": "airlock" } },
    webhooks: [
      {
        ...common,
        name: "namespace.inject.airlock.dev",
        namespaceSelector: nsSelector([
          { key: LABEL_INJECT, operator: "In", values: [NAMESPACE_INJECT_ENABLED] },
        ]),
        objectSelector: { matchExpressions: [{ key: LABEL_INJECT, operator: "NotIn", values: ["false"] }] },
      },
      {
        ...common,
        name: "object.inject.airlock.dev",
        namespaceSelector: nsSelector([{ key: LABEL_INJECT, operator: "DoesNotExist" }]),
        objectSelector: { matchExpressions: [{ key: LABEL_INJECT, operator: "In", values: ["true"] }] },
      },
      {
        ...common,
        clientConfig: requiredClientConfig,
        name: "required.inject.airlock.dev",
        namespaceSelector: nsSelector([
          { key: LABEL_INJECT, operator: "In", values: [NAMESPACE_INJECT_REQUIRED] },
        ]),
      },
    ],
  };
}
