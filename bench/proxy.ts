// Benchmark of the sidecar on built JavaScript, the quick way while working on proxy/: max rps
// through shoal L7 and L4 against a direct connection and nginx (1 worker, upstream keep-alive);
// added latency at a fixed 1,000 rps; RSS and CPU of the sidecar beside a bare node:http server.
// The measurements are the http-max, http-fixed-rate and sidecar-footprint scenarios of
// npm run bench (bench/scenarios/); this prints their results as JSON on stdout, progress on stderr.
//   npm run build && npx node bench/proxy.ts [--rounds 3] [--duration 5] [--connections 50] [--rate 1000]
//     [--all] [--pin] [--sidecar-node-options="--max-semi-space-size=1"] [--smoke]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ScenarioContext } from './lib/context.ts';
import { machineInfo } from './lib/machine.ts';
import { ensureTools } from './lib/tools.ts';
import { runHttpFixedRate } from './scenarios/httpFixedRate.ts';
import { HTTP_MAX_CONTENDERS, runHttpMax } from './scenarios/httpMax.ts';
import { runSidecarFootprint } from './scenarios/sidecarFootprint.ts';
import type { HttpContender } from './scenarios/httpContenders.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    rate: { type: 'string', default: '1000' },
    // Every http-max contender (haproxy, http-proxy, multi-worker peers), not only direct, shoal and nginx.
    all: { type: 'boolean', default: false },
    pin: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    // e.g. --sidecar-node-options=--max-semi-space-size=1 to see what a smaller young generation saves.
    'sidecar-node-options': { type: 'string', default: '' },
  },
});
const smoke = values.smoke;
const rounds = smoke ? 1 : Number(values.rounds);
const duration = smoke ? 1 : Number(values.duration);
const connections = Number(values.connections);
const rate = Number(values.rate);
for (const [flag, v] of [
  ['rounds', rounds],
  ['duration', duration],
  ['connections', connections],
  ['rate', rate],
] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`--${flag} must be a whole number of at least 1, got ${JSON.stringify(values[flag])}`);
    process.exit(2);
  }
}
const sidecarNodeOptions = values['sidecar-node-options']!.split(' ').filter((x) => x !== '');
const tools = ensureTools(['wrk', 'nginx', ...(values.all ? ['haproxy'] : []), ...(values.pin ? ['taskset'] : [])], (m) =>
  console.error(m),
);
if (tools.missing.length) {
  console.error(`missing ${tools.missing.join(', ')}`);
  process.exit(2);
}
const machine = machineInfo();
const command = `npx node bench/proxy.ts --rounds ${rounds} --duration ${duration} --connections ${connections} --rate ${rate}${values.all ? ' --all' : ''}${values.pin ? ' --pin' : ''}${sidecarNodeOptions.length ? ` --sidecar-node-options="${sidecarNodeOptions.join(' ')}"` : ''}${smoke ? ' --smoke' : ''}`;
const contenders: HttpContender[] = values.all ? HTTP_MAX_CONTENDERS : ['direct', 'shoal-l7', 'shoal-l4', 'nginx-1'];
const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-proxy-'));
const ctx: ScenarioContext = { duration, rounds, smoke, pin: values.pin, dir, machine, command, log: (m) => console.error(m) };
try {
  const httpMax = await runHttpMax(ctx, { connections, contenders, sidecarNodeOptions });
  const httpFixedRate = await runHttpFixedRate(ctx, {
    rate,
    contenders: contenders.filter((c) => !c.endsWith('-multi')),
    sidecarNodeOptions,
  });
  const sidecarFootprint = await runSidecarFootprint(ctx, { rates: [0, rate], sidecarNodeOptions });
  const slim = (r: typeof httpMax) => ({
    title: r.title,
    method: r.method,
    rows: r.rows.map(({ curve: _c, ...row }) => row),
    targets: r.targets,
    errors: r.errors,
  });
  console.log(
    JSON.stringify(
      {
        benchmark: 'proxy',
        date: new Date().toISOString(),
        command,
        machine,
        httpMax: slim(httpMax),
        httpFixedRate: slim(httpFixedRate),
        sidecarFootprint: slim(sidecarFootprint),
      },
      null,
      2,
    ),
  );
  const errors = [httpMax, httpFixedRate, sidecarFootprint].flatMap((r) => r.errors);
  if (errors.length) {
    console.error(`could not run: ${errors.join('; ')}`);
    process.exitCode = 1;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit();
