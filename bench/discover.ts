// Benchmark of discover, the quick way while working on discover/: snapshot requests per second
// (full answers and 304s, wrk) and long-poll wake-up time from a topology edit until every waiting
// client has its answer, beside a bare node:http long-poll floor. The measurement is the
// discover-propagation scenario of npm run bench (bench/scenarios/discoverPropagation.ts); this
// prints its result as JSON on stdout, progress on stderr. Runs the built JavaScript (npm run build).
//   npx node bench/discover.ts [--waiters 1000,10000] [--rounds 5] [--duration 5] [--client c|node] [--fanout-threads auto|N] [--smoke]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo } from './lib/machine.ts';
import { hasCommand } from './lib/tools.ts';
import { runDiscoverPropagation } from './scenarios/discoverPropagation.ts';

const { values } = parseArgs({
  options: {
    waiters: { type: 'string', default: '1000,10000' },
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    client: { type: 'string', default: 'c' },
    'fanout-threads': { type: 'string', default: 'auto' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const waiters = smoke ? [200] : values.waiters!.split(',').map(Number);
const rounds = smoke ? 2 : Number(values.rounds);
const duration = smoke ? 1 : Number(values.duration);
if (
  waiters.some((n) => !Number.isInteger(n) || n < 1) ||
  !Number.isInteger(rounds) ||
  rounds < 1 ||
  !Number.isInteger(duration) ||
  duration < 1 ||
  !['c', 'node'].includes(values.client!)
) {
  console.error(
    `--waiters takes whole numbers separated by commas (got ${JSON.stringify(values.waiters)}); --rounds and --duration whole numbers of at least 1; --client c or node (got ${JSON.stringify(values.client)})`,
  );
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-discover-'));
const client = values.client as 'c' | 'node';
const command = `npx node bench/discover.ts --waiters ${waiters.join(',')} --rounds ${rounds} --duration ${duration} --client ${client} --fanout-threads ${values['fanout-threads']}${smoke ? ' --smoke' : ''}`;
try {
  const r = await runDiscoverPropagation(
    { duration, rounds, smoke: false, pin: false, dir, machine: machineInfo(), command, log: (m) => console.error(m) },
    { waiters, snapshotRps: hasCommand('wrk'), client, fanOutThreads: values['fanout-threads'] },
  );
  console.log(
    JSON.stringify(
      {
        benchmark: 'discover',
        date: r.date,
        command,
        machine: r.machine,
        snapshotRps: r.settings.snapshotRps,
        rows: r.rows.map(({ curve: _c, ...row }) => row),
        targets: r.targets,
        notes: r.notes,
        errors: r.errors,
      },
      null,
      2,
    ),
  );
  if (r.errors.length) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit();
