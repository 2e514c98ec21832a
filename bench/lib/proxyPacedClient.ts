// A paced load generator (wrk2 is not available): sends requests at a fixed rate on an open loop,
// measuring each from its scheduled send time (no coordinated omission). Prints latency stats as JSON.
//   node bench/lib/proxyPacedClient.ts URL RPS SECONDS
import { Pool } from 'undici';

const [url, rpsArg, secondsArg] = process.argv.slice(2);
const rps = Number(rpsArg);
const seconds = Number(secondsArg);
const u = new URL(url);
const pool = new Pool(u.origin, { connections: 64, pipelining: 1 });
const total = rps * seconds;
const latencies = new Float64Array(total);
let done = 0;
let errors = 0;
const start = performance.now();

function send(i: number, scheduled: number): void {
  pool.request({ method: 'GET', path: u.pathname }).then(async (res) => {
    await res.body.dump();
    if (res.statusCode !== 200) errors++;
    latencies[i] = performance.now() - scheduled;
  }, () => {
    errors++;
    latencies[i] = performance.now() - scheduled;
  }).finally(() => {
    if (++done === total) finish();
  });
}

function finish(): void {
  // The first second warms connections and the JIT; it is not measured.
  const warm = Math.min(rps, total >> 1);
  const sorted = Array.from(latencies.subarray(warm)).sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  process.stdout.write(`${JSON.stringify({ requests: total, errors, p50: pct(50), p90: pct(90), p99: pct(99), max: sorted[sorted.length - 1] })}\n`);
  void pool.close().then(() => process.exit(0));
}

let sent = 0;
const timer = setInterval(() => {
  const now = performance.now();
  const due = Math.min(total, Math.floor(((now - start) / 1000) * rps));
  while (sent < due) {
    const scheduled = start + (sent * 1000) / rps;
    send(sent++, scheduled);
  }
  if (sent >= total) clearInterval(timer);
}, 1);
