// Where the sidecar's time goes on one path: starts the backend and a sidecar under node
// --cpu-prof, drives only that path with wrk (or the paced client with --rate), stops the sidecar
// and prints the busy-time summary (bench/cpuProfileSummary.ts). The .cpuprofile is kept for
// Chrome DevTools / speedscope.
//   npm run build && npx node bench/profileSidecar.ts --path l7|l4 [--duration 10] [--connections 50] [--rate N] [--out DIR]
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { summarize } from './cpuProfileSummary.ts';
import { startBackend, startShoal } from './lib/httpPeers.ts';
import { paced, wrk } from './lib/loadClients.ts';
import { ProcessGroup } from './lib/processes.ts';

const { values } = parseArgs({
  options: {
    path: { type: 'string', default: 'l7' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    rate: { type: 'string' },
    out: { type: 'string' },
    top: { type: 'string', default: '20' },
  },
});
if (values.path !== 'l7' && values.path !== 'l4') {
  console.error(`--path must be l7 or l4, got ${JSON.stringify(values.path)}`);
  process.exit(2);
}
const duration = Number(values.duration);
const dir = mkdtempSync(join(tmpdir(), 'shoal-profile-'));
const out = values.out ?? join(dir, 'profiles');
const group = new ProcessGroup();
try {
  const backendPort = await startBackend(group, dir);
  const sidecar = await startShoal(group, dir, { backendPort, nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${out}`] });
  const url = values.path === 'l7' ? sidecar.l7Url : sidecar.l4Url;
  if (values.rate) {
    const r = await paced(url, Number(values.rate), duration + 1);
    console.log(`${values.path} at ${values.rate} rps: p50 ${r.latencyMs['50']} ms, p99 ${r.latencyMs['99']} ms`);
  } else {
    const r = await wrk(url, duration, Number(values.connections));
    console.log(`${values.path}: ${Math.round(r.rps)} rps, p99 ${r.latencyMs['99']} ms`);
  }
  await sidecar.close();
} finally {
  await group.stop();
}
for (const f of readdirSync(out).filter((x) => x.endsWith('.cpuprofile'))) {
  const s = summarize(JSON.parse(readFileSync(join(out, f), 'utf8')), Number(values.top));
  console.log(`\n${join(out, f)}: busy ${s.totalMs} ms (idle ${s.idleMs} ms not counted)\n\nself time by file:`);
  for (const [k, ms] of s.byFile) console.log(`${((ms / s.totalMs) * 100).toFixed(1).padStart(5)}% ${k}`);
  console.log('\nself time by function:');
  for (const [k, ms] of s.byFunction) console.log(`${((ms / s.totalMs) * 100).toFixed(1).padStart(5)}% ${k}`);
}
process.exit(0);
