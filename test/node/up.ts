// Starts the test node and keeps it up until Ctrl-C, for poking at it by hand:
//   bash scripts/with-node.sh node test/node/up.ts
// then use the printed KUBECONFIG with the cached kubectl.
import { nodeProblem, startNode } from "./node.ts";

const problem = nodeProblem();
if (problem) {
  process.stderr.write(`no node on this machine: ${problem}\n`);
  process.exit(77);
}
const keepAlive = setInterval(() => {}, 1 << 30);
const node = await startNode();
process.stdout.write(
  `KUBECONFIG=${node.cluster.kubeconfigPath} ${node.cluster.kubectlPath} get nodes\n` +
    `logs: ${node.workDir}\nCtrl-C stops the node.\n`,
);
const stop = () => {
  void node.stop().then(() => process.exit(0));
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
void keepAlive;
