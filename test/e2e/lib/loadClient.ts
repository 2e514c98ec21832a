// The "app" in the web pod: a small Node client run with `ip netns exec`, resolving names through
// the pod's resolv.conf (glibc getaddrinfo, as any app) and talking plain HTTP/TCP to the sidecar.
//   node loadClient.ts load  '{"url":..,"rps":200,"durationMs":0,"timeoutMs":10000}' RUNDIR
//       paced requests over a keep-alive pool until durationMs (0: until "stop" on stdin);
//       stdin "pause" / "resume" stop and restart the pacing (no catch-up burst).
//   node loadClient.ts burst '{"url":..,"count":30,"timeoutMs":30000}' RUNDIR
//       count requests at once, each on its own connection; prints "inflight N" once all are sent.
//   node loadClient.ts tcp   '{"host":"cache","port":6379,"count":20}' RUNDIR
//       count connections one after the other, each reading the line the server writes.
// Prints "started <epoch ms>" when it begins and "result <json>" (see LoadResult) at the end.
import http from 'node:http';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

export interface Failure {
  /** ms since the epoch when the request started */
  at: number;
  ms: number;
  status?: number;
  shoalError?: string;
  error?: string;
}

export interface LoadResult {
  startedAt: number;
  endedAt: number;
  sent: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  byPod: Record<string, number>;
  shoalErrors: Record<string, number>;
  retryAfter: Record<string, number>;
  failures: Failure[];
  /** Requests (any outcome) slower than slowMs: start time, duration, who answered. */
  slow: Array<{ at: number; ms: number; pod: string }>;
  latencyMs: { p50: number; p99: number; max: number };
  /** One entry per second of the run: requests that started in it, by outcome and answering pod. */
  timeline: Array<{ second: number; sent: number; ok: number; failed: number; maxMs: number; byPod: Record<string, number> }>;
  pausedMs: number;
  /** Time the pacing ran (pauses left out): sent ≈ rps × activeMs / 1000. */
  activeMs: number;
}

const MAX_LISTED = 200;

function newResult(): LoadResult {
  return {
    startedAt: Date.now(),
    endedAt: 0,
    sent: 0,
    ok: 0,
    failed: 0,
    statuses: {},
    byPod: {},
    shoalErrors: {},
    retryAfter: {},
    failures: [],
    slow: [],
    latencyMs: { p50: 0, p99: 0, max: 0 },
    timeline: [],
    pausedMs: 0,
    activeMs: 0,
  };
}

function bump(m: Record<string, number>, k: string): void {
  m[k] = (m[k] ?? 0) + 1;
}

class Recorder {
  readonly r = newResult();
  private readonly latencies: number[] = [];
  private readonly okStatuses: Set<number>;
  private readonly slowMs: number;

  constructor(okStatuses: number[], slowMs: number) {
    this.okStatuses = new Set(okStatuses);
    this.slowMs = slowMs;
  }

  private second(at: number) {
    const s = Math.floor((at - this.r.startedAt) / 1000);
    while (this.r.timeline.length <= s)
      this.r.timeline.push({ second: this.r.timeline.length, sent: 0, ok: 0, failed: 0, maxMs: 0, byPod: {} });
    return this.r.timeline[s];
  }

  started(at: number): void {
    this.r.sent++;
    this.second(at).sent++;
  }

  done(at: number, status: number | undefined, headers: http.IncomingHttpHeaders | undefined, body: string, error?: string): void {
    const ms = Date.now() - at;
    this.latencies.push(ms);
    const sec = this.second(at);
    if (ms > sec.maxMs) sec.maxMs = ms;
    const shoalError = headers?.['x-shoal-error'] as string | undefined;
    const pod = status === 200 ? body.trim() : '';
    if (status !== undefined) bump(this.r.statuses, String(status));
    if (shoalError) bump(this.r.shoalErrors, shoalError);
    const retryAfter = headers?.['retry-after'] as string | undefined;
    if (retryAfter !== undefined) bump(this.r.retryAfter, retryAfter);
    if (ms >= this.slowMs && this.r.slow.length < MAX_LISTED) this.r.slow.push({ at, ms, pod });
    if (error === undefined && status !== undefined && this.okStatuses.has(status)) {
      this.r.ok++;
      sec.ok++;
      if (pod) {
        bump(this.r.byPod, pod);
        bump(sec.byPod, pod);
      }
      return;
    }
    this.r.failed++;
    sec.failed++;
    if (this.r.failures.length < MAX_LISTED)
      this.r.failures.push({ at, ms, status, shoalError, error: error ?? (status !== undefined ? body.slice(0, 200) : undefined) });
  }

  finish(): LoadResult {
    this.r.endedAt = Date.now();
    const l = this.latencies.sort((a, b) => a - b);
    const q = (p: number) => (l.length === 0 ? 0 : l[Math.min(l.length - 1, Math.floor(p * l.length))]);
    this.r.latencyMs = { p50: q(0.5), p99: q(0.99), max: l.length ? l[l.length - 1] : 0 };
    return this.r;
  }
}

function request(agent: http.Agent, url: string, timeoutMs: number, rec: Recorder): Promise<void> {
  const at = Date.now();
  rec.started(at);
  return new Promise((resolve) => {
    let settled = false;
    const settle = (status: number | undefined, headers: http.IncomingHttpHeaders | undefined, body: string, error?: string) => {
      if (settled) return;
      settled = true;
      rec.done(at, status, headers, body, error);
      resolve();
    };
    const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => settle(res.statusCode, res.headers, body));
      res.on('error', (err) => settle(res.statusCode, res.headers, body, `response: ${err.message}`));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', (err) => settle(undefined, undefined, '', `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`.trim()));
  });
}

async function load(o: {
  url: string;
  rps: number;
  durationMs?: number;
  timeoutMs?: number;
  okStatuses?: number[];
  slowMs?: number;
}): Promise<LoadResult> {
  const rec = new Recorder(o.okStatuses ?? [200], o.slowMs ?? 200);
  // A bounded pool, as an app has: under a stall requests wait here instead of flooding the sidecar with connections.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const inflight = new Set<Promise<void>>();
  let paused = false;
  let stopping = false;
  let activeMs = 0;
  let since = performance.now();
  let sent = 0;
  let pausedAt = 0;
  const stopped = new Promise<void>((resolve) => {
    createInterface({ input: process.stdin })
      .on('line', (line) => {
        const cmd = line.trim();
        if (cmd === 'pause' && !paused) {
          activeMs += performance.now() - since;
          paused = true;
          pausedAt = Date.now();
          // Acknowledged once nothing is in flight: the app is quiet while its sidecar restarts.
          void Promise.all(inflight).then(() => process.stdout.write(`paused ${pausedAt}\n`));
        } else if (cmd === 'resume' && paused) {
          since = performance.now();
          paused = false;
          rec.r.pausedMs += Date.now() - pausedAt;
          process.stdout.write(`resumed ${Date.now()}\n`);
        } else if (cmd === 'stop') {
          resolve();
        }
      })
      .on('close', () => resolve());
    if (o.durationMs) setTimeout(resolve, o.durationMs);
  });
  void stopped.then(() => (stopping = true));
  process.stdout.write(`started ${rec.r.startedAt}\n`);
  const timer = setInterval(() => {
    if (paused || stopping) return;
    const due = Math.floor(((activeMs + performance.now() - since) * o.rps) / 1000);
    for (; sent < due; sent++) {
      const p = request(agent, o.url, o.timeoutMs ?? 10_000, rec);
      inflight.add(p);
      void p.then(() => inflight.delete(p));
    }
  }, 2);
  await stopped;
  clearInterval(timer);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the pause/resume messages while the run was awaited
  rec.r.activeMs = Math.round(activeMs + (paused ? 0 : performance.now() - since));
  await Promise.all(inflight);
  agent.destroy();
  return rec.finish();
}

async function burst(o: { url: string; count: number; timeoutMs?: number }): Promise<LoadResult> {
  const rec = new Recorder([200], 0);
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let written = 0;
  process.stdout.write(`started ${rec.r.startedAt}\n`);
  const all: Promise<void>[] = [];
  for (let i = 0; i < o.count; i++) {
    const at = Date.now();
    rec.started(at);
    all.push(
      new Promise((resolve) => {
        const req = http.get(o.url, { agent, timeout: o.timeoutMs ?? 30_000 }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => {
            rec.done(at, res.statusCode, res.headers, body);
            resolve();
          });
          res.on('error', (err) => {
            rec.done(at, res.statusCode, res.headers, body, err.message);
            resolve();
          });
        });
        req.on('finish', () => {
          if (++written === o.count) process.stdout.write(`inflight ${written}\n`);
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (err) => {
          rec.done(at, undefined, undefined, '', `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`.trim());
          resolve();
        });
      }),
    );
  }
  await Promise.all(all);
  return rec.finish();
}

async function tcp(o: { host: string; port: number; count: number }): Promise<LoadResult> {
  const rec = new Recorder([200], 1000);
  process.stdout.write(`started ${rec.r.startedAt}\n`);
  for (let i = 0; i < o.count; i++) {
    const at = Date.now();
    rec.started(at);
    await new Promise<void>((resolve) => {
      let data = '';
      const sock = connect(o.port, o.host);
      sock.setEncoding('utf8');
      sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
      sock.on('data', (c: string) => (data += c));
      sock.on('end', () => {
        rec.done(at, 200, undefined, data);
        sock.destroy();
        resolve();
      });
      sock.on('error', (err) => {
        rec.done(at, undefined, undefined, '', err.message);
        resolve();
      });
    });
  }
  return rec.finish();
}

if (import.meta.main) {
  const [mode, json] = process.argv.slice(2);
  const o = JSON.parse(json ?? '{}');
  const result = mode === 'load' ? await load(o) : mode === 'burst' ? await burst(o) : mode === 'tcp' ? await tcp(o) : null;
  if (!result) {
    process.stderr.write('usage: loadClient.ts load|burst|tcp JSON RUNDIR\n');
    process.exit(2);
  }
  // stdout is a pipe (asynchronous): exit only once the line is out.
  process.stdout.write(`result ${JSON.stringify(result)}\n`, () => process.exit(0));
}
