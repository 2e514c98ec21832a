// Long differential runs of the fast path's response-head parser and chunked scanner against llhttp
// (the bounded run is test/proxy/h1/responseHeadDiff.test.ts; the generator is test/lib/h1ResponseFuzz.ts).
//   node scripts/fuzzResponseHead.ts --cases 200000 --seed 7
//   node scripts/fuzzResponseHead.ts --seed 7 --only 1234     (replays one case of a failure report)
import { Llhttp } from '../test/lib/llhttp.ts';
import { describeFailure, runFuzz } from '../test/lib/h1ResponseFuzz.ts';

function arg(name: string): number | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${name} needs a whole number, got ${JSON.stringify(process.argv[i + 1])}`);
    process.exit(2);
  }
  return v;
}

const seed = arg('seed') ?? Date.now() & 0x7fffffff;
const only = arg('only');
const cases = arg('cases') ?? 100_000;
const ll = new Llhttp();
const t0 = performance.now();
try {
  // Every case depends on (seed, index) only: --only N runs case N alone.
  const r = only === undefined ? await runFuzz(ll, seed, cases, 20) : await runFuzz(ll, seed, only + 1, 2, only);
  const failures = r.failures;
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`seed ${seed}: ${r.responses.cases} responses, ${r.chunked.cases} chunked bodies in ${s} s`);
  console.log('responses:', JSON.stringify(r.responses));
  console.log('chunked:  ', JSON.stringify(r.chunked));
  for (const f of failures) console.log(describeFailure(f));
  process.exitCode = failures.length > 0 ? 1 : 0;
} finally {
  ll.close();
}
