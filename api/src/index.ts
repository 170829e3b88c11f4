export * from "./access-request.ts";
export * from "./agent-access-policy.ts";
export { accessRequestCrd, agentAccessPolicyCrd, crds } from "./crds.ts";
export * from "./duration.ts";
export * from "./names.ts";
export * from "./objects.ts";
