// Benchmark: `shoal discover --kubernetes` on a large cluster, against the real control plane of
// scripts/kube.ts (etcd, kube-apiserver, kube-controller-manager built from the official Go modules;
// the same code the tests use). The cluster is filled through the API with bounded concurrency:
// N selector-less Services in 50 namespaces, each with one EndpointSlice written here (labelled
// kubernetes.io/service-name, and managed by `shoal-bench`, so the EndpointSlice controller leaves it
// alone), and the mesh ConfigMaps of the apps. discover runs the built JavaScript (dist/cli.js) in its
// own process, long-poll clients in one or two more. Measures how long loading took, discover's time
// to ready and memory, the propagation of an EndpointSlice update to every client, and beside them
// what kube-apiserver and etcd spent (CPU seconds and RSS from /proc of their pids) and the load
// average of the machine through the run.
//   npm run build && npx node bench/kubernetes.ts [--services 10000] [--endpoints 100000] [--clients 1000]
//     [--rounds 10] [--warmup 2] [--apps 1000] [--dependents 100] [--concurrency 32] [--cpu-prof DIR] [--smoke] [--out FILE]
// Without Go (or openssl) the control plane cannot be built: the run is skipped with one loud line.
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { ensureBuilt, goMissing, kubeCluster, kubeDown, kubeUp, pinnedVersion, type ComponentName } from '../scripts/kube.ts';
import { percentile } from './lib/stats.ts';
import { cpuSeconds, memMb, onceMessage as once } from './lib/processes.ts';
import { machineInfo } from './lib/machine.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface KubernetesBenchOptions {
  services: number;
  /** Endpoints in all, spread evenly over the Services (one EndpointSlice each). */
  endpoints: number;
  clients: number;
  rounds: number;
  /**
   * Rounds run first and reported on their own, not in the propagation figures: the first changes
   * after discover starts also pay for its JIT compiling the apply path and its writer threads
   * starting. Default 2.
   */
  warmupRounds?: number;
  /** Apps with a mesh ConfigMap (each depends on 5 Services). */
  apps?: number;
  /** How many of those apps depend on the Service that changes; the clients hold their snapshots. */
  dependents?: number;
  /** Writes in flight at once while loading the cluster. */
  concurrency?: number;
  /** A folder for discover's CPU profile (node --cpu-prof). */
  cpuProfDir?: string;
  log?: (line: string) => void;
}

/** What one control-plane process spent, read from /proc of its pid. */
export interface ComponentFigures {
  /** CPU seconds (user + system) per phase: start (kube up), load, discover's start (its lists), the rounds. */
  cpuSeconds: { start: number; load: number; discoverStart: number; rounds: number; total: number };
  rssMb: { afterLoad: number; afterDiscoverReady: number; end: number; peak: number };
}

export interface LoadAverageFigures {
  atStart: number[];
  atEnd: number[];
  /** The 1-minute load average sampled every 5 s, per phase: min, mean and max. */
  during: Record<'load' | 'discoverStart' | 'rounds' | 'whole', { min: number; mean: number; max: number; samples: number }>;
}

export interface KubernetesBenchResult {
  scenario: 'kubernetes';
  date: string;
  machine: ReturnType<typeof machineInfo>;
  /** The control plane: versions as built, and how long `kube up` took (binaries already built). */
  controlPlane: { kubernetes: string; etcd: string; upMs: number };
  cluster: {
    namespaces: number;
    services: number;
    endpoints: number;
    endpointSlices: number;
    apps: number;
    dependents: number;
    clients: number;
  };
  /** Writing the cluster through the API with `concurrency` writes in flight. */
  loading: {
    concurrency: number;
    writes: number;
    retries: number;
    ms: number;
    writesPerSecond: number;
    phasesMs: { namespaces: number; servicesAndSlices: number; configMaps: number };
  };
  /** From spawning discover until /readyz answered 200 (includes Node's start). */
  timeToReadyMs: number;
  /** discover's own figure: from listening until every informer listed and the snapshots were built. */
  listAndBuildMs: number | null;
  discoverRssMb: { afterReady: number; afterRounds: number; peak: number };
  discoverCpuSecondsToReady: number;
  /** kube-apiserver, etcd and kube-controller-manager, from /proc of their pids. */
  components: Record<ComponentName, ComponentFigures>;
  propagation: {
    rounds: number;
    samples: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    p99PerRoundMs: number[];
    maxPerRoundMs: number[];
    apiWriteMs: number[];
    discoverCpuMsPerRound: number[];
    /** The warm-up rounds (before the measured ones), and the p99 over them and the measured rounds together. */
    warmup: { rounds: number; p99PerRoundMs: number[]; maxPerRoundMs: number[]; p99WithWarmupMs: number };
  };
  loadAverage: LoadAverageFigures;
  /** Kept for readers of older results: the same as loadAverage.atEnd. */
  loadAverageAtEnd: number[];
  targets: Record<string, { target: string; measured: number; met: boolean }>;
}

/** Thrown when the machine lacks what the control plane needs; `skipped` names it. */
export class KubernetesBenchSkipped extends Error {
  readonly skipped = true;
}

/** What this machine lacks to run the benchmark (Go builds the control plane, openssl makes its certificates), or null. */
export function kubernetesBenchMissing(): string | null {
  const missing: string[] = [];
  const go = goMissing();
  if (go) missing.push(go);
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    missing.push("no openssl (the control plane's certificates are made with it)");
  }
  return missing.length ? missing.join('; ') : null;
}

/** The small run: a few hundred objects, used by the smoke test (test/bench/kubernetes.test.ts). */
export const SMOKE: KubernetesBenchOptions = {
  services: 200,
  endpoints: 2000,
  clients: 100,
  rounds: 2,
  warmupRounds: 1,
  apps: 50,
  dependents: 10,
  concurrency: 16,
};
export const FULL: KubernetesBenchOptions = {
  services: 10000,
  endpoints: 100000,
  clients: 1000,
  rounds: 10,
  warmupRounds: 2,
  apps: 1000,
  dependents: 100,
  concurrency: 32,
};

type Phase = 'start' | 'load' | 'discoverStart' | 'rounds';
const NAMESPACES = 50;
const MANAGED_BY = 'shoal-bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r2 = (x: number) => Math.round(x * 100) / 100;

/** Runs `fn` over ITEMS with at most `limit` calls in flight; the first failure stops the rest. */
export async function bounded<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (!failed && next < items.length) {
        try {
          await fn(items[next++]);
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    }),
  );
}

/** Runs the whole scenario and returns its figures (also used by bench/run.ts). */
export async function runKubernetesBench(opts: KubernetesBenchOptions): Promise<KubernetesBenchResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const missing = kubernetesBenchMissing();
  if (missing) throw new KubernetesBenchSkipped(`kubernetes benchmark skipped: ${missing}`);
  const apps = Math.min(opts.apps ?? 1000, opts.services);
  const dependents = Math.min(opts.dependents ?? 100, apps);
  const concurrency = opts.concurrency ?? 32;
  const perService = Math.max(1, Math.round(opts.endpoints / opts.services));
  if (perService > 1000)
    throw new Error(
      `--endpoints ${opts.endpoints} over --services ${opts.services} is ${perService} endpoints per Service: one EndpointSlice holds at most 1000`,
    );
  const cli = join(root, 'dist', 'cli.js');
  if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run npm run build first');

  // The binaries first (a first build takes many minutes), so `up` is timed alone.
  await ensureBuilt(log);
  const machine = machineInfo();
  // Load average through the run, per phase (the machine is shared: figures mean little without it).
  let phase: Phase = 'start';
  const loadSamples: Array<{ phase: Phase; load1: number }> = [];
  const sampleLoad = () => loadSamples.push({ phase, load1: loadavg()[0] });
  sampleLoad();
  const sampler = setInterval(sampleLoad, 5000);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-k8s-'));
  const clusterDir = join(dir, 'cluster');
  const children: ChildProcess[] = [];
  // The control plane runs detached (it outlives its starter): stop it if this process is ended first.
  let clusterStopped = false;
  const killCluster = () => {
    if (clusterStopped) return;
    for (const pid of Object.values(kubeCluster(clusterDir)?.pids ?? {})) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = () => process.exit(130); // 'exit' runs killCluster
  process.once('exit', killCluster);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let agent: Agent | undefined;
  try {
    log('starting the control plane (scripts/kube.ts: etcd, kube-apiserver, kube-controller-manager) ...');
    const upStart = performance.now();
    const cluster = await kubeUp(clusterDir, log);
    const upMs = Math.round(performance.now() - upStart);
    const pids = (): Record<ComponentName, number> => kubeCluster(clusterDir)!.pids;
    const names = Object.keys(cluster.pids) as ComponentName[];
    const cpuOf = () => Object.fromEntries(names.map((n) => [n, cpuSeconds(pids()[n])])) as Record<ComponentName, number>;
    const rssOf = () => Object.fromEntries(names.map((n) => [n, memMb(pids()[n]).rss])) as Record<ComponentName, number>;
    const cpuMarks: Array<Record<ComponentName, number>> = [cpuOf()];

    agent = new Agent({
      connect: { ca: readFileSync(cluster.caFile), cert: readFileSync(cluster.adminCertFile), key: readFileSync(cluster.adminKeyFile) },
      connections: concurrency,
      keepAliveTimeout: 60_000,
    });
    let writes = 0;
    let retries = 0;
    // One API call with the admin certificate; 429, 5xx and dropped connections are retried (and counted).
    const api = async (method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<any> => {
      for (let attempt = 0; ; attempt++) {
        let status = 0;
        let text = '';
        try {
          const res = await request(`${cluster.server}${path}`, {
            method,
            dispatcher: agent,
            headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          status = res.statusCode;
          text = await res.body.text();
        } catch (err) {
          if (attempt >= 5) throw new Error(`${method} ${path}: ${(err as Error).message}`, { cause: err });
        }
        // A create retried after a lost answer may find its object there already.
        if ((status >= 200 && status < 300) || (status === 409 && method === 'POST' && attempt > 0)) {
          if (method !== 'GET') writes++;
          return status === 409 ? null : JSON.parse(text);
        }
        if (status !== 0 && status !== 429 && status < 500) throw new Error(`${method} ${path}: ${status} ${text.slice(0, 300)}`);
        if (attempt >= 5) throw new Error(`${method} ${path}: ${status} after ${attempt + 1} attempts: ${text.slice(0, 300)}`);
        retries++;
        await sleep(100 * 2 ** attempt);
      }
    };

    // 1. The cluster, through the API: namespaces, then per Service its Service and its EndpointSlice,
    //    then the mesh ConfigMaps. Each write waits for its answer; `concurrency` are in flight.
    phase = 'load';
    sampleLoad();
    const nsOf = (i: number) => `ns-${i % NAMESPACES}`;
    const namespaces = Array.from({ length: Math.min(NAMESPACES, opts.services) }, (_, i) => nsOf(i));
    log(
      `loading ${opts.services} Services with ${perService} endpoints each in ${namespaces.length} namespaces, and ${apps} mesh ConfigMaps (${concurrency} writes in flight) ...`,
    );
    const loadStart = performance.now();
    await bounded(namespaces, concurrency, async (ns) => {
      await api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    });
    const nsMs = performance.now() - loadStart;
    const ipOf = (n: number) => `10.${244 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
    let loaded = 0;
    await bounded(
      Array.from({ length: opts.services }, (_, i) => i),
      concurrency,
      async (i) => {
        const ns = nsOf(i);
        const name = `svc-${i}`;
        // Selector-less: no controller makes its endpoints; the slice below is the only one.
        await api('POST', `/api/v1/namespaces/${ns}/services`, {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name, namespace: ns },
          spec: { ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' }] },
        });
        await api('POST', `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: {
            name: `${name}-bench`,
            namespace: ns,
            labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': MANAGED_BY },
          },
          addressType: 'IPv4',
          endpoints: Array.from({ length: perService }, (_, j) => {
            const n = i * perService + j + 1;
            return {
              addresses: [ipOf(n)],
              conditions: { ready: true, serving: true, terminating: false },
              nodeName: `node-${n % 100}`,
              zone: `zone-${j % 3}`,
              targetRef: { kind: 'Pod', namespace: ns, name: `${name}-${j}` },
            };
          }),
          ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' }],
        });
        if (++loaded % 1000 === 0) log(`  ${loaded} Services and slices in ${((performance.now() - loadStart) / 1000).toFixed(1)} s`);
      },
    );
    const servicesMs = performance.now() - loadStart - nsMs;

    // app-i (in ns-(i%50)) depends on 5 Services; the first `dependents` apps also on svc-0, the one that changes.
    const configMaps = Array.from({ length: apps }, (_, i) => {
      const others = [...new Set([1, 2, 3, 4, 5, 6].map((k) => (i + k * 997) % opts.services).filter((j) => j !== 0))];
      const deps = i < dependents ? [0, ...others.slice(0, 4)] : others.slice(0, 5);
      const spec = {
        base_ports: [{ port: 8080, protocol: 'http' }],
        base_services: deps.map((j) => ({
          depend_service_alias: nsOf(j) === nsOf(i) ? `svc-${j}` : `svc-${j}.${nsOf(j)}`,
          port: 80,
          protocol: 'http',
        })),
      };
      return {
        ns: nsOf(i),
        deps: deps.length,
        body: {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: `shoal-mesh-app-${i}`,
            namespace: nsOf(i),
            labels: { 'shoal.dev/app': `app-${i}`, 'shoal.dev/plugin-id': 'mesh' },
          },
          data: { 'plugin-config': JSON.stringify(spec) },
        },
      };
    });
    await bounded(configMaps, concurrency, async (c) => {
      await api('POST', `/api/v1/namespaces/${c.ns}/configmaps`, c.body);
    });
    const loadMs = performance.now() - loadStart;
    const configMapsMs = loadMs - nsMs - servicesMs;
    const loadWrites = writes;
    cpuMarks.push(cpuOf());
    const rssAfterLoad = rssOf();
    log(
      `loaded ${loadWrites} objects in ${(loadMs / 1000).toFixed(1)} s (${Math.round(loadWrites / (loadMs / 1000))} writes/s, ${retries} retried)`,
    );

    // 2. discover, from the built JavaScript, with the admin kubeconfig; time to ready is from spawn to /readyz 200.
    phase = 'discoverStart';
    sampleLoad();
    log('starting discover (dist/cli.js discover --kubernetes) ...');
    const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
    const t0 = performance.now();
    const discover = spawn(
      process.execPath,
      [
        ...nodeArgs,
        cli,
        'discover',
        '--kubernetes',
        '--kubeconfig',
        cluster.kubeconfig,
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--insecure-reads',
        '--log-level',
        'info',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(discover);
    const lines: Array<Record<string, any>> = [];
    createInterface({ input: discover.stdout! }).on('line', (l) => {
      try {
        lines.push(JSON.parse(l));
      } catch {
        /* not a log line */
      }
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
      if (discover.exitCode !== null) throw new Error('discover exited before it was ready');
      if (performance.now() - t0 > 300_000) throw new Error('discover not ready after 300 s');
      await sleep(20);
    }
    const timeToReadyMs = Math.round(performance.now() - t0);
    // The log line may trail the /readyz answer through the pipe.
    for (let i = 0; i < 100 && !lines.some((l) => l.msg === 'first full state loaded: ready'); i++) await sleep(20);
    const listAndBuildMs = (lines.find((l) => l.msg === 'first full state loaded: ready')?.ms as number | undefined) ?? null;
    const cpuToReady = cpuSeconds(discover.pid!);
    cpuMarks.push(cpuOf());
    await sleep(1000);
    const afterReady = memMb(discover.pid!).rss;
    const rssAfterReady = rssOf();
    log(`ready in ${timeToReadyMs} ms (lists and first build ${listAndBuildMs} ms), RSS ${afterReady} MB`);

    const snapshotOf = async (path: string) => {
      const res = await request(`${base}${path}`);
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode} ${text.slice(0, 300)}`);
      return { version: String(res.headers.etag).replace(/"/g, ''), json: JSON.parse(text) };
    };
    // What was loaded is what discover serves: app-0's dependencies, each with every endpoint of its slice.
    const first = (await snapshotOf(`/v2/snapshot/${nsOf(0)}/app-0`)).json as {
      clusters: Array<{ name: string; endpoints: Array<{ port: number; ready: boolean }> }>;
    };
    const short = first.clusters.filter((c) => c.endpoints.length !== perService || c.endpoints.some((e) => e.port !== 8080 || !e.ready));
    if (first.clusters.length !== configMaps[0].deps || short.length) {
      throw new Error(
        `app-0's snapshot does not hold what was loaded: ${first.clusters.length} clusters (want ${configMaps[0].deps}), not ${perService} ready endpoints on 8080: ${short.map((c) => c.name).join(', ')}`,
      );
    }

    // 3. Clients: spread over the dependent apps' snapshots, in two processes.
    phase = 'rounds';
    sampleLoad();
    const paths = Array.from({ length: dependents }, (_, i) => `/v2/snapshot/${nsOf(i)}/app-${i}`);
    const procs = opts.clients >= 500 ? 2 : 1;
    const clients = Array.from({ length: procs }, (_, i) =>
      fork(join(root, 'bench', 'lib', 'longPollClients.ts'), [
        '127.0.0.1',
        String(port),
        paths[0],
        String(Math.floor(opts.clients / procs) + (i < opts.clients % procs ? 1 : 0)),
        paths.join(','),
      ]),
    );
    children.push(...clients);
    await Promise.all(clients.map((c) => once(c, 'open')));
    const waiting = async () => {
      const res = await request(`${base}/metrics`);
      const text = await res.body.text();
      return Number(/^shoal_discover_longpoll_waiters(?:\{[^}]*\})? ([0-9]+)/m.exec(text)?.[1] ?? 0);
    };

    // A round: svc-0's slice has one endpoint flip between ready and terminating (an EndpointSlice
    // update through the API), and ends when every client holds the new version.
    const slicePath = `/apis/discovery.k8s.io/v1/namespaces/${nsOf(0)}/endpointslices/svc-0-bench`;
    const latencies: number[] = [];
    const p99PerRound: number[] = [];
    const maxPerRound: number[] = [];
    const apiWriteMs: number[] = [];
    // discover's CPU from the write until every client was answered (clock ticks of 10 ms).
    const cpuMs: number[] = [];
    const warmupRounds = opts.warmupRounds ?? 2;
    const warmupP99: number[] = [];
    const warmupMax: number[] = [];
    const withWarmup: number[] = [];
    for (let r = -warmupRounds; r < opts.rounds; r++) {
      const versions: Record<string, string> = {};
      await bounded(paths, 50, async (p) => {
        versions[p] = (await snapshotOf(p)).version;
      });
      const sent = clients.map((c) => once(c, 'sent'));
      for (const c of clients) c.send({ type: 'wait', versions });
      await Promise.all(sent);
      while ((await waiting()) < opts.clients) await sleep(10);
      const slice = await api('GET', slicePath);
      const e = slice.endpoints[0];
      const ready = !(e.conditions?.ready ?? true);
      e.conditions = { ready, serving: true, terminating: !ready };
      const answered = clients.map((c) => once<{ statuses: Record<string, number>; stale?: number }>(c, 'answered'));
      await sleep(50);
      const cpu0 = cpuSeconds(discover.pid!);
      const start = process.hrtime.bigint();
      await api('PUT', slicePath, slice);
      const apiMs = Number(process.hrtime.bigint() - start) / 1e6;
      const statuses = await Promise.all(answered);
      const roundCpuMs = Math.round((cpuSeconds(discover.pid!) - cpu0) * 1000);
      const times = await Promise.all(
        clients.map((c) => {
          const p = once<{ times: string[] }>(c, 'times');
          c.send({ type: 'report' });
          return p;
        }),
      );
      const ok = statuses.reduce((a, s) => a + (s.statuses['200'] ?? 0), 0);
      const stale = statuses.reduce((a, s) => a + (s.stale ?? 0), 0);
      if (ok !== opts.clients || stale > 0)
        throw new Error(
          `round ${r}: ${ok} of ${opts.clients} clients got 200, ${stale} got the version they held (${JSON.stringify(statuses)})`,
        );
      const round = times.flatMap((t) => t.times.map((x) => Number(BigInt(x) - start) / 1e6)).sort((a, b) => a - b);
      withWarmup.push(...round);
      const summary = `p50 ${percentile(round, 50).toFixed(1)} ms, p99 ${percentile(round, 99).toFixed(1)} ms, max ${round[round.length - 1].toFixed(1)} ms`;
      if (r < 0) {
        warmupP99.push(r2(percentile(round, 99)));
        warmupMax.push(r2(round[round.length - 1]));
        log(`warm-up round ${r + warmupRounds + 1}/${warmupRounds}: ${summary}`);
        continue;
      }
      apiWriteMs.push(apiMs);
      cpuMs.push(roundCpuMs);
      p99PerRound.push(r2(percentile(round, 99)));
      maxPerRound.push(r2(round[round.length - 1]));
      latencies.push(...round);
      log(`round ${r + 1}/${opts.rounds}: ${summary}`);
    }
    latencies.sort((a, b) => a - b);
    withWarmup.sort((a, b) => a - b);
    cpuMarks.push(cpuOf());
    const mem = memMb(discover.pid!);
    const components = Object.fromEntries(
      names.map((n) => {
        const m = memMb(pids()[n]);
        const [atUp, afterLoad, afterReady, end] = cpuMarks.map((c) => c[n]);
        return [
          n,
          {
            cpuSeconds: {
              start: r2(atUp),
              load: r2(afterLoad - atUp),
              discoverStart: r2(afterReady - afterLoad),
              rounds: r2(end - afterReady),
              total: r2(end),
            },
            rssMb: { afterLoad: rssAfterLoad[n], afterDiscoverReady: rssAfterReady[n], end: m.rss, peak: m.peak },
          } satisfies ComponentFigures,
        ];
      }),
    ) as Record<ComponentName, ComponentFigures>;
    for (const c of clients) c.send({ type: 'exit' });
    stopping = true;

    clearInterval(sampler);
    sampleLoad();
    const stats = (xs: number[]) => ({
      min: r2(Math.min(...xs)),
      mean: r2(xs.reduce((a, b) => a + b, 0) / xs.length),
      max: r2(Math.max(...xs)),
      samples: xs.length,
    });
    const of = (p: Phase) => loadSamples.filter((s) => s.phase === p).map((s) => s.load1);
    const atEnd = loadavg().map(r2);
    const loadAverage: LoadAverageFigures = {
      atStart: machine.loadAverageAtStart,
      atEnd,
      during: {
        load: stats(of('load')),
        discoverStart: stats(of('discoverStart')),
        rounds: stats(of('rounds')),
        whole: stats(loadSamples.map((s) => s.load1)),
      },
    };
    const result: KubernetesBenchResult = {
      scenario: 'kubernetes',
      date: new Date().toISOString(),
      machine,
      controlPlane: {
        kubernetes: pinnedVersion(join(root, 'kube'), 'k8s.io/kubernetes'),
        etcd: pinnedVersion(join(root, 'kube'), 'go.etcd.io/etcd/server/v3'),
        upMs,
      },
      cluster: {
        namespaces: namespaces.length,
        services: opts.services,
        endpoints: perService * opts.services,
        endpointSlices: opts.services,
        apps,
        dependents,
        clients: opts.clients,
      },
      loading: {
        concurrency,
        writes: loadWrites,
        retries,
        ms: Math.round(loadMs),
        writesPerSecond: Math.round(loadWrites / (loadMs / 1000)),
        phasesMs: { namespaces: Math.round(nsMs), servicesAndSlices: Math.round(servicesMs), configMaps: Math.round(configMapsMs) },
      },
      timeToReadyMs,
      listAndBuildMs,
      discoverRssMb: { afterReady, afterRounds: mem.rss, peak: mem.peak },
      discoverCpuSecondsToReady: r2(cpuToReady),
      components,
      propagation: {
        rounds: opts.rounds,
        samples: latencies.length,
        p50Ms: r2(percentile(latencies, 50)),
        p99Ms: r2(percentile(latencies, 99)),
        maxMs: r2(latencies[latencies.length - 1]),
        p99PerRoundMs: p99PerRound,
        maxPerRoundMs: maxPerRound,
        apiWriteMs: apiWriteMs.map(r2),
        discoverCpuMsPerRound: cpuMs,
        warmup: {
          rounds: warmupRounds,
          p99PerRoundMs: warmupP99,
          maxPerRoundMs: warmupMax,
          p99WithWarmupMs: r2(percentile(withWarmup, 99)),
        },
      },
      loadAverage,
      loadAverageAtEnd: atEnd,
      targets: {},
    };
    result.targets = {
      'time to ready': { target: '< 30000 ms', measured: timeToReadyMs, met: timeToReadyMs < 30_000 },
      'discover RSS (peak)': { target: '< 1024 MB', measured: mem.peak, met: mem.peak < 1024 },
      'propagation p99': { target: '< 100 ms', measured: result.propagation.p99Ms, met: result.propagation.p99Ms < 100 },
    };
    return result;
  } finally {
    clearInterval(sampler);
    await agent?.close();
    for (const c of children.reverse()) if (c.exitCode === null) c.kill('SIGTERM');
    await sleep(300);
    await kubeDown(clusterDir);
    clusterStopped = true;
    rmSync(dir, { recursive: true, force: true });
    process.removeListener('exit', killCluster);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

export function renderTable(r: KubernetesBenchResult): string {
  const c = (n: ComponentName) => {
    const x = r.components[n];
    return `CPU ${x.cpuSeconds.load} s loading, ${x.cpuSeconds.discoverStart} s during discover's start, ${x.cpuSeconds.rounds} s in the rounds (${x.cpuSeconds.total} s in all); RSS ${x.rssMb.afterLoad} MB after loading, ${x.rssMb.end} MB at the end, peak ${x.rssMb.peak} MB`;
  };
  const la = r.loadAverage;
  const during = (k: keyof LoadAverageFigures['during']) => `${la.during[k].min}-${la.during[k].max} (mean ${la.during[k].mean})`;
  const rows = [
    ['control plane', `Kubernetes ${r.controlPlane.kubernetes}, etcd ${r.controlPlane.etcd}; up in ${r.controlPlane.upMs} ms`],
    [
      'cluster',
      `${r.cluster.services} Services in ${r.cluster.namespaces} namespaces, ${r.cluster.endpoints} endpoints in ${r.cluster.endpointSlices} EndpointSlices, ${r.cluster.apps} apps (${r.cluster.dependents} depend on the changed Service), ${r.cluster.clients} long-poll clients`,
    ],
    [
      'loading',
      `${r.loading.writes} writes in ${r.loading.ms} ms (${r.loading.writesPerSecond}/s, ${r.loading.concurrency} in flight, ${r.loading.retries} retried): Services and slices ${r.loading.phasesMs.servicesAndSlices} ms, ConfigMaps ${r.loading.phasesMs.configMaps} ms`,
    ],
    ['time to ready', `${r.timeToReadyMs} ms (lists + first build: ${r.listAndBuildMs} ms; CPU ${r.discoverCpuSecondsToReady} s)`],
    [
      'discover RSS',
      `${r.discoverRssMb.afterReady} MB after ready, ${r.discoverRssMb.afterRounds} MB after the rounds, peak ${r.discoverRssMb.peak} MB`,
    ],
    [
      'propagation',
      `p50 ${r.propagation.p50Ms} ms, p99 ${r.propagation.p99Ms} ms, max ${r.propagation.maxMs} ms over ${r.propagation.rounds} rounds (${r.propagation.samples} samples)`,
    ],
    ['p99 per round', r.propagation.p99PerRoundMs.join(', ') + ' ms'],
    [
      'warm-up rounds',
      r.propagation.warmup.rounds === 0
        ? 'none'
        : `${r.propagation.warmup.rounds} before these, not counted above: p99 per round ${r.propagation.warmup.p99PerRoundMs.join(', ')} ms; p99 with them counted ${r.propagation.warmup.p99WithWarmupMs} ms`,
    ],
    ['API write per round', r.propagation.apiWriteMs.join(', ') + ' ms'],
    ['discover CPU per round', r.propagation.discoverCpuMsPerRound.join(', ') + ' ms (write -> every client answered)'],
    ['kube-apiserver', c('kube-apiserver')],
    ['etcd', c('etcd')],
    ['kube-controller-manager', c('kube-controller-manager')],
    [
      'load average (1 min)',
      `loading ${during('load')}, discover's start ${during('discoverStart')}, rounds ${during('rounds')}; ${la.atStart.join(' ')} at start, ${la.atEnd.join(' ')} at end (${r.machine.cores} cores)`,
    ],
    ...Object.entries(r.targets).map(([k, t]) => [`target: ${k}`, `${t.target}: ${t.measured} ${t.met ? 'met' : 'MISSED'}`]),
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      services: { type: 'string', default: String(FULL.services) },
      endpoints: { type: 'string', default: String(FULL.endpoints) },
      clients: { type: 'string', default: String(FULL.clients) },
      rounds: { type: 'string', default: String(FULL.rounds) },
      warmup: { type: 'string', default: String(FULL.warmupRounds) },
      apps: { type: 'string', default: String(FULL.apps) },
      dependents: { type: 'string', default: String(FULL.dependents) },
      concurrency: { type: 'string', default: String(FULL.concurrency) },
      'cpu-prof': { type: 'string' },
      smoke: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const smoke = values.smoke;
  const opts: KubernetesBenchOptions = smoke
    ? { ...SMOKE }
    : {
        services: Number(values.services),
        endpoints: Number(values.endpoints),
        clients: Number(values.clients),
        rounds: Number(values.rounds),
        warmupRounds: Number(values.warmup),
        apps: Number(values.apps),
        dependents: Number(values.dependents),
        concurrency: Number(values.concurrency),
        cpuProfDir: values['cpu-prof'],
      };
  for (const [k, v] of Object.entries(opts)) {
    if (typeof v === 'number' && !(Number.isInteger(v) && (v > 0 || (k === 'warmupRounds' && v === 0)))) {
      console.error(
        `--${k === 'warmupRounds' ? 'warmup' : k} must be a ${k === 'warmupRounds' ? 'non-negative' : 'positive'} integer, got ${v}`,
      );
      process.exit(2);
    }
  }
  let result: KubernetesBenchResult;
  try {
    result = await runKubernetesBench(opts);
  } catch (err) {
    if (err instanceof KubernetesBenchSkipped) {
      process.stderr.write(`\n*** ${err.message} ***\n\n`);
      process.exit(0);
    }
    throw err;
  }
  process.stdout.write(renderTable(result));
  if (!smoke || values.out) {
    const file = values.out ?? join(root, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}-kubernetes.json`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`written ${file}\n`);
  }
}
