// The shape of the pod an AdmissionReview carries, checked before the injector reads it. The API
// server sends a typed Pod, but the webhook's decisions compare these fields (runAsUser against
// the proxy UID, hostNetwork, capabilities...): a value of another type must refuse the pod with
// the field named, never crash the handler or compare unequal and let the pod through.

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

type Check = (v: unknown) => boolean;
const str: Check = (v) => typeof v === "string";
const bool: Check = (v) => typeof v === "boolean";
const int: Check = (v) => Number.isSafeInteger(v);
const strMap: Check = (v) => isObj(v) && Object.values(v).every(str);
const listOf =
  (item: Check): Check =>
  (v) =>
    Array.isArray(v) && v.every(item);

const TYPE_NAMES = new Map<Check, string>([
  [str, "a string"],
  [bool, "true or false"],
  [int, "an integer"],
  [strMap, "a map of strings"],
]);

class Shape {
  readonly problems: string[] = [];

  /** The optional field `key` of `obj` holds what `ok` accepts (null counts as absent). */
  field(obj: Obj, path: string, key: string, ok: Check, what = TYPE_NAMES.get(ok) ?? "valid"): void {
    const v = obj[key];
    if (v !== undefined && v !== null && !ok(v)) this.problems.push(`${path}${key} must be ${what}`);
  }

  /** The optional object at `obj[key]`, or undefined (a problem when it is something else). */
  object(obj: Obj, path: string, key: string): Obj | undefined {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (isObj(v)) return v;
    this.problems.push(`${path}${key} must be an object`);
    return undefined;
  }

  /** The optional list of objects at `obj[key]`; each element is handed to `each`. */
  objects(obj: Obj, path: string, key: string, each: (item: Obj, path: string) => void): void {
    const v = obj[key];
    if (v === undefined || v === null) return;
    if (!Array.isArray(v)) {
      this.problems.push(`${path}${key} must be a list`);
      return;
    }
    v.forEach((item, i) => {
      const at = `${path}${key}[${i}]`;
      if (isObj(item)) each(item, `${at}.`);
      else this.problems.push(`${at} must be an object`);
    });
  }
}

function container(s: Shape, c: Obj, path: string): void {
  if (!str(c.name)) s.problems.push(`${path}name must be a string`);
  const sc = s.object(c, path, "securityContext");
  if (sc) {
    const at = `${path}securityContext.`;
    s.field(sc, at, "runAsUser", int);
    s.field(sc, at, "runAsGroup", int);
    s.field(sc, at, "privileged", bool);
    s.field(sc, at, "allowPrivilegeEscalation", bool);
    const caps = s.object(sc, at, "capabilities");
    if (caps) {
      s.field(caps, `${at}capabilities.`, "add", listOf(str), "a list of strings");
      s.field(caps, `${at}capabilities.`, "drop", listOf(str), "a list of strings");
    }
  }
  s.objects(c, path, "env", (e, at) => {
    if (!str(e.name)) s.problems.push(`${at}name must be a string`);
  });
  s.objects(c, path, "volumeMounts", (m, at) => {
    if (!str(m.name)) s.problems.push(`${at}name must be a string`);
  });
}

/**
 * What is wrong with the shape of the fields of `pod` the injector reads, one sentence each
 * (empty when it can be read). A pod needs spec.containers with at least one container.
 */
export function podShapeProblems(pod: unknown): string[] {
  const s = new Shape();
  if (!isObj(pod)) return ["the object is not a pod"];
  const metadata = s.object(pod, "", "metadata");
  if (metadata) {
    for (const key of ["name", "generateName", "namespace"]) s.field(metadata, "metadata.", key, str);
    s.field(metadata, "metadata.", "labels", strMap);
    s.field(metadata, "metadata.", "annotations", strMap);
  }
  const spec = s.object(pod, "", "spec");
  if (!spec) return [...s.problems, "spec.containers is required"];
  for (const key of ["hostNetwork", "hostPID", "shareProcessNamespace", "automountServiceAccountToken"])
    s.field(spec, "spec.", key, bool);
  s.field(spec, "spec.", "serviceAccountName", str);
  s.field(spec, "spec.", "serviceAccount", str);
  const psc = s.object(spec, "spec.", "securityContext");
  if (psc) {
    s.field(psc, "spec.securityContext.", "runAsUser", int);
    s.field(psc, "spec.securityContext.", "runAsGroup", int);
    s.field(psc, "spec.securityContext.", "fsGroup", int);
    s.field(psc, "spec.securityContext.", "supplementalGroups", listOf(int), "a list of integers");
  }
  s.objects(spec, "spec.", "volumes", (v, at) => {
    if (!str(v.name)) s.problems.push(`${at}name must be a string`);
    const secret = s.object(v, at, "secret");
    if (secret) s.field(secret, `${at}secret.`, "secretName", str);
    const projected = s.object(v, at, "projected");
    if (projected) s.objects(projected, `${at}projected.`, "sources", () => {});
  });
  s.objects(spec, "spec.", "initContainers", (c, at) => container(s, c, at));
  if (!Array.isArray(spec.containers) || spec.containers.length === 0)
    s.problems.push("spec.containers must list at least one container");
  else s.objects(spec, "spec.", "containers", (c, at) => container(s, c, at));
  return s.problems;
}
