// Helm as kube/helm/go.mod pins it (helm.sh/helm/v4, built from its Go module the first time):
//   npm run -s helm -- ARGS      e.g. npm run -s helm -- template charts/shoal | kubectl apply --dry-run=server -f -
// (-s keeps npm's own banner off stdout when the output is piped.) Build messages go to stderr.
import { spawn } from 'node:child_process';
import { ensureHelm } from './kube.ts';

if (import.meta.main) {
  let helm: string;
  try {
    helm = await ensureHelm();
  } catch (err) {
    process.stderr.write(`helm: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const child = spawn(helm, process.argv.slice(2), { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  child.on('close', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}
