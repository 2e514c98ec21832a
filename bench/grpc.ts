// gRPC unary calls per second through the sidecar (an outbound grpc listener, built JavaScript)
// against the same @grpc/grpc-js client calling the server directly, in the same run: rounds
// interleave the two (order rotated each round) so drift on a shared machine hits both alike.
//
//   npm run build && npx node bench/grpc.ts [--rounds 5] [--duration 5] [--in-flight 32] [--payload 100]
//   npx node bench/grpc.ts --upstream-clients [--rounds 3] [--duration 3] [--in-flight 64]
//     (the measurement behind proxy/h2's upstream client: node:http2 against undici's H2CClient,
//     each driving gRPC unary calls straight at the same server; no sidecar, no build needed)
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
const node = process.execPath;
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    'in-flight': { type: 'string', default: '32' },
    payload: { type: 'string', default: '100' },
    'upstream-clients': { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const durationMs = Number(values.duration) * 1000;
const inFlight = Number(values['in-flight']);
const payload = Number(values.payload);
for (const [k, v] of [
  ['rounds', rounds],
  ['duration', durationMs],
  ['in-flight', inFlight],
  ['payload', payload],
] as const) {
  if (!Number.isInteger(v) || v < 0 || (k !== 'payload' && v === 0))
    throw new Error(`--${k} must be a positive integer, got ${JSON.stringify(values[k])}`);
}
if (values['upstream-clients']) {
  await compareUpstreamClients();
  process.exit(0);
}
if (!existsSync(join(here, '../dist/proxy/main.js')))
  throw new Error('bench/grpc.ts runs the sidecar from built JavaScript: run `npm run build` first');

const procs = new ProcessGroup();
const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-grpc-'));
try {
  const { port: serverPort, child: server } = await procs.portChild(node, [join(here, 'lib/grpcEchoServerChild.ts'), '127.0.0.1']);
  const listenPort = await freePort();
  const address = '127.0.9.9';
  const topology = join(dir, 'topology.yaml');
  writeFileSync(
    topology,
    `services:
  - { name: echo, address: ${address}, ports: [{ port: ${listenPort}, protocol: grpc }], endpoints: ["127.0.0.1:${serverPort}"] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: echo, port: ${listenPort}, protocol: grpc }
`,
  );
  const discover = await startDiscover({ staticFile: topology, host: '127.0.0.1', port: 0, log: createLogger('discover', 'silent') });
  try {
    const opts = {
      discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
      stateFile: join(dir, 'state.json'),
      adminHost: '127.0.0.1',
      adminPort: 0,
      inboundAddress: '127.0.9.10',
    };
    const { child: sidecar } = await procs.jsonChild(node, [join(here, 'lib/proxySidecarChild.mjs'), JSON.stringify(opts)]);
    const targets = { direct: `127.0.0.1:${serverPort}`, shoal: `${address}:${listenPort}` };
    const results: Record<
      'direct' | 'shoal',
      Array<{ rps: number; p50Ms: number; p99Ms: number; errors: number; sidecarUs: number; serverUs: number }>
    > = { direct: [], shoal: [] };
    console.log(
      `gRPC unary, ${inFlight} calls in flight on one channel, ${payload} B payload, ${rounds} rounds of ${durationMs / 1000} s; ${cpus().length} cores, load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    await interleave(['direct', 'shoal'] as const, rounds, async (key, round) => {
      const cpu0 = cpuSeconds(sidecar.pid!);
      const srv0 = cpuSeconds(server.pid!);
      const { info } = await new ProcessGroup().jsonChild(node, [
        join(here, 'lib/grpcLoadChild.ts'),
        targets[key],
        String(inFlight),
        String(durationMs),
        String(payload),
      ]);
      // CPU per call (warm-up calls included on both sides of the division): less at the mercy of a
      // busy machine than calls per second.
      const sidecarUs = ((cpuSeconds(sidecar.pid!) - cpu0) / info.total) * 1e6;
      const serverUs = ((cpuSeconds(server.pid!) - srv0) / info.total) * 1e6;
      const rps = info.calls / info.seconds;
      results[key].push({ rps, p50Ms: info.p50Ms, p99Ms: info.p99Ms, errors: info.errors, sidecarUs, serverUs });
      console.log(
        `round ${round + 1} ${key.padEnd(6)} ${Math.round(rps).toString().padStart(6)} calls/s  p50 ${info.p50Ms} ms  p99 ${info.p99Ms} ms  errors ${info.errors}  server CPU ${Math.round(serverUs)} µs/call${key === 'shoal' ? `  sidecar CPU ${Math.round(sidecarUs)} µs/call` : ''}`,
      );
    });
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const d = median(results.direct.map((r) => r.rps));
    const s = median(results.shoal.map((r) => r.rps));
    console.log(
      `median: direct ${Math.round(d)} calls/s, through shoal ${Math.round(s)} calls/s = ${(s / d).toFixed(2)}x direct; p50 ${median(results.direct.map((r) => r.p50Ms))} ms vs ${median(results.shoal.map((r) => r.p50Ms))} ms; sidecar CPU ${Math.round(median(results.shoal.map((r) => r.sidecarUs)))} µs per call (the gRPC server: ${Math.round(median(results.direct.map((r) => r.serverUs)))} µs)`,
    );
  } finally {
    await procs.stop();
    await discover.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** node:http2 against undici's H2CClient as the client of one gRPC server, interleaved rounds. */
async function compareUpstreamClients(): Promise<void> {
  const group = new ProcessGroup();
  try {
    const { port } = await group.portChild(node, [join(here, 'lib/grpcEchoServerChild.ts'), '127.0.0.1']);
    const rps: Record<'node-http2' | 'undici', number[]> = { 'node-http2': [], undici: [] };
    console.log(
      `upstream HTTP/2 clients, gRPC unary, ${inFlight} in flight, ${rounds} rounds of ${durationMs / 1000} s; ${cpus().length} cores, load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    await interleave(['node-http2', 'undici'] as const, rounds, async (kind, round) => {
      const { info } = await new ProcessGroup().jsonChild(node, [
        join(here, 'lib/h2ClientChild.ts'),
        kind,
        `127.0.0.1:${port}`,
        String(inFlight),
        String(durationMs),
      ]);
      rps[kind].push(info.calls / info.seconds);
      console.log(
        `round ${round + 1} ${kind.padEnd(10)} ${Math.round(info.calls / info.seconds)
          .toString()
          .padStart(6)} calls/s  errors ${info.errors}`,
      );
    });
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(
      `median: node:http2 ${Math.round(median(rps['node-http2']))} calls/s, undici H2CClient ${Math.round(median(rps.undici))} calls/s`,
    );
  } finally {
    await group.stop();
  }
}
