// Where a process's time went, from a V8 CPU profile (node --cpu-prof): self time by function and
// by file, the top entries. Used to explain a missed benchmark target.
//   npx node bench/cpuProfileSummary.ts FILE.cpuprofile [--top 25]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time of the busy samples (idle excluded: a sidecar waits for work most of a mixed run). */
export function summarize(
  profile: Profile,
  top = 25,
): { totalMs: number; idleMs: number; byFunction: [string, number][]; byFile: [string, number][] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++)
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const url = n.callFrame.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
    const where = url || '(native: bindings, V8, GC)';
    const name = `${n.callFrame.functionName || '(anonymous)'} ${url ? `${where}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
    fn.set(name, (fn.get(name) ?? 0) + us);
    const f = url.startsWith('node:')
      ? 'node: internals'
      : url.startsWith('node_modules/')
        ? url
            .split('/')
            .slice(0, url.includes('/@') ? 3 : 2)
            .join('/')
        : where;
    file.set(f, (file.get(f) ?? 0) + us);
    total += us;
  }
  const sorted = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => [k, Math.round(v / 100) / 10] as [string, number]);
  return { totalMs: Math.round(total / 1000), idleMs: Math.round(idle / 1000), byFunction: sorted(fn), byFile: sorted(file) };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
  if (positionals.length !== 1) {
    console.error('usage: npx node bench/cpuProfileSummary.ts FILE.cpuprofile [--top N]');
    process.exit(2);
  }
  const s = summarize(JSON.parse(readFileSync(positionals[0], 'utf8')) as Profile, Number(values.top));
  const pct = (ms: number) => `${((ms / s.totalMs) * 100).toFixed(1).padStart(5)}%`;
  console.log(`busy ${s.totalMs} ms (idle ${s.idleMs} ms not counted)\n\nself time by file:`);
  for (const [k, ms] of s.byFile) console.log(`${pct(ms)} ${String(ms).padStart(8)} ms  ${k}`);
  console.log('\nself time by function:');
  for (const [k, ms] of s.byFunction) console.log(`${pct(ms)} ${String(ms).padStart(8)} ms  ${k}`);
}
