// A long differential fuzz run of the fast path's request-head parser against llhttp, the same
// generator and rule as test/proxy/h1/requestHeadDiff.test.ts (test/lib/h1Fuzz.ts):
//   node scripts/fuzzRequestHead.ts --cases 1000000 --seed 42
// --parser <file> checks another copy of requestHead.ts (e.g. an older checkout's). Exits 1 and
// prints each disagreement as one JSON line (the exact input to replay) when there is any.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Llhttp } from '../test/lib/llhttp.ts';
import { describeFailure, fuzz, type ParseRequestHead } from '../test/lib/h1Fuzz.ts';

const usage = 'usage: node scripts/fuzzRequestHead.ts [--cases N] [--seed N] [--max-failures N] [--parser path/to/requestHead.ts]';
let args;
try {
  args = parseArgs({
    options: {
      cases: { type: 'string', default: '1000000' },
      seed: { type: 'string' },
      'max-failures': { type: 'string', default: '20' },
      parser: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (e) {
  console.error(`${(e as Error).message}\n${usage}`);
  process.exit(2);
}
if (args.help) {
  console.log(usage);
  process.exit(0);
}
const count = Number(args.cases);
const seed = args.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(args.seed);
const maxFailures = Number(args['max-failures']);
for (const [name, v] of [
  ['--cases', count],
  ['--seed', seed],
  ['--max-failures', maxFailures],
] as const) {
  if (!Number.isSafeInteger(v) || v < 0) {
    console.error(`${name}: expected a whole number >= 0\n${usage}`);
    process.exit(2);
  }
}
let parse: ParseRequestHead | undefined;
if (args.parser !== undefined) {
  parse = ((await import(pathToFileURL(resolve(args.parser)).href)) as { parseRequestHead?: ParseRequestHead }).parseRequestHead;
  if (typeof parse !== 'function') {
    console.error(`${args.parser}: exports no parseRequestHead`);
    process.exit(2);
  }
}

console.log(`seed ${seed}, ${count} inputs${args.parser ? `, parser ${args.parser}` : ''}`);
const ll = new Llhttp();
const started = Date.now();
let lastReport = started;
try {
  const { stats, failures } = await fuzz(ll, {
    seed,
    count,
    maxFailures,
    parse,
    batch: 5000,
    progress(done, s) {
      if (Date.now() - lastReport < 10_000) return;
      lastReport = Date.now();
      console.log(
        `${done} inputs, ${Math.round(done / ((Date.now() - started) / 1000))}/s: served ${s.accepted}, handed off (llhttp accepts) ${s.handedOff}, rejected by both ${s.rejected}`,
      );
    },
  });
  console.log(
    `${stats.inputs} inputs in ${((Date.now() - started) / 1000).toFixed(1)} s: heads served and read identically by llhttp ${stats.accepted}; handed off although llhttp accepts ${stats.handedOff}; rejected by both ${stats.rejected}; no complete head ${stats.noHead}`,
  );
  for (const f of failures) console.log(describeFailure(f));
  if (failures.length > 0) {
    console.log(`${failures.length} disagreement(s) (stopped after ${maxFailures}); replay with --seed ${seed}`);
    process.exitCode = 1;
  } else console.log('no disagreement');
} finally {
  ll.close();
}
