// A paced load generator (wrk2 is not in Debian): sends requests at a fixed rate on an open loop,
// measuring each from its scheduled send time (coordinated omission corrected). The first second
// warms connections and the JIT and is not measured. Prints latency percentiles as JSON.
//   node bench/lib/proxyPacedClient.ts URL RPS SECONDS
import { Pool } from 'undici';

const [url, rpsArg, secondsArg] = process.argv.slice(2);
const rps = Number(rpsArg);
const seconds = Number(secondsArg);
if (!url || !(rps > 0) || !(seconds > 0)) {
  process.stderr.write('usage: node bench/lib/proxyPacedClient.ts URL RPS SECONDS (RPS and SECONDS > 0)\n');
  process.exit(2);
}
const u = new URL(url);
const pool = new Pool(u.origin, { connections: 64, pipelining: 1 });
const total = Math.max(2, Math.round(rps * seconds));
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
  const warm = Math.min(Math.round(rps), total >> 1);
  const sorted = Float64Array.from(latencies.subarray(warm)).sort();
  const pct = (p: number) => sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))];
  const latencyMs: Record<string, number> = {};
  for (const p of [50, 75, 90, 95, 99, 99.9, 99.99]) latencyMs[String(p)] = Math.round(pct(p) * 1000) / 1000;
  process.stdout.write(`${JSON.stringify({
    requests: total, measured: sorted.length, errors, latencyMs,
    p50: latencyMs['50'], p90: latencyMs['90'], p99: latencyMs['99'], p999: latencyMs['99.9'], max: sorted[sorted.length - 1], maxMs: sorted[sorted.length - 1],
  })}\n`);
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
