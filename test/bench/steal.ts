// CPU steal over a bench run: on a virtual machine the hypervisor can take a share of the vCPUs
// for other tenants, and then every path slows down unevenly (the proxies' CPU per request more
// than the kernel's). Reported with the tables so a noisy run is not mistaken for a regression.
import { readFileSync } from "node:fs";

/** Above this share of CPU time stolen, ratios between paths are not to be trusted. */
export const STEAL_WARN_PCT = 2;

function cpuTimes(): { total: number; steal: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { total, steal: f[7] ?? 0 };
  } catch {
    return undefined; // not Linux
  }
}

/** Starts measuring; `stop()` gives the stolen share of all CPU time since, in percent. */
export function stealMeter(): { stop(): number | undefined } {
  const start = cpuTimes();
  return {
    stop() {
      const end = cpuTimes();
      if (!start || !end || end.total === start.total) return undefined;
      return (100 * (end.steal - start.steal)) / (end.total - start.total);
    },
  };
}

/** One line for the report. */
export function stealLine(pct: number | undefined): string {
  if (pct === undefined) return "CPU steal: unknown (no /proc/stat).";
  const text = `CPU steal during the run: ${pct.toFixed(1)} % of CPU time taken by the hypervisor.`;
  return pct > STEAL_WARN_PCT
    ? `${text} Above ${STEAL_WARN_PCT} %: paths slow down unevenly and the ratios are not reliable; rerun on a quiet machine.`
    : text;
}
