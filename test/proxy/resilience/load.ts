// Open-loop load for the resilience tests: requests at a fixed rate (not waiting for answers, as
// real clients do), each one's outcome and latency recorded with the time it was sent.
import { Agent, request } from 'undici';

export interface Outcome {
  /** ms since the load started. */
  at: number;
  status: number;
  error: string;
  ms: number;
}

export interface LoadResult {
  outcomes: Outcome[];
  /** Outcomes that are not 2xx (made-up errors, upstream errors, transport errors). */
  failed: Outcome[];
}

/** Sends `rps` GETs per second for `seconds` to url; onTick(ms) runs about every 10 ms, for timed events. */
export async function openLoad(
  url: string,
  rps: number,
  seconds: number,
  opts: { method?: string; onTick?: (ms: number) => void; connections?: number } = {},
): Promise<LoadResult> {
  const agent = new Agent({ connections: opts.connections ?? 256, keepAliveTimeout: 10_000 });
  const outcomes: Outcome[] = [];
  const pending: Promise<void>[] = [];
  const total = Math.round(rps * seconds);
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const now = performance.now() - start;
    opts.onTick?.(now);
    const due = Math.min(total, Math.floor((now * rps) / 1000) + 1);
    for (; sent < due; sent++) {
      const at = performance.now() - start;
      pending.push(
        request(url, { dispatcher: agent, method: (opts.method ?? 'GET') as 'GET' }).then(
          async (r) => {
            await r.body.dump();
            outcomes.push({
              at,
              status: r.statusCode,
              error: String(r.headers['x-shoal-error'] ?? ''),
              ms: performance.now() - start - at,
            });
          },
          (e: Error) => {
            outcomes.push({ at, status: 0, error: e.message, ms: performance.now() - start - at });
          },
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(pending);
  await agent.close();
  outcomes.sort((a, b) => a.at - b.at);
  return { outcomes, failed: outcomes.filter((o) => o.status < 200 || o.status >= 300) };
}

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** One sample of a metric series from the sidecar's /metrics; 0 when absent. */
export async function metric(adminPort: number, name: string, labels: Record<string, string> = {}): Promise<number> {
  const r = await request(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await r.body.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export async function configDump(adminPort: number): Promise<Record<string, unknown>> {
  const r = await request(`http://127.0.0.1:${adminPort}/config_dump`);
  return (await r.body.json()) as Record<string, unknown>;
}
