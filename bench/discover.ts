// Benchmark: discover's snapshot requests per second, and long-poll wake-up latency from a
// topology edit until every waiting client has its answer, for 1,000 and 10,000 waiters.
// Runs the built JavaScript (npm run build); clients run in other processes.
//   node bench/discover.ts [--waiters 1000,10000] [--rounds 5] [--duration 5] [--smoke]
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    waiters: { type: 'string', default: '1000,10000' },
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const waiterCounts = smoke ? [200] : values.waiters!.split(',').map(Number);
const rounds = smoke ? 2 : Number(values.rounds);
const duration = smoke ? 1 : Number(values.duration);

const cli = join(root, 'dist', 'cli.js');
if (!existsSync(cli)) {
  console.error('dist/cli.js is missing: run npm run build first (npm run bench does)');
  process.exit(2);
}

function topology(variant: number): string {
  const lines = ['services:'];
  for (let i = 0; i < 100; i++) {
    lines.push(`  - { name: svc-${i}, ports: [{ port: 8080, protocol: http }], endpoints: [10.1.${i}.1:8080, 10.1.${i}.2:8080, 10.1.${i}.3:8080] }`);
  }
  lines.push(`  - { name: api, ports: [{ port: 8080, protocol: http }], endpoints: [10.0.0.1:8080, 10.0.0.2:8080, 10.0.0.${3 + variant}:8080] }`);
  lines.push('apps:');
  lines.push('  - { name: web, config: { base_services: [{ depend_service_alias: api, port: 8080 }, { depend_service_alias: svc-1, port: 8080 }] } }');
  for (let i = 0; i < 100; i++) {
    lines.push(`  - { name: app-${i}, config: { base_services: [{ depend_service_alias: svc-${i}, port: 8080 }, { depend_service_alias: svc-${(i + 1) % 100}, port: 8080 }] } }`);
  }
  return lines.join('\n') + '\n';
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+([0-9]+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

async function startDiscover(file: string): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, [cli, 'discover', '--static', file, '--host', '127.0.0.1', '--port', '0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /"port":([0-9]+),"msg":"discover listening"/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`discover exited ${code}: ${out}`)));
  });
  child.stdout!.resume();
  return { child, base: `http://127.0.0.1:${port}` };
}

async function currentVersion(base: string): Promise<string> {
  const res = await fetch(`${base}/v2/snapshot/default/web`);
  await res.arrayBuffer();
  return res.headers.get('etag')!.replace(/"/g, '');
}

async function waiting(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^shoal_discover_longpoll_waiters\{[^}]*\} ([0-9]+)/m.exec(text)?.[1] ?? 0);
}

function wrk(url: string, seconds: number, header?: string): number | null {
  try {
    const args = ['-t2', '-c50', `-d${seconds}s`, ...(header ? ['-H', header] : []), url];
    const out = execFileSync('wrk', args, { encoding: 'utf8' });
    return Math.round(Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1]));
  } catch {
    return null;
  }
}

function once<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (msg: { type: string }) => {
      if (msg.type === type) {
        child.off('message', on);
        resolve(msg as T);
      }
    };
    child.on('message', on);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-discover-'));
const file = join(dir, 'topology.yaml');
writeFileSync(file, topology(0));
const { child: discover, base } = await startDiscover(file);
const result: Record<string, unknown> = { scenario: 'discover', date: new Date().toISOString(), machine: { cpus: (await import('node:os')).cpus().length } };
try {
  // Snapshot requests per second: full answers, and the 304 a polling sidecar mostly gets.
  const v = await currentVersion(base);
  const full = wrk(`${base}/v2/snapshot/default/web`, duration);
  const notModified = wrk(`${base}/v2/snapshot/default/web`, duration, `If-None-Match: "${v}"`);
  result.snapshotRps = { full, notModified, tool: full === null ? 'wrk not found (apt-get install wrk)' : 'wrk -t2 -c50' };

  let variant = 0;
  const wake: Record<string, unknown> = {};
  for (const n of waiterCounts) {
    const procs = Math.min(4, Math.max(1, Math.ceil(n / 2500)));
    const clients = Array.from({ length: procs }, (_, i) => fork(join(root, 'bench', 'lib', 'longPollClients.ts'),
      ['127.0.0.1', base.split(':')[2], '/v2/snapshot/default/web', String(Math.floor(n / procs) + (i < n % procs ? 1 : 0))]));
    await Promise.all(clients.map((c) => once(c, 'open')));
    const latencies: number[] = [];
    const roundP99: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const version = await currentVersion(base);
      const sent = clients.map((c) => once(c, 'sent'));
      for (const c of clients) c.send({ type: 'wait', version });
      await Promise.all(sent);
      while ((await waiting(base)) < n) await new Promise((res) => setTimeout(res, 20));
      const answered = clients.map((c) => once<{ statuses: Record<string, number> }>(c, 'answered'));
      variant = 1 - variant;
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, topology(variant));
      const t0 = process.hrtime.bigint();
      renameSync(tmp, file);
      const statuses = await Promise.all(answered);
      const times = await Promise.all(clients.map((c) => {
        const p = once<{ times: string[] }>(c, 'times');
        c.send({ type: 'report' });
        return p;
      }));
      const ok = statuses.reduce((a, s) => a + (s.statuses['200'] ?? 0), 0);
      if (ok !== n) throw new Error(`round ${r}: ${ok} of ${n} waiters got 200 (${JSON.stringify(statuses)})`);
      const round = times.flatMap((t) => t.times.map((x) => Number(BigInt(x) - t0) / 1e6)).sort((a, b) => a - b);
      roundP99.push(percentile(round, 99));
      latencies.push(...round);
    }
    latencies.sort((a, b) => a - b);
    wake[n] = {
      rounds,
      p50Ms: +percentile(latencies, 50).toFixed(2),
      p99Ms: +percentile(latencies, 99).toFixed(2),
      maxMs: +latencies[latencies.length - 1].toFixed(2),
      p99PerRoundMs: roundP99.map((x) => +x.toFixed(2)),
      discoverRssMb: rssMb(discover.pid!),
    };
    for (const c of clients) c.send({ type: 'exit' });
  }
  result.wakeup = wake;
  result.targets = { 'p99 with 1000 waiters': '< 20 ms', 'p99 with 10000 waiters': '< 200 ms' };
} finally {
  discover.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(result, null, 2));
if (!smoke) {
  const outDir = join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${new Date().toISOString().slice(0, 10)}-discover.json`), JSON.stringify(result, null, 2) + '\n');
}
