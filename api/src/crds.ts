// Builds the CustomResourceDefinition objects from the schemas. `npm run generate` writes them
// to crds/; a test fails when the checked-in YAML drifts from this.
import type { TSchema } from "@sinclair/typebox";
import { AccessRequestSpec, AccessRequestStatus } from "./access-request.ts";
import { AgentAccessPolicySpec, AgentAccessPolicyStatus } from "./agent-access-policy.ts";
import { GROUP, VERSION } from "./names.ts";

interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "date" | "boolean" | "number";
  jsonPath: string;
  description: string;
  priority?: number;
}

interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: TSchema;
  status: TSchema;
  columns: PrinterColumn[];
  /** Refuse unknown spec fields instead of pruning them (see closeObjects). */
  closedSpec?: boolean;
}

/** TypeBox marks schemas with symbol keys; a JSON round trip leaves only what Kubernetes reads. */
const plain = (schema: TSchema): Record<string, unknown> => JSON.parse(JSON.stringify(schema));

type SchemaNode = Record<string, unknown>;

/**
 * Makes every object with declared properties refuse keys it does not declare. The API server
 * prunes unknown fields of a structural schema silently (`kubectl apply --validate=false`, clients
 * that send no fieldValidation), so a typo (`method:` for `methods:`) would be stored without the
 * key and the rule would match more than its author meant. Preserving unknown fields keeps the
 * typo in the request, and the CEL rule (which iterates the object's actual keys through dyn())
 * refuses it, however the object is written. maxProperties bounds the rule's estimated cost.
 */
export function closeObjects(node: SchemaNode): SchemaNode {
  const out: SchemaNode = { ...node };
  const props = node.properties as Record<string, SchemaNode> | undefined;
  if (props) {
    out.properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, closeObjects(v)]));
    const known = Object.keys(props);
    const list = known.map((k) => `'${k}'`).join(", ");
    out["x-kubernetes-preserve-unknown-fields"] = true;
    out.maxProperties = known.length;
    out["x-kubernetes-validations"] = [
      {
        rule: `dyn(self).all(k, k in [${list}])`,
        message: `unknown field (misspelled?); the fields here are: ${known.join(", ")}`,
        reason: "FieldValueInvalid",
      },
      ...((node["x-kubernetes-validations"] as unknown[] | undefined) ?? []),
    ];
  }
  if (node.items) out.items = closeObjects(node.items as SchemaNode);
  return out;
}

function crd(def: KindDefinition): Record<string, unknown> {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${def.plural}.${GROUP}`,
      labels: { "app.kubernetes.io/name": "airlock", "app.kubernetes.io/part-of": "airlock" },
    },
    spec: {
      group: GROUP,
      scope: "Namespaced",
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: ["airlock"],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            ...def.columns,
            {
              name: "Age",
              type: "date",
              jsonPath: ".metadata.creationTimestamp",
              description: "Time since creation.",
            },
          ],
          schema: {
            openAPIV3Schema: {
              type: "object",
              description: def.description,
              required: ["spec"],
              properties: {
                apiVersion: {
                  type: "string",
                  description: "APIVersion of this object: airlock.dev/v1alpha1.",
                },
                kind: { type: "string", description: `Kind of this object: ${def.kind}.` },
                metadata: { type: "object" },
                spec: def.closedSpec ? closeObjects(plain(def.spec)) : plain(def.spec),
                status: plain(def.status),
              },
            },
          },
        },
      ],
    },
  };
}

export const agentAccessPolicyCrd = crd({
  kind: "AgentAccessPolicy",
  plural: "agentaccesspolicies",
  singular: "agentaccesspolicy",
  shortNames: ["aap"],
  description:
    "AgentAccessPolicy says what AI agents in the selected pods may do through the Airlock sidecar: which upstream connections exist, which operations are allowed, denied or need a human's approval, and what is masked in responses.",
  spec: AgentAccessPolicySpec,
  status: AgentAccessPolicyStatus,
  closedSpec: true,
  columns: [
    // Server-side printing shows only the first match of a [*] path, so the controller writes
    // the joined names and the count into status for these two columns.
    {
      name: "Connections",
      type: "string",
      jsonPath: ".status.connections",
      description: "Connection names.",
    },
    { name: "Rules", type: "integer", jsonPath: ".status.rules", description: "Number of rules." },
    {
      name: "Ready",
      type: "string",
      jsonPath: '.status.conditions[?(@.type=="Ready")].status',
      description: "Whether the policy is usable.",
    },
    {
      name: "Reason",
      type: "string",
      jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
      description: "Why it is or is not ready.",
      priority: 1,
    },
  ],
});

export const accessRequestCrd = crd({
  kind: "AccessRequest",
  plural: "accessrequests",
  singular: "accessrequest",
  shortNames: ["areq"],
  description:
    "AccessRequest is an agent operation paused by a requireApproval rule. The sidecar creates it; approvers approve or deny it with `kubectl airlock`; the API server vouches for who decided.",
  spec: AccessRequestSpec,
  status: AccessRequestStatus,
  columns: [
    {
      name: "Phase",
      type: "string",
      jsonPath: ".status.phase",
      description: "Pending, Approved, Denied or Expired.",
    },
    {
      name: "Requester",
      type: "string",
      jsonPath: ".spec.requester.user",
      description: "End user the agent acts for.",
    },
    { name: "Connection", type: "string", jsonPath: ".spec.connection", description: "Target connection." },
    {
      name: "Operation",
      type: "string",
      jsonPath: ".spec.operation.summary",
      description: "The operation, masked.",
    },
    {
      name: "Agent",
      type: "string",
      jsonPath: ".spec.requester.serviceAccount",
      description: "Agent service account.",
      priority: 1,
    },
  ],
});

export const crds = [agentAccessPolicyCrd, accessRequestCrd] as const;
