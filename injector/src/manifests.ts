// `airlock inject` and the golden tests: YAML manifests in, the same manifests with every pod and
// pod template mutated exactly as the webhook would, out.
import type { V1ObjectMeta, V1Pod, V1PodSpec } from "@kubernetes/client-node";
import { parseAllDocuments, stringify } from "yaml";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { InjectorConfig } from "./config.ts";
import { injectPod } from "./inject.ts";

interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
  spec?: Record<string, unknown>;
  items?: unknown[];
  [k: string]: unknown;
}

interface Template {
  metadata?: V1ObjectMeta;
  spec?: V1PodSpec;
}

const TEMPLATE_KINDS = new Set([
  "Deployment",
  "StatefulSet",
  "DaemonSet",
  "ReplicaSet",
  "ReplicationController",
  "Job",
]);

export class ManifestError extends Error {}

/** One or more objects were refused; `messages` are the admission messages, one per object. */
export class InjectionRefusedError extends Error {
  readonly messages: string[];
  constructor(messages: string[]) {
    super(messages.join("\n"));
    this.messages = messages;
  }
}

export interface InjectManifestOptions {
  config: InjectorConfig;
  /** Policies to consult besides the AgentAccessPolicy documents found in the input. */
  policies?: readonly AgentAccessPolicy[];
  /** Namespace for objects that name none; default "default". */
  namespace?: string;
}

export interface InjectManifestResult {
  yaml: string;
  /** One line per object: what happened to it. */
  notes: string[];
  warnings: string[];
}

/** Parses YAML (several documents allowed) into objects; empty documents are dropped. */
export function parseManifests(text: string, source = "input"): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new ManifestError(`${source}: ${doc.errors[0]?.message ?? "invalid YAML"}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value !== "object" || Array.isArray(value))
      throw new ManifestError(`${source}: a document is not a Kubernetes object`);
    out.push(value as KubeObject);
  }
  return out;
}

function flatten(objects: readonly KubeObject[]): KubeObject[] {
  return objects.flatMap((o) =>
    o.kind === "List" || (o.kind?.endsWith("List") && Array.isArray(o.items))
      ? flatten((o.items ?? []) as KubeObject[])
      : [o],
  );
}

export function isPolicy(o: KubeObject): boolean {
  return o.kind === "AgentAccessPolicy" && (o.apiVersion ?? "").startsWith("airlock.dev/");
}

function templateOf(o: KubeObject): Template | undefined {
  const spec = o.spec as Record<string, unknown> | undefined;
  if (o.kind && TEMPLATE_KINDS.has(o.kind)) return spec?.template as Template | undefined;
  if (o.kind === "CronJob") {
    const job = spec?.jobTemplate as { spec?: { template?: Template } } | undefined;
    return job?.spec?.template;
  }
  return undefined;
}

/**
 * Injects every Pod and pod template in `objects`. Throws {@link InjectionRefusedError} if any is
 * refused (after looking at all of them, so every message is reported).
 */
export function injectObjects(
  objects: readonly KubeObject[],
  opts: InjectManifestOptions,
): { objects: KubeObject[]; notes: string[]; warnings: string[] } {
  const all = flatten(objects);
  const policies = [...(opts.policies ?? []), ...(all.filter(isPolicy) as unknown as AgentAccessPolicy[])];
  const refused: string[] = [];
  const notes: string[] = [];
  const warnings: string[] = [];
  const out = all.map((o) => {
    const namespace = o.metadata?.namespace ?? opts.namespace ?? "default";
    const ctx = {
      config: opts.config,
      namespace,
      policies: policies.filter((p) => (p.metadata?.namespace ?? namespace) === namespace),
    };
    const label = `${o.kind ?? "object"} ${namespace}/${o.metadata?.name ?? o.metadata?.generateName ?? "?"}`;
    let pod: V1Pod | undefined;
    const template = templateOf(o);
    if (o.kind === "Pod" && (o.apiVersion ?? "v1") === "v1") pod = o as V1Pod;
    else if (template) pod = { metadata: template.metadata ?? {}, spec: template.spec };
    if (!pod) {
      notes.push(`${label}: not a pod or workload, unchanged`);
      return o;
    }
    const result = injectPod(pod, ctx);
    if (result.kind === "refused") {
      refused.push(result.message);
      return o;
    }
    if (result.kind === "skipped") {
      notes.push(`${label}: skipped: ${result.reason}`);
      return o;
    }
    notes.push(`${label}: injected`);
    warnings.push(...result.warnings);
    if (o.kind === "Pod") return result.pod as KubeObject;
    const copy = structuredClone(o);
    const t = templateOf(copy);
    if (t) {
      t.metadata = result.pod.metadata ?? {};
      if (result.pod.spec) t.spec = result.pod.spec;
    }
    return copy;
  });
  if (refused.length) throw new InjectionRefusedError(refused);
  return { objects: out, notes, warnings };
}

export function formatManifests(objects: readonly unknown[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join("---\n");
}

export function injectManifests(text: string, opts: InjectManifestOptions): InjectManifestResult {
  const { objects, notes, warnings } = injectObjects(parseManifests(text), opts);
  return { yaml: formatManifests(objects), notes, warnings };
}
