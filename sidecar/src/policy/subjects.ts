// Subject matching: any listed user, group or service account; absent `subjects` means everyone.
import type { Rule, Subject } from "./types.ts";

export type SubjectMatcher = (subject: Subject) => boolean;

/** `name` means the policy's namespace; `ns/name` names another namespace. */
export function serviceAccountId(entry: string, policyNamespace: string): string {
  const [ns, name] = entry.includes("/") ? entry.split("/", 2) : [policyNamespace, entry];
  return `system:serviceaccount:${ns}:${name}`;
}

export function compileSubjects(subjects: Rule["subjects"], policyNamespace: string): SubjectMatcher {
  if (!subjects) return () => true;
  const users = new Set(subjects.users ?? []);
  const groups = new Set(subjects.groups ?? []);
  const accounts = new Set((subjects.serviceAccounts ?? []).map((e) => serviceAccountId(e, policyNamespace)));
  if (users.size + groups.size + accounts.size === 0) return () => true;
  return (s) =>
    (s.user !== undefined && users.has(s.user)) ||
    s.groups.some((g) => groups.has(g)) ||
    accounts.has(s.serviceAccount);
}
