// A paced load generator (wrk2 is not in Debian): sends requests at a fixed rate on an open loop,
// measuring each from its scheduled send time (coordinated omission corrected). The first second
// warms connections and the JIT and is not measured. Prints latency percentiles as JSON.
//   node bench/lib/proxyPacedClient.ts URL RPS SECONDS
// Forked without arguments it serves jobs over IPC ({id, url, rps, seconds} → {id, result}), so a
// benchmark pays Node's start-up once rather than per run.
import { Pool } from 'undici';

export interface PacedJob {
  id: number;
  url: string;
  rps: number;
  seconds: number;
}

function runJob(url: string, rps: number, seconds: number): Promise<Record<string, unknown>> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 64, pipelining: 1 });
  const total = Math.max(2, Math.round(rps * seconds));
  const latencies = new Float64Array(total);
  let done = 0;
  let errors = 0;
  let sent = 0;
  const start = performance.now();
  return new Promise((resolve) => {
    const finish = () => {
      const warm = Math.min(Math.round(rps), total >> 1);
      const sorted = Float64Array.from(latencies.subarray(warm)).sort();
      const pct = (p: number) => sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))];
      const latencyMs: Record<string, number> = {};
      for (const p of [50, 75, 90, 95, 99, 99.9, 99.99]) latencyMs[String(p)] = Math.round(pct(p) * 1000) / 1000;
      const max = sorted[sorted.length - 1];
      void pool.close().then(() =>
        resolve({
          requests: total,
          measured: sorted.length,
          errors,
          latencyMs,
          p50: latencyMs['50'],
          p90: latencyMs['90'],
          p99: latencyMs['99'],
          p999: latencyMs['99.9'],
          max,
          maxMs: max,
        }),
      );
    };
    const send = (i: number, scheduled: number) => {
      pool
        .request({ method: 'GET', path: u.pathname })
        .then(
          async (res) => {
            await res.body.dump();
            if (res.statusCode !== 200) errors++;
            latencies[i] = performance.now() - scheduled;
          },
          () => {
            errors++;
            latencies[i] = performance.now() - scheduled;
          },
        )
        .finally(() => {
          if (++done === total) finish();
        });
    };
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rps));
      while (sent < due) (send(sent, start + (sent * 1000) / rps), sent++);
      if (sent >= total) clearInterval(timer);
    }, 1);
  });
}

if (import.meta.main) {
  const [url, rpsArg, secondsArg] = process.argv.slice(2);
  if (url === undefined && process.send) {
    process.on('message', (job: PacedJob) => {
      void runJob(job.url, job.rps, job.seconds).then((result) => process.send!({ id: job.id, result }));
    });
    process.on('disconnect', () => process.exit(0));
  } else {
    const rps = Number(rpsArg);
    const seconds = Number(secondsArg);
    if (!url || !(rps > 0) || !(seconds > 0)) {
      process.stderr.write('usage: node bench/lib/proxyPacedClient.ts URL RPS SECONDS (RPS and SECONDS > 0)\n');
      process.exit(2);
    }
    const result = await runJob(url, rps, seconds);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  }
}
