// Benchmark: `shoal discover --kubernetes` on a large cluster. The fake Kubernetes API server
// (test/lib/fakeKubeApi.ts) runs in its own process with N Services and M endpoints; discover runs
// the built JavaScript (dist/cli.js) in another; long-poll clients in a third and fourth. Measures
// time to ready, discover's memory, and propagation: from an EndpointSlice change written to the
// API server until every client holding a snapshot of an app that depends on that Service has the
// new version.
//   npm run build && npx node bench/kubernetes.ts [--services 10000] [--endpoints 100000] [--clients 1000]
//     [--rounds 10] [--apps 1000] [--dependents 100] [--cpu-prof DIR] [--smoke]
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { percentile } from './lib/stats.ts';
import { cpuSeconds, memMb, onceMessage as once } from './lib/processes.ts';
import { machineInfo } from './lib/machine.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface KubernetesBenchOptions {
  services: number;
  /** Endpoints in all, spread evenly over the Services. */
  endpoints: number;
  clients: number;
  rounds: number;
  /** Apps with a mesh ConfigMap (each depends on 5 Services). */
  apps?: number;
  /** How many of those apps depend on the Service that changes; the clients hold their snapshots. */
  dependents?: number;
  /** A folder for discover's CPU profile (node --cpu-prof). */
  cpuProfDir?: string;
  log?: (line: string) => void;
}

export interface KubernetesBenchResult {
  scenario: 'kubernetes';
  date: string;
  machine: ReturnType<typeof machineInfo>;
  loadAverageAtEnd: number[];
  cluster: { services: number; endpoints: number; endpointSlices: number; apps: number; dependents: number; clients: number };
  /** From spawning discover until /readyz answered 200 (includes Node's start). */
  timeToReadyMs: number;
  /** discover's own figure: from listening until every informer listed and the snapshots were built. */
  listAndBuildMs: number | null;
  discoverRssMb: { afterReady: number; afterRounds: number; peak: number };
  discoverCpuSecondsToReady: number;
  propagation: { rounds: number; samples: number; p50Ms: number; p99Ms: number; maxMs: number; p99PerRoundMs: number[]; maxPerRoundMs: number[]; apiWriteMs: number[]; discoverCpuMsPerRound: number[] };
  targets: Record<string, { target: string; measured: number; met: boolean }>;
}

interface FakeInfo { url: string; token: string; kubeconfig: string; caFile: string }


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the whole scenario and returns its figures (also used by bench/run.ts). */
export async function runKubernetesBench(opts: KubernetesBenchOptions): Promise<KubernetesBenchResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const apps = Math.min(opts.apps ?? 1000, opts.services);
  const dependents = Math.min(opts.dependents ?? 100, apps);
  const perService = Math.max(1, Math.round(opts.endpoints / opts.services));
  const cli = join(root, 'dist', 'cli.js');
  if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run npm run build first');
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-k8s-'));
  const children: ChildProcess[] = [];
  const machine = machineInfo();
  try {
    // 1. The fake API server with the Services and their EndpointSlices (one slice per Service, 3 zones).
    log(`starting the fake API server with ${opts.services} Services x ${perService} endpoints ...`);
    const fake = spawn(process.execPath, [join(root, 'test', 'lib', 'fakeKubeApi.ts'), '--services', String(opts.services), '--endpoints', String(perService), '--dir', dir],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    children.push(fake);
    const info = await new Promise<FakeInfo>((resolve, reject) => {
      createInterface({ input: fake.stdout! }).once('line', (l) => resolve(JSON.parse(l) as FakeInfo));
      fake.once('exit', (code) => reject(new Error(`the fake API server exited (${code})`)));
    });
    const agent = new Agent({ connect: { ca: readFileSync(info.caFile) }, connections: 16 });
    const api = async (method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<any> => {
      const res = await request(`${info.url}${path}`, {
        method, dispatcher: agent,
        headers: { authorization: `Bearer ${info.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.body.text();
      if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`);
      return JSON.parse(text);
    };

    // 2. Mesh ConfigMaps: app-i (in ns-(i%50), as svc-i) depends on 5 Services; the first
    //    `dependents` apps also depend on svc-0, the Service that changes.
    const nsOf = (i: number) => `ns-${i % 50}`;
    log(`creating ${apps} mesh ConfigMaps ...`);
    const configMaps = Array.from({ length: apps }, (_, i) => {
      const others = [...new Set([1, 2, 3, 4, 5, 6].map((k) => (i + k * 997) % opts.services).filter((j) => j !== 0))];
      const deps = i < dependents ? [0, ...others.slice(0, 4)] : others.slice(0, 5);
      const spec = {
        base_ports: [{ port: 8080, protocol: 'http' }],
        base_services: deps.map((j) => ({ depend_service_alias: nsOf(j) === nsOf(i) ? `svc-${j}` : `svc-${j}.${nsOf(j)}`, port: 80, protocol: 'http' })),
      };
      return { ns: nsOf(i), body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `shoal-mesh-app-${i}`, namespace: nsOf(i), labels: { 'shoal.dev/app': `app-${i}`, 'shoal.dev/plugin-id': 'mesh' } }, data: { 'plugin-config': JSON.stringify(spec) } } };
    });
    for (let i = 0; i < configMaps.length; i += 50) {
      await Promise.all(configMaps.slice(i, i + 50).map((c) => api('POST', `/api/v1/namespaces/${c.ns}/configmaps`, c.body)));
    }

    // 3. discover, from the built JavaScript; time to ready is from spawn to /readyz 200.
    log('starting discover (dist/cli.js discover --kubernetes) ...');
    const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
    const t0 = performance.now();
    const discover = spawn(process.execPath, [...nodeArgs, cli, 'discover', '--kubernetes', '--kubeconfig', info.kubeconfig, '--host', '127.0.0.1', '--port', '0', '--insecure-reads', '--log-level', 'info'],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(discover);
    const lines: Array<Record<string, any>> = [];
    createInterface({ input: discover.stdout! }).on('line', (l) => {
      try { lines.push(JSON.parse(l)); } catch { /* not a log line */ }
    });
    let stopping = false;
    discover.once('exit', (code, signal) => {
      if (!stopping) log(`discover exited unexpectedly (${code ?? signal})`);
    });
    let port = 0;
    while (port === 0) {
      if (discover.exitCode !== null) throw new Error('discover exited before listening');
      port = lines.find((l) => l.msg === 'discover listening')?.port ?? 0;
      await sleep(10);
    }
    const base = `http://127.0.0.1:${port}`;
    for (;;) {
      const res = await request(`${base}/readyz`).catch(() => null);
      if (res) await res.body.text();
      if (res?.statusCode === 200) break;
      if (performance.now() - t0 > 300_000) throw new Error('discover not ready after 300 s');
      await sleep(20);
    }
    const timeToReadyMs = Math.round(performance.now() - t0);
    // The log line may trail the /readyz answer through the pipe.
    for (let i = 0; i < 100 && !lines.some((l) => l.msg === 'first full state loaded: ready'); i++) await sleep(20);
    const listAndBuildMs = (lines.find((l) => l.msg === 'first full state loaded: ready')?.ms as number | undefined) ?? null;
    const cpuToReady = cpuSeconds(discover.pid!);
    await sleep(1000);
    const afterReady = memMb(discover.pid!).rss;
    log(`ready in ${timeToReadyMs} ms (lists and first build ${listAndBuildMs} ms), RSS ${afterReady} MB`);

    // 4. Clients: spread over the dependent apps' snapshots, in two processes.
    const paths = Array.from({ length: dependents }, (_, i) => `/v2/snapshot/${nsOf(i)}/app-${i}`);
    const procs = opts.clients >= 500 ? 2 : 1;
    const clients = Array.from({ length: procs }, (_, i) => fork(join(root, 'bench', 'lib', 'longPollClients.ts'),
      ['127.0.0.1', String(port), paths[0], String(Math.floor(opts.clients / procs) + (i < opts.clients % procs ? 1 : 0)), paths.join(',')]));
    children.push(...clients);
    await Promise.all(clients.map((c) => once(c, 'open')));

    const versionOf = async (path: string) => {
      const res = await request(`${base}${path}`);
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode}`);
      return String(res.headers.etag).replace(/"/g, '');
    };
    const waiting = async () => {
      const res = await request(`${base}/metrics`);
      const text = await res.body.text();
      return Number(/^shoal_discover_longpoll_waiters(?:\{[^}]*\})? ([0-9]+)/m.exec(text)?.[1] ?? 0);
    };

    // The changing slice: svc-0's, one endpoint flips between ready and terminating.
    const sliceName = 'svc-0-xxxx0';
    const slicePath = `/apis/discovery.k8s.io/v1/namespaces/ns-0/endpointslices/${sliceName}`;
    const latencies: number[] = [];
    const p99PerRound: number[] = [];
    const maxPerRound: number[] = [];
    const apiWriteMs: number[] = [];
    // discover's CPU from the write until every client was answered (clock ticks of 10 ms): the
    // cost of a propagation, whatever else the machine runs.
    const cpuMs: number[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const versions: Record<string, string> = {};
      for (let i = 0; i < paths.length; i += 50) {
        await Promise.all(paths.slice(i, i + 50).map(async (p) => { versions[p] = await versionOf(p); }));
      }
      const sent = clients.map((c) => once(c, 'sent'));
      for (const c of clients) c.send({ type: 'wait', versions });
      await Promise.all(sent);
      while ((await waiting()) < opts.clients) await sleep(10);
      const slice = await api('GET', slicePath);
      const e = slice.endpoints[0];
      const ready = !(e.conditions?.ready ?? true);
      e.conditions = { ready, serving: true, terminating: !ready };
      const answered = clients.map((c) => once<{ statuses: Record<string, number>; stale: number }>(c, 'answered'));
      await sleep(50);
      const cpu0 = cpuSeconds(discover.pid!);
      const start = process.hrtime.bigint();
      await api('PUT', slicePath, slice);
      apiWriteMs.push(Number(process.hrtime.bigint() - start) / 1e6);
      const statuses = await Promise.all(answered);
      cpuMs.push(Math.round((cpuSeconds(discover.pid!) - cpu0) * 1000));
      const times = await Promise.all(clients.map((c) => {
        const p = once<{ times: string[] }>(c, 'times');
        c.send({ type: 'report' });
        return p;
      }));
      const ok = statuses.reduce((a, s) => a + (s.statuses['200'] ?? 0), 0);
      const stale = statuses.reduce((a, s) => a + (s.stale ?? 0), 0);
      if (ok !== opts.clients || stale > 0) throw new Error(`round ${r}: ${ok} of ${opts.clients} clients got 200, ${stale} got the version they held (${JSON.stringify(statuses)})`);
      const round = times.flatMap((t) => t.times.map((x) => Number(BigInt(x) - start) / 1e6)).sort((a, b) => a - b);
      p99PerRound.push(+percentile(round, 99).toFixed(2));
      maxPerRound.push(+round[round.length - 1].toFixed(2));
      latencies.push(...round);
      log(`round ${r + 1}/${opts.rounds}: p50 ${percentile(round, 50).toFixed(1)} ms, p99 ${percentile(round, 99).toFixed(1)} ms, max ${round[round.length - 1].toFixed(1)} ms`);
    }
    latencies.sort((a, b) => a - b);
    const mem = memMb(discover.pid!);
    for (const c of clients) c.send({ type: 'exit' });
    stopping = true;
    await agent.close();

    const result: KubernetesBenchResult = {
      scenario: 'kubernetes',
      date: new Date().toISOString(),
      machine,
      loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100),
      cluster: { services: opts.services, endpoints: perService * opts.services, endpointSlices: opts.services, apps, dependents, clients: opts.clients },
      timeToReadyMs,
      listAndBuildMs,
      discoverRssMb: { afterReady, afterRounds: mem.rss, peak: mem.peak },
      discoverCpuSecondsToReady: +cpuToReady.toFixed(2),
      propagation: {
        rounds: opts.rounds, samples: latencies.length,
        p50Ms: +percentile(latencies, 50).toFixed(2), p99Ms: +percentile(latencies, 99).toFixed(2), maxMs: +latencies[latencies.length - 1].toFixed(2),
        p99PerRoundMs: p99PerRound, maxPerRoundMs: maxPerRound, apiWriteMs: apiWriteMs.map((x) => +x.toFixed(2)),
        discoverCpuMsPerRound: cpuMs,
      },
      targets: {},
    };
    result.targets = {
      'time to ready': { target: '< 30000 ms', measured: timeToReadyMs, met: timeToReadyMs < 30_000 },
      'discover RSS (peak)': { target: '< 1024 MB', measured: mem.peak, met: mem.peak < 1024 },
      'propagation p99': { target: '< 100 ms', measured: result.propagation.p99Ms, met: result.propagation.p99Ms < 100 },
    };
    return result;
  } finally {
    for (const c of children.reverse()) if (c.exitCode === null) c.kill('SIGTERM');
    await sleep(300);
    rmSync(dir, { recursive: true, force: true });
  }
}

export function renderTable(r: KubernetesBenchResult): string {
  const rows = [
    ['cluster', `${r.cluster.services} Services, ${r.cluster.endpoints} endpoints, ${r.cluster.apps} apps (${r.cluster.dependents} depend on the changed Service), ${r.cluster.clients} long-poll clients`],
    ['time to ready', `${r.timeToReadyMs} ms (lists + first build: ${r.listAndBuildMs} ms; CPU ${r.discoverCpuSecondsToReady} s)`],
    ['discover RSS', `${r.discoverRssMb.afterReady} MB after ready, ${r.discoverRssMb.afterRounds} MB after the rounds, peak ${r.discoverRssMb.peak} MB`],
    ['propagation', `p50 ${r.propagation.p50Ms} ms, p99 ${r.propagation.p99Ms} ms, max ${r.propagation.maxMs} ms over ${r.propagation.rounds} rounds (${r.propagation.samples} samples)`],
    ['p99 per round', r.propagation.p99PerRoundMs.join(', ') + ' ms'],
    ['discover CPU per round', r.propagation.discoverCpuMsPerRound.join(', ') + ' ms (write -> every client answered)'],
    ['load average', `${r.machine.loadAverageAtStart.join(' ')} at start, ${r.loadAverageAtEnd.join(' ')} at end (${r.machine.cores} cores)`],
    ...Object.entries(r.targets).map(([k, t]) => [`target: ${k}`, `${t.target}: ${t.measured} ${t.met ? 'met' : 'MISSED'}`]),
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      services: { type: 'string', default: '10000' },
      endpoints: { type: 'string', default: '100000' },
      clients: { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '10' },
      apps: { type: 'string', default: '1000' },
      dependents: { type: 'string', default: '100' },
      'cpu-prof': { type: 'string' },
      smoke: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const smoke = values.smoke;
  const opts: KubernetesBenchOptions = smoke
    ? { services: 200, endpoints: 2000, clients: 100, rounds: 2, apps: 50, dependents: 10 }
    : {
      services: Number(values.services), endpoints: Number(values.endpoints), clients: Number(values.clients), rounds: Number(values.rounds),
      apps: Number(values.apps), dependents: Number(values.dependents), cpuProfDir: values['cpu-prof'],
    };
  for (const [k, v] of Object.entries(opts)) {
    if (typeof v === 'number' && !(Number.isInteger(v) && v > 0)) {
      console.error(`--${k} must be a positive integer, got ${v}`);
      process.exit(2);
    }
  }
  const result = await runKubernetesBench(opts);
  process.stdout.write(renderTable(result));
  if (!smoke) {
    const outDir = join(root, 'bench', 'results');
    mkdirSync(outDir, { recursive: true });
    const file = values.out ?? join(outDir, `${new Date().toISOString().slice(0, 10)}-kubernetes.json`);
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`written ${file}\n`);
  }
}
