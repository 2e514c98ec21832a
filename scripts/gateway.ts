// The Gateway API release pinned in gateway/go.mod: where its module and its conformance module sit in
// Go's module cache (downloaded on first use), and the CRD files of a release channel.
//   node scripts/gateway.ts crds [standard|experimental]   print the CRD files, one path a line
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { goMissing, root } from './kube.ts';

export const gatewayModule = join(root, 'gateway');
export const GATEWAY_API = 'sigs.k8s.io/gateway-api';
export const GATEWAY_CONFORMANCE = 'sigs.k8s.io/gateway-api/conformance';

const dirs = new Map<string, string>();

/** The folder of a module gateway/go.mod requires, in Go's module cache (downloaded when missing). */
export function moduleDir(path: string): string {
  const known = dirs.get(path);
  if (known !== undefined) return known;
  const missing = goMissing();
  if (missing) throw new Error(missing.replace('the Kubernetes control plane is', 'the Gateway API CRDs and conformance cases are'));
  execFileSync('go', ['mod', 'download', path], { cwd: gatewayModule, stdio: ['ignore', 'ignore', 'pipe'] });
  const dir = execFileSync('go', ['list', '-m', '-f', '{{.Dir}}', path], { cwd: gatewayModule, encoding: 'utf8' }).trim();
  if (dir === '') throw new Error(`go list found no folder for ${path} (gateway/go.mod)`);
  dirs.set(path, dir);
  return dir;
}

export type CrdChannel = 'standard' | 'experimental';

/** The CRD files of one channel (config/crd/<channel>/*.yaml), sorted; the ValidatingAdmissionPolicy file is left out. */
export function crdFiles(channel: CrdChannel = 'experimental'): string[] {
  const dir = join(moduleDir(GATEWAY_API), 'config', 'crd', channel);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !f.includes('_vap_'))
    .sort()
    .map((f) => join(dir, f));
}

if (import.meta.main) {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'crds' && (arg === undefined || arg === 'standard' || arg === 'experimental')) {
    for (const f of crdFiles(arg ?? 'experimental')) process.stdout.write(`${f}\n`);
  } else {
    process.stderr.write('usage: node scripts/gateway.ts crds [standard|experimental]\n');
    process.exitCode = 2;
  }
}
