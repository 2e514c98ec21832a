// The Gateway API CRDs the chart installs with gatewayAPI.installCRDs: copied from the release gateway/go.mod
// pins (Go's module cache, found by scripts/gateway.ts; the experimental channel) into
// charts/shoal/gateway-api-crds/, which git ignores, so a packaged chart carries them and the repository
// holds no copy of them. The template (templates/gatewayApiCrds.yaml) reads them with .Files.Glob.
//   node charts/gatewayCrds.ts                 copy them into charts/shoal/gateway-api-crds/ (replacing what is there)
//   node charts/gatewayCrds.ts package [DIR]   copy them, then `helm package charts/shoal -d DIR` (default: .)
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { crdFiles } from '../scripts/gateway.ts';
import { ensureHelm } from '../scripts/kube.ts';

export const chartDir = join(import.meta.dirname, 'shoal');
/** The chart's folder for the CRDs (relative to the chart). */
export const CRD_FOLDER = 'gateway-api-crds';

/** Copies the pinned release's experimental CRDs into CHART/gateway-api-crds/ (emptied first); their paths there. */
export function copyGatewayCrds(chart: string = chartDir): string[] {
  const out = join(chart, CRD_FOLDER);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  return crdFiles('experimental').map((f) => {
    const to = join(out, basename(f));
    copyFileSync(f, to);
    chmodSync(to, 0o644); // Go's module cache is read-only
    return to;
  });
}

if (import.meta.main) {
  const [command, dir] = process.argv.slice(2);
  if (command !== undefined && command !== 'package') {
    process.stderr.write('usage: node charts/gatewayCrds.ts [package [DIR]]\n');
    process.exit(2);
  }
  try {
    const files = copyGatewayCrds();
    process.stderr.write(`copied ${files.length} Gateway API CRDs into ${join(chartDir, CRD_FOLDER)}\n`);
    if (command === 'package') {
      const helm = await ensureHelm();
      const r = spawnSync(helm, ['package', chartDir, '-d', resolve(dir ?? '.')], { stdio: 'inherit' });
      process.exit(r.status ?? 1);
    }
  } catch (err) {
    process.stderr.write(`gatewayCrds: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
