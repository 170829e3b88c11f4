// Prometheus metrics of the injector.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export type AdmissionResult = "injected" | "skipped" | "refused" | "ignored" | "error";

export interface InjectorMetrics {
  registry: Registry;
  admissions: Counter<"result">;
  admissionSeconds: Histogram<"result">;
  tlsReloads: Counter<"result">;
  policies: Gauge<"ready">;
  statusWrites: Counter<"result">;
}

export function createInjectorMetrics(opts: { defaultMetrics?: boolean } = {}): InjectorMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false)
    collectDefaultMetrics({ register: registry, prefix: "airlock_injector_process_" });
  return {
    registry,
    admissions: new Counter({
      name: "airlock_injector_admissions_total",
      help: "Admission reviews answered, by result: injected, skipped (opted out, hostNetwork, already injected, system namespace), refused, ignored (not a pod creation), error.",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    admissionSeconds: new Histogram({
      name: "airlock_injector_admission_duration_seconds",
      help: "Time from receiving an AdmissionReview to sending the answer, by result.",
      labelNames: ["result"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    tlsReloads: new Counter({
      name: "airlock_injector_tls_reloads_total",
      help: "Serving certificate (re)loads, by result: success or error (the previous certificate stays).",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    policies: new Gauge({
      name: "airlock_injector_policies",
      help: "AgentAccessPolicies known to the controller, by Ready status.",
      labelNames: ["ready"] as const,
      registers: [registry],
    }),
    statusWrites: new Counter({
      name: "airlock_injector_policy_status_writes_total",
      help: "AgentAccessPolicy status updates, by result: success, conflict (retried) or error.",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
  };
}
