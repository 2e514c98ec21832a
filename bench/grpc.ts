// gRPC unary calls per second through the sidecar (an outbound grpc listener, built JavaScript)
// against the same @grpc/grpc-js client calling the server directly, in the same run: rounds
// interleave the two (order rotated each round) so drift on a shared machine hits both alike.
//
//   npm run build && node bench/grpc.ts [--rounds 5] [--duration 5] [--in-flight 32] [--payload 100]
//
// Three processes besides this one: the gRPC server, the sidecar, the load client (fresh per run).
// The figures are for this machine at that moment; on a shared, busy machine they are noisy.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startDiscover } from '../discover/main.ts';
import { createLogger } from '../shared/log.ts';
import { interleave } from './lib/context.ts';
import { freePort, ProcessGroup, cpuSeconds } from './lib/processes.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    'in-flight': { type: 'string', default: '32' },
    payload: { type: 'string', default: '100' },
  },
});
const rounds = Number(values.rounds);
const durationMs = Number(values.duration) * 1000;
const inFlight = Number(values['in-flight']);
const payload = Number(values.payload);
for (const [k, v] of [['rounds', rounds], ['duration', durationMs], ['in-flight', inFlight], ['payload', payload]] as const) {
  if (!Number.isInteger(v) || v < 0 || (k !== 'payload' && v === 0)) throw new Error(`--${k} must be a positive integer, got ${JSON.stringify(values[k])}`);
}
if (!existsSync(join(here, '../dist/proxy/main.js'))) throw new Error('bench/grpc.ts runs the sidecar from built JavaScript: run `npm run build` first');

const procs = new ProcessGroup();
const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-grpc-'));
const node = process.execPath;
try {
  const { port: serverPort, child: server } = await procs.portChild(node, [join(here, 'lib/grpcEchoServerChild.ts'), '127.0.0.1']);
  const listenPort = await freePort();
  const address = '127.0.9.9';
  const topology = join(dir, 'topology.yaml');
  writeFileSync(topology, `services:
  - { name: echo, address: ${address}, ports: [{ port: ${listenPort}, protocol: grpc }], endpoints: ["127.0.0.1:${serverPort}"] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: echo, port: ${listenPort}, protocol: grpc }
`);
  const discover = await startDiscover({ staticFile: topology, host: '127.0.0.1', port: 0, log: createLogger('discover', 'silent') });
  try {
    const opts = { discoverUrl: `${discover.url}/v1/resources/default/web/mesh`, stateFile: join(dir, 'state.json'), adminHost: '127.0.0.1', adminPort: 0, inboundAddress: '127.0.9.10' };
    const { child: sidecar } = await procs.jsonChild(node, [join(here, 'lib/proxySidecarChild.mjs'), JSON.stringify(opts)]);
    const targets = { direct: `127.0.0.1:${serverPort}`, shoal: `${address}:${listenPort}` };
    const results: Record<'direct' | 'shoal', Array<{ rps: number; p50Ms: number; p99Ms: number; errors: number; sidecarCpu: number }>> = { direct: [], shoal: [] };
    console.log(`gRPC unary, ${inFlight} calls in flight on one channel, ${payload} B payload, ${rounds} rounds of ${durationMs / 1000} s; ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    await interleave(['direct', 'shoal'] as const, rounds, async (key, round) => {
      const cpu0 = cpuSeconds(sidecar.pid!);
      const { info } = await new ProcessGroup().jsonChild(node, [join(here, 'lib/grpcLoadChild.ts'), targets[key], String(inFlight), String(durationMs), String(payload)]);
      const sidecarCpu = cpuSeconds(sidecar.pid!) - cpu0;
      const rps = info.calls / info.seconds;
      results[key].push({ rps, p50Ms: info.p50Ms, p99Ms: info.p99Ms, errors: info.errors, sidecarCpu });
      console.log(`round ${round + 1} ${key.padEnd(6)} ${Math.round(rps).toString().padStart(6)} calls/s  p50 ${info.p50Ms} ms  p99 ${info.p99Ms} ms  errors ${info.errors}${key === 'shoal' ? `  sidecar CPU ${sidecarCpu.toFixed(2)} s (whole run with its 1 s warm-up)` : ''}`);
    });
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const d = median(results.direct.map((r) => r.rps));
    const s = median(results.shoal.map((r) => r.rps));
    console.log(`median: direct ${Math.round(d)} calls/s, through shoal ${Math.round(s)} calls/s = ${(s / d).toFixed(2)}x direct; p50 ${median(results.direct.map((r) => r.p50Ms))} ms vs ${median(results.shoal.map((r) => r.p50Ms))} ms`);
    void server;
  } finally {
    await procs.stop();
    await discover.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
