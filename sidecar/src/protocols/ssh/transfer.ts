// Exec commands that carry a file-transfer protocol rather than text: the remote ends of `scp`
// (legacy protocol, `scp -O`), `rsync` and `sftp-server`. Their stdout is framed binary: masking
// it would break the protocol (a rewritten value changes lengths and checksums), so the channel
// either relays bytes untouched or is refused (channels.ts decides which).
import type { CommandAnalysis } from "../../shell/command.ts";

export type TransferProtocol = "scp" | "rsync" | "sftp";

const base = (path: string) => path.slice(path.lastIndexOf("/") + 1);

/** The protocol a judged command line speaks, when it is one simple command of a transfer tool. */
export function transferProtocol(analysis: CommandAnalysis): TransferProtocol | undefined {
  if (!analysis.ok || analysis.parts.length !== 1) return undefined;
  const argv = analysis.parts[0]?.argv ?? [];
  const name = base(argv[0] ?? "");
  const args = argv.slice(1);
  if (name === "scp" && args.some((a) => /^-[a-zA-Z]*[tf]/.test(a))) return "scp";
  if (name === "rsync" && args.includes("--server")) return "rsync";
  if (name === "sftp-server") return "sftp";
  return undefined;
}
