// Benchmark: Gateway API routes at scale with `shoal discover --kubernetes`, against the real control
// plane of scripts/kube.ts (which installs the Gateway API CRDs). The cluster is written through the
// API: N selector-less Services in 50 namespaces, each with one EndpointSlice (managed by the bench),
// R producer HTTPRoutes per Service (parentRef: the Service; a few matches and a weighted split between
// the Service and another of its namespace), and the mesh ConfigMaps of the apps, D of which depend on
// svc-0. discover runs the built JavaScript (dist/cli.js); long-poll clients hold the snapshots of the
// D apps. A round flips the split weights of one route of svc-0 (a PUT through the API) and is timed
// from the write until every client holds the new version; discover's own apply time for the change is
// read from its 'topology applied' log line (applyMs, rebuilt). Warm-up rounds are reported apart. As a
// baseline, EndpointSlice changes of svc-0 (the same apps rebuilt) are interleaved with the route changes.
//   npm run build && npx node bench/gatewayRoutes.ts [--services 500] [--endpoints-per-service 10]
//     [--routes-per-service 2] [--apps 500] [--dependents 100] [--clients 1000] [--rounds 10] [--warmup 2]
//     [--concurrency 32] [--no-baseline] [--cpu-prof DIR] [--smoke] [--out FILE]
// Without Go (or openssl) the control plane cannot be built: the run is skipped with one loud line.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { ensureBuilt, kubeCluster, kubeDown, kubeUp, pinnedVersion, type ComponentName } from '../scripts/kube.ts';
import { bounded, KubernetesBenchSkipped, kubernetesBenchMissing, type LoadAverageFigures } from './kubernetes.ts';
import { percentile } from './lib/stats.ts';
import { cpuSeconds, memMb, onceMessage as once } from './lib/processes.ts';
import { machineInfo } from './lib/machine.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface GatewayRoutesBenchOptions {
  services: number;
  endpointsPerService: number;
  /** Producer HTTPRoutes per Service (each with a few matches and a weighted split). */
  routesPerService: number;
  /** Apps with a mesh ConfigMap (each depends on up to 5 Services). */
  apps: number;
  /** How many of those apps depend on svc-0, whose route changes; the clients hold their snapshots. */
  dependents: number;
  clients: number;
  rounds: number;
  /** Rounds run first and reported on their own (discover's JIT and writer threads warm up). */
  warmupRounds: number;
  /** Writes in flight at once while loading the cluster. */
  concurrency: number;
  /** Interleave as many EndpointSlice changes of the same Service (same apps rebuilt) as a baseline. */
  baseline: boolean;
  cpuProfDir?: string;
  log?: (line: string) => void;
}

export interface GatewayRoutesBenchResult {
  scenario: 'gateway-routes';
  date: string;
  machine: ReturnType<typeof machineInfo>;
  controlPlane: { kubernetes: string; etcd: string; gatewayApi: string; upMs: number };
  cluster: {
    namespaces: number;
    services: number;
    endpoints: number;
    httpRoutes: number;
    routeRulesInSnapshot: number;
    apps: number;
    dependents: number;
    clients: number;
  };
  loading: {
    concurrency: number;
    writes: number;
    retries: number;
    ms: number;
    writesPerSecond: number;
    phasesMs: { servicesAndSlices: number; routes: number; configMaps: number };
  };
  timeToReadyMs: number;
  listAndBuildMs: number | null;
  /** After ready, until every HTTPRoute carried shoal's status for its generation (discover's writes of the first load). */
  statusWrittenMs: number;
  /** After ready, until that and discover's log was quiet for 2 s: the rounds start then. */
  settleMs: number;
  /** HTTPRoutes other than the changed one whose resourceVersion moved during the rounds (status rewrites). */
  otherRoutesWrittenDuringRounds: number;
  discoverRssMb: { afterReady: number; afterRounds: number; peak: number };
  discoverCpuSecondsToReady: number;
  /** discover's 'topology applied' for each measured change: the first apply after the write that rebuilt apps. */
  apply: {
    applyMsPerRound: number[];
    rebuiltPerRound: number[];
    appliesPerRound: number[];
    p50Ms: number;
    maxMs: number;
    warmupApplyMs: number[];
  };
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
    warmup: { rounds: number; p99PerRoundMs: number[]; maxPerRoundMs: number[]; p99WithWarmupMs: number };
  };
  /** The EndpointSlice changes interleaved with the route changes (same Service, same apps), or null. */
  baseline: {
    rounds: number;
    p50Ms: number;
    p99Ms: number;
    p99PerRoundMs: number[];
    applyMsPerRound: number[];
    applyP50Ms: number;
    discoverCpuMsPerRound: number[];
    apiWriteMs: number[];
  } | null;
  components: Record<ComponentName, { cpuSecondsRounds: number; rssMbEnd: number }>;
  loadAverage: LoadAverageFigures;
  targets: Record<string, { target: string; measured: number; met: boolean }>;
}

export const SMOKE: GatewayRoutesBenchOptions = {
  services: 100,
  endpointsPerService: 4,
  routesPerService: 2,
  apps: 50,
  dependents: 10,
  clients: 100,
  rounds: 2,
  warmupRounds: 1,
  concurrency: 16,
  baseline: true,
};
export const FULL: GatewayRoutesBenchOptions = {
  services: 500,
  endpointsPerService: 10,
  routesPerService: 2,
  apps: 500,
  dependents: 100,
  clients: 1000,
  rounds: 10,
  warmupRounds: 2,
  concurrency: 32,
  baseline: true,
};

type Phase = 'start' | 'load' | 'discoverStart' | 'rounds';
const MANAGED_BY = 'shoal-bench';
const ROUTES = '/apis/gateway.networking.k8s.io/v1';
const CONTROLLER = 'shoal.dev/mesh';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r2 = (x: number) => Math.round(x * 100) / 100;

/** The options, checked: a clear error naming the first one that is wrong. */
export function checkOptions(o: GatewayRoutesBenchOptions): void {
  for (const k of [
    'services',
    'endpointsPerService',
    'routesPerService',
    'apps',
    'dependents',
    'clients',
    'rounds',
    'concurrency',
    'warmupRounds',
  ] as const) {
    const v = o[k];
    if (!Number.isInteger(v) || v < (k === 'warmupRounds' ? 0 : 1))
      throw new Error(`${k} must be a ${k === 'warmupRounds' ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
  if (o.services < 2) throw new Error(`services must be at least 2 (a route splits between two Services), got ${o.services}`);
  if (o.endpointsPerService > 1000) throw new Error(`endpointsPerService ${o.endpointsPerService}: one EndpointSlice holds at most 1000`);
  if (o.dependents > o.apps) throw new Error(`dependents (${o.dependents}) cannot exceed apps (${o.apps})`);
  if (o.apps > o.services) throw new Error(`apps (${o.apps}) cannot exceed services (${o.services}): app-i lives beside svc-i`);
}

/** Producer route K of Service I in namespace NS: a few matches, a weighted split between svc-I and svc-OTHER (same namespace). */
export function benchRoute(ns: string, i: number, k: number, other: number, weights: [number, number]): any {
  const split = [
    { name: `svc-${i}`, port: 80, weight: weights[0] },
    { name: `svc-${other}`, port: 80, weight: weights[1] },
  ];
  const matches = [
    { path: { type: 'PathPrefix', value: `/r${k}/api` }, method: 'GET' },
    { path: { type: 'Exact', value: `/r${k}/healthz` } },
    { path: { type: 'PathPrefix', value: `/r${k}` }, headers: [{ type: 'Exact', name: 'x-tenant', value: `t${k}` }] },
    { path: { type: 'PathPrefix', value: `/r${k}/q` }, queryParams: [{ type: 'Exact', name: 'canary', value: '1' }] },
  ];
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: `svc-${i}-r${k}`, namespace: ns },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: `svc-${i}`, port: 80 }], rules: [{ matches, backendRefs: split }] },
  };
}

export async function runGatewayRoutesBench(opts: GatewayRoutesBenchOptions): Promise<GatewayRoutesBenchResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  checkOptions(opts);
  const missing = kubernetesBenchMissing();
  if (missing) throw new KubernetesBenchSkipped(`gateway-routes benchmark skipped: ${missing}`);
  const { services, endpointsPerService: perService, routesPerService, apps, dependents, concurrency } = opts;
  const cli = join(root, 'dist', 'cli.js');
  if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run npm run build first');
  await ensureBuilt(log);
  const machine = machineInfo();
  let phase: Phase = 'start';
  const loadSamples: Array<{ phase: Phase; load1: number }> = [];
  const sampleLoad = () => loadSamples.push({ phase, load1: loadavg()[0] });
  sampleLoad();
  const sampler = setInterval(sampleLoad, 5000);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-gw-'));
  const clusterDir = join(dir, 'cluster');
  const children: ChildProcess[] = [];
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
  const onSignal = () => process.exit(130);
  process.once('exit', killCluster);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let agent: Agent | undefined;
  try {
    log('starting the control plane with the Gateway API CRDs (scripts/kube.ts) ...');
    const upStart = performance.now();
    const cluster = await kubeUp(clusterDir, log);
    const upMs = Math.round(performance.now() - upStart);
    const pids = (): Record<ComponentName, number> => kubeCluster(clusterDir)!.pids;
    const names = Object.keys(cluster.pids) as ComponentName[];
    const cpuOf = () => Object.fromEntries(names.map((n) => [n, cpuSeconds(pids()[n])])) as Record<ComponentName, number>;

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

    // 1. The cluster through the API.
    phase = 'load';
    sampleLoad();
    const nsCount = Math.min(50, Math.floor(services / 2));
    const nsOf = (i: number) => `ns-${i % nsCount}`;
    // The other backend of svc-i's routes: a Service of the same namespace (no ReferenceGrant needed).
    const otherOf = (i: number) => (i + nsCount < services ? i + nsCount : i - nsCount);
    const namespaces = Array.from({ length: nsCount }, (_, i) => `ns-${i}`);
    log(
      `loading ${services} Services (${perService} endpoints each), ${services * routesPerService} HTTPRoutes and ${apps} mesh ConfigMaps in ${nsCount} namespaces (${concurrency} writes in flight) ...`,
    );
    const loadStart = performance.now();
    await bounded(namespaces, concurrency, async (ns) => {
      await api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    });
    const ipOf = (n: number) => `10.${244 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
    await bounded(
      Array.from({ length: services }, (_, i) => i),
      concurrency,
      async (i) => {
        const ns = nsOf(i);
        const name = `svc-${i}`;
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
            };
          }),
          ports: [{ name: 'http', port: 8080, protocol: 'TCP', appProtocol: 'http' }],
        });
      },
    );
    const servicesMs = performance.now() - loadStart;
    const routeJobs = Array.from({ length: services * routesPerService }, (_, n) => ({
      i: Math.floor(n / routesPerService),
      k: n % routesPerService,
    }));
    await bounded(routeJobs, concurrency, async ({ i, k }) => {
      await api('POST', `${ROUTES}/namespaces/${nsOf(i)}/httproutes`, benchRoute(nsOf(i), i, k, otherOf(i), [90, 10]));
    });
    const routesMs = performance.now() - loadStart - servicesMs;
    // app-i (in svc-i's namespace) depends on up to 5 Services; the first `dependents` apps on svc-0 too.
    const configMaps = Array.from({ length: apps }, (_, i) => {
      const others = [...new Set([1, 2, 3, 4, 5, 6].map((k) => (i + k * 97) % services).filter((j) => j !== 0))];
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
    const loadWrites = writes;
    log(`loaded ${loadWrites} objects in ${(loadMs / 1000).toFixed(1)} s (${retries} retried)`);

    // 2. discover from the built JavaScript.
    phase = 'discoverStart';
    sampleLoad();
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
        lines.push({ ...JSON.parse(l), seenAt: performance.now() });
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
    for (let i = 0; i < 100 && !lines.some((l) => l.msg === 'first full state loaded: ready'); i++) await sleep(20);
    const listAndBuildMs = (lines.find((l) => l.msg === 'first full state loaded: ready')?.ms as number | undefined) ?? null;
    const cpuToReady = cpuSeconds(discover.pid!);
    // The first load makes discover write every route's status (debug-level lines, not seen at info):
    // the rounds start once every HTTPRoute carries shoal's entry for its generation, so they do not
    // share the machine with those writes.
    const settleStart = performance.now();
    const routeList = async () =>
      (await api('GET', `${ROUTES}/httproutes`)).items as Array<{
        metadata: { namespace: string; name: string; generation: number; resourceVersion: string };
        status?: { parents?: Array<{ controllerName?: string; conditions?: Array<{ type: string; observedGeneration?: number }> }> };
      }>;
    const totalRoutes = services * routesPerService;
    let withStatus = 0;
    for (;;) {
      const items = await routeList();
      withStatus = items.filter((r) =>
        (r.status?.parents ?? []).some(
          (e) =>
            e.controllerName === CONTROLLER &&
            (e.conditions ?? []).some((c) => c.type === 'Accepted' && c.observedGeneration === r.metadata.generation),
        ),
      ).length;
      if (items.length === totalRoutes && withStatus === totalRoutes) break;
      if (performance.now() - settleStart > 180_000)
        throw new Error(`180 s after ready, ${withStatus} of ${totalRoutes} HTTPRoutes carry shoal's status for their generation`);
      await sleep(500);
    }
    const statusWrittenMs = Math.round(performance.now() - settleStart);
    // And its log quiet for 2 s.
    for (;;) {
      const last = lines.length ? lines[lines.length - 1].seenAt : 0;
      if (performance.now() - last > 2000) break;
      if (performance.now() - settleStart > 240_000) throw new Error("discover's log not quiet 240 s after ready");
      await sleep(200);
    }
    const settleMs = Math.round(performance.now() - settleStart);
    const afterReady = memMb(discover.pid!).rss;
    log(
      `ready in ${timeToReadyMs} ms (lists and first build ${listAndBuildMs} ms); every route's status written ${statusWrittenMs} ms later, settled at ${settleMs} ms; RSS ${afterReady} MB`,
    );

    const snapshotOf = async (path: string) => {
      const res = await request(`${base}${path}`);
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode} ${text.slice(0, 300)}`);
      return { version: String(res.headers.etag).replace(/"/g, ''), json: JSON.parse(text) };
    };
    type SnapRoute = { source?: string; backends: Array<{ cluster: string; weight: number }> };
    const routesOf = (snap: any, name: string): SnapRoute[] =>
      (snap.outbound as Array<{ routes: SnapRoute[] }>)
        .flatMap((l) => l.routes)
        .filter((r) => r.source?.startsWith(`HTTPRoute ${nsOf(0)}/${name} `));
    // What was loaded is what discover serves: app-0 carries every rule of svc-0's routes.
    const first = (await snapshotOf(`/v2/snapshot/${nsOf(0)}/app-0`)).json;
    const perRoute = Array.from({ length: routesPerService }, (_, k) => routesOf(first, `svc-0-r${k}`).length);
    if (perRoute.some((n) => n === 0))
      throw new Error(`app-0's snapshot lacks routes of svc-0: ${perRoute.join(', ')} route entries per HTTPRoute`);
    const weightsIn = (snap: any) => routesOf(snap, 'svc-0-r0').map((r) => r.backends.map((b) => b.weight).join('/'));
    if (!weightsIn(first).every((w) => w === '90/10'))
      throw new Error(`svc-0-r0's split in app-0's snapshot is ${weightsIn(first).join(', ')}, not 90/10`);
    const routeRulesInSnapshot = (first.outbound as Array<{ routes: SnapRoute[] }>)
      .flatMap((l) => l.routes)
      .filter((r) => r.source?.startsWith('HTTPRoute ')).length;

    // 3. Clients over the dependent apps' snapshots.
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
    const versionsBefore = new Map(
      (await routeList()).map((r) => [`${r.metadata.namespace}/${r.metadata.name}`, r.metadata.resourceVersion]),
    );
    const cpuBeforeRounds = cpuOf();

    const routePath = `${ROUTES}/namespaces/${nsOf(0)}/httproutes/svc-0-r0`;
    const latencies: number[] = [];
    const p99PerRound: number[] = [];
    const maxPerRound: number[] = [];
    const apiWriteMs: number[] = [];
    const cpuMs: number[] = [];
    const applyMs: number[] = [];
    const rebuilt: number[] = [];
    const applies: number[] = [];
    const warmupApplyMs: number[] = [];
    const warmupP99: number[] = [];
    const warmupMax: number[] = [];
    const withWarmup: number[] = [];
    // The baseline, interleaved with the route changes (the machine is shared: load drifts): an
    // EndpointSlice update of svc-0 (one endpoint flips ready), the same 100 apps rebuilt.
    const slicePath = `/apis/discovery.k8s.io/v1/namespaces/${nsOf(0)}/endpointslices/svc-0-bench`;
    const baseline = {
      latencies: [] as number[],
      p99PerRoundMs: [] as number[],
      applyMs: [] as number[],
      cpuMs: [] as number[],
      apiWriteMs: [] as number[],
    };
    // Warm-up route changes (reported apart), one warm-up endpoint change (not reported), then route
    // and endpoint changes in turn.
    const schedule: Array<{ kind: 'route' | 'endpoints'; r: number }> = [
      ...Array.from({ length: opts.warmupRounds }, (_, i) => ({ kind: 'route' as const, r: i - opts.warmupRounds })),
      ...(opts.baseline ? [{ kind: 'endpoints' as const, r: -1 }] : []),
      ...Array.from({ length: opts.rounds }, (_, i) => [
        { kind: 'route' as const, r: i },
        ...(opts.baseline ? [{ kind: 'endpoints' as const, r: i }] : []),
      ]).flat(),
    ];
    for (const { kind, r } of schedule) {
      const versions: Record<string, string> = {};
      await bounded(paths, 50, async (p) => {
        versions[p] = (await snapshotOf(p)).version;
      });
      const sent = clients.map((c) => once(c, 'sent'));
      for (const c of clients) c.send({ type: 'wait', versions });
      await Promise.all(sent);
      while ((await waiting()) < opts.clients) await sleep(10);
      // The change: svc-0-r0's split flips between 90/10 and 10/90 (or, for the baseline, an endpoint
      // of svc-0's slice flips between ready and terminating).
      const path = kind === 'route' ? routePath : slicePath;
      const obj = await api('GET', path);
      let next = [0, 0];
      if (kind === 'route') {
        const split = obj.spec.rules[0].backendRefs as Array<{ weight: number }>;
        next = split[0].weight === 90 ? [10, 90] : [90, 10];
        split[0].weight = next[0];
        split[1].weight = next[1];
      } else {
        const e = obj.endpoints[0];
        const ready = !(e.conditions?.ready ?? true);
        e.conditions = { ready, serving: true, terminating: !ready };
      }
      const answered = clients.map((c) => once<{ statuses: Record<string, number>; stale?: number }>(c, 'answered'));
      await sleep(50);
      const mark = lines.length;
      const cpu0 = cpuSeconds(discover.pid!);
      const start = process.hrtime.bigint();
      await api('PUT', path, obj);
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
          `${kind} round ${r}: ${ok} of ${opts.clients} clients got 200, ${stale} got the version they held (${JSON.stringify(statuses)})`,
        );
      // The new split is what the snapshot carries.
      const now = kind === 'route' ? weightsIn((await snapshotOf(paths[0])).json) : [];
      if (!now.every((w) => w === next.join('/')))
        throw new Error(`round ${r}: svc-0-r0's split in app-0's snapshot is ${now.join(', ')}, not ${next.join('/')}`);
      // discover's apply of the change (the log line may trail the answers through the pipe); then the
      // status write it makes comes back as a watch event, so the log settles before the next round.
      let applied: Record<string, any> | undefined;
      for (let i = 0; i < 100 && !(applied = lines.slice(mark).find((l) => l.msg === 'topology applied' && l.rebuilt > 0)); i++)
        await sleep(20);
      if (!applied) throw new Error(`${kind} round ${r}: no 'topology applied' line with rebuilt apps after the write`);
      await sleep(300);
      const appliedLines = lines.slice(mark).filter((l) => l.msg === 'topology applied');
      const round = times.flatMap((t) => t.times.map((x) => Number(BigInt(x) - start) / 1e6)).sort((a, b) => a - b);
      const summary = `p50 ${percentile(round, 50).toFixed(1)} ms, p99 ${percentile(round, 99).toFixed(1)} ms, max ${round[round.length - 1].toFixed(1)} ms; apply ${applied.applyMs} ms (${applied.rebuilt} rebuilt), API write ${apiMs.toFixed(1)} ms, discover CPU ${roundCpuMs} ms`;
      if (kind === 'endpoints') {
        if (r >= 0) {
          baseline.latencies.push(...round);
          baseline.p99PerRoundMs.push(r2(percentile(round, 99)));
          baseline.applyMs.push(applied.applyMs);
          baseline.cpuMs.push(roundCpuMs);
          baseline.apiWriteMs.push(r2(apiMs));
        }
        log(`${r < 0 ? 'warm-up ' : ''}baseline round ${r < 0 ? 1 : r + 1} (EndpointSlice change): ${summary}`);
        continue;
      }
      withWarmup.push(...round);
      if (r < 0) {
        warmupP99.push(r2(percentile(round, 99)));
        warmupMax.push(r2(round[round.length - 1]));
        warmupApplyMs.push(applied.applyMs);
        log(`warm-up round ${r + opts.warmupRounds + 1}/${opts.warmupRounds}: ${summary}`);
        continue;
      }
      apiWriteMs.push(r2(apiMs));
      cpuMs.push(roundCpuMs);
      applyMs.push(applied.applyMs);
      rebuilt.push(applied.rebuilt);
      applies.push(appliedLines.length);
      p99PerRound.push(r2(percentile(round, 99)));
      maxPerRound.push(r2(round[round.length - 1]));
      latencies.push(...round);
      log(`round ${r + 1}/${opts.rounds}: ${summary}`);
    }
    const cpuAfterRounds = cpuOf();
    const otherRoutesWrittenDuringRounds = (await routeList()).filter(
      (r) =>
        `${r.metadata.namespace}/${r.metadata.name}` !== `${nsOf(0)}/svc-0-r0` &&
        versionsBefore.get(`${r.metadata.namespace}/${r.metadata.name}`) !== r.metadata.resourceVersion,
    ).length;
    latencies.sort((a, b) => a - b);
    withWarmup.sort((a, b) => a - b);
    const cpuEnd = cpuAfterRounds;
    const mem = memMb(discover.pid!);
    const components = Object.fromEntries(
      names.map((n) => [n, { cpuSecondsRounds: r2(cpuEnd[n] - cpuBeforeRounds[n]), rssMbEnd: memMb(pids()[n]).rss }]),
    ) as GatewayRoutesBenchResult['components'];
    for (const c of clients) c.send({ type: 'exit' });
    stopping = true;

    clearInterval(sampler);
    sampleLoad();
    const stats = (xs: number[]) =>
      xs.length === 0
        ? { min: 0, mean: 0, max: 0, samples: 0 }
        : {
            min: r2(Math.min(...xs)),
            mean: r2(xs.reduce((a, b) => a + b, 0) / xs.length),
            max: r2(Math.max(...xs)),
            samples: xs.length,
          };
    const of = (p: Phase) => loadSamples.filter((s) => s.phase === p).map((s) => s.load1);
    const sortedApply = [...applyMs].sort((a, b) => a - b);
    const result: GatewayRoutesBenchResult = {
      scenario: 'gateway-routes',
      date: new Date().toISOString(),
      machine,
      controlPlane: {
        kubernetes: pinnedVersion(join(root, 'kube'), 'k8s.io/kubernetes'),
        etcd: pinnedVersion(join(root, 'kube'), 'go.etcd.io/etcd/server/v3'),
        gatewayApi: pinnedVersion(join(root, 'gateway'), 'sigs.k8s.io/gateway-api'),
        upMs,
      },
      cluster: {
        namespaces: nsCount,
        services,
        endpoints: services * perService,
        httpRoutes: services * routesPerService,
        routeRulesInSnapshot,
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
        phasesMs: {
          servicesAndSlices: Math.round(servicesMs),
          routes: Math.round(routesMs),
          configMaps: Math.round(loadMs - servicesMs - routesMs),
        },
      },
      timeToReadyMs,
      listAndBuildMs,
      statusWrittenMs,
      settleMs,
      otherRoutesWrittenDuringRounds,
      discoverRssMb: { afterReady, afterRounds: mem.rss, peak: mem.peak },
      discoverCpuSecondsToReady: r2(cpuToReady),
      apply: {
        applyMsPerRound: applyMs,
        rebuiltPerRound: rebuilt,
        appliesPerRound: applies,
        p50Ms: r2(percentile(sortedApply, 50)),
        maxMs: r2(sortedApply[sortedApply.length - 1]),
        warmupApplyMs,
      },
      propagation: {
        rounds: opts.rounds,
        samples: latencies.length,
        p50Ms: r2(percentile(latencies, 50)),
        p99Ms: r2(percentile(latencies, 99)),
        maxMs: r2(latencies[latencies.length - 1]),
        p99PerRoundMs: p99PerRound,
        maxPerRoundMs: maxPerRound,
        apiWriteMs,
        discoverCpuMsPerRound: cpuMs,
        warmup: {
          rounds: opts.warmupRounds,
          p99PerRoundMs: warmupP99,
          maxPerRoundMs: warmupMax,
          p99WithWarmupMs: r2(percentile(withWarmup, 99)),
        },
      },
      baseline: opts.baseline
        ? (() => {
            const lat = [...baseline.latencies].sort((a, b) => a - b);
            const ap = [...baseline.applyMs].sort((a, b) => a - b);
            return {
              rounds: baseline.p99PerRoundMs.length,
              p50Ms: r2(percentile(lat, 50)),
              p99Ms: r2(percentile(lat, 99)),
              p99PerRoundMs: baseline.p99PerRoundMs,
              applyMsPerRound: baseline.applyMs,
              applyP50Ms: r2(percentile(ap, 50)),
              discoverCpuMsPerRound: baseline.cpuMs,
              apiWriteMs: baseline.apiWriteMs,
            };
          })()
        : null,
      components,
      loadAverage: {
        atStart: machine.loadAverageAtStart,
        atEnd: loadavg().map(r2),
        during: {
          load: stats(of('load')),
          discoverStart: stats(of('discoverStart')),
          rounds: stats(of('rounds')),
          whole: stats(loadSamples.map((s) => s.load1)),
        },
      },
      targets: {},
    };
    result.targets = {
      [`propagation p99 (one route change, ${opts.clients.toLocaleString('en-US')} sidecars)`]: {
        target: '< 100 ms',
        measured: result.propagation.p99Ms,
        met: result.propagation.p99Ms < 100,
      },
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

export function renderTable(r: GatewayRoutesBenchResult): string {
  const la = r.loadAverage;
  const during = (k: keyof LoadAverageFigures['during']) => `${la.during[k].min}-${la.during[k].max} (mean ${la.during[k].mean})`;
  const p = r.propagation;
  const rows = [
    [
      'control plane',
      `Kubernetes ${r.controlPlane.kubernetes}, etcd ${r.controlPlane.etcd}, Gateway API ${r.controlPlane.gatewayApi} CRDs; up in ${r.controlPlane.upMs} ms`,
    ],
    [
      'cluster',
      `${r.cluster.services} Services (${r.cluster.endpoints} endpoints), ${r.cluster.httpRoutes} HTTPRoutes, ${r.cluster.apps} apps (${r.cluster.dependents} depend on svc-0; app-0's snapshot holds ${r.cluster.routeRulesInSnapshot} route entries), ${r.cluster.clients} long-poll clients`,
    ],
    [
      'loading',
      `${r.loading.writes} writes in ${r.loading.ms} ms (${r.loading.writesPerSecond}/s, ${r.loading.retries} retried): Services+slices ${r.loading.phasesMs.servicesAndSlices} ms, routes ${r.loading.phasesMs.routes} ms, ConfigMaps ${r.loading.phasesMs.configMaps} ms`,
    ],
    [
      'time to ready',
      `${r.timeToReadyMs} ms (lists + first build ${r.listAndBuildMs} ms; CPU ${r.discoverCpuSecondsToReady} s); every route's status written ${r.statusWrittenMs} ms later, rounds started ${r.settleMs} ms after ready`,
    ],
    [
      'discover RSS',
      `${r.discoverRssMb.afterReady} MB after ready, ${r.discoverRssMb.afterRounds} MB after the rounds, peak ${r.discoverRssMb.peak} MB`,
    ],
    [
      'apply (topology applied)',
      `${r.apply.applyMsPerRound.join(', ')} ms; rebuilt ${r.apply.rebuiltPerRound.join(', ')}; applies per round ${r.apply.appliesPerRound.join(', ')}`,
    ],
    ['propagation', `p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms, max ${p.maxMs} ms over ${p.rounds} rounds (${p.samples} samples)`],
    ['p99 per round', `${p.p99PerRoundMs.join(', ')} ms`],
    [
      'warm-up rounds',
      p.warmup.rounds === 0
        ? 'none'
        : `${p.warmup.rounds}, not counted above: p99 ${p.warmup.p99PerRoundMs.join(', ')} ms, apply ${r.apply.warmupApplyMs.join(', ')} ms; p99 with them ${p.warmup.p99WithWarmupMs} ms`,
    ],
    [
      'baseline (EndpointSlice change)',
      r.baseline === null
        ? 'not run'
        : `p50 ${r.baseline.p50Ms} ms, p99 ${r.baseline.p99Ms} ms; p99 per round ${r.baseline.p99PerRoundMs.join(', ')} ms; apply ${r.baseline.applyMsPerRound.join(', ')} ms; discover CPU ${r.baseline.discoverCpuMsPerRound.join(', ')} ms`,
    ],
    ['API write per round', `${p.apiWriteMs.join(', ')} ms`],
    ['discover CPU per round', `${p.discoverCpuMsPerRound.join(', ')} ms (write -> every client answered; 10 ms ticks)`],
    ['control plane in rounds', `${names(r)}; ${r.otherRoutesWrittenDuringRounds} other HTTPRoutes written`],
    [
      'load average (1 min)',
      `loading ${during('load')}, discover's start ${during('discoverStart')}, rounds ${during('rounds')}; ${la.atStart.join(' ')} at start, ${la.atEnd.join(' ')} at end (${r.machine.cores} cores, shared machine)`,
    ],
    ...Object.entries(r.targets).map(([k, t]) => [`target: ${k}`, `${t.target}: ${t.measured} ${t.met ? 'met' : 'MISSED'}`]),
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

function names(r: GatewayRoutesBenchResult): string {
  return Object.entries(r.components)
    .map(([n, c]) => `${n} CPU ${c.cpuSecondsRounds} s, RSS ${c.rssMbEnd} MB`)
    .join('; ');
}

if (import.meta.main) {
  const { values } = parseArgs({
    allowNegative: true,
    options: {
      services: { type: 'string', default: String(FULL.services) },
      'endpoints-per-service': { type: 'string', default: String(FULL.endpointsPerService) },
      'routes-per-service': { type: 'string', default: String(FULL.routesPerService) },
      apps: { type: 'string', default: String(FULL.apps) },
      dependents: { type: 'string', default: String(FULL.dependents) },
      clients: { type: 'string', default: String(FULL.clients) },
      rounds: { type: 'string', default: String(FULL.rounds) },
      warmup: { type: 'string', default: String(FULL.warmupRounds) },
      concurrency: { type: 'string', default: String(FULL.concurrency) },
      baseline: { type: 'boolean', default: true },
      'cpu-prof': { type: 'string' },
      smoke: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const opts: GatewayRoutesBenchOptions = values.smoke
    ? { ...SMOKE }
    : {
        services: Number(values.services),
        endpointsPerService: Number(values['endpoints-per-service']),
        routesPerService: Number(values['routes-per-service']),
        apps: Number(values.apps),
        dependents: Number(values.dependents),
        clients: Number(values.clients),
        rounds: Number(values.rounds),
        warmupRounds: Number(values.warmup),
        concurrency: Number(values.concurrency),
        baseline: values.baseline,
        cpuProfDir: values['cpu-prof'],
      };
  try {
    checkOptions(opts);
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  let result: GatewayRoutesBenchResult;
  try {
    result = await runGatewayRoutesBench(opts);
  } catch (err) {
    if (err instanceof KubernetesBenchSkipped) {
      process.stderr.write(`\n*** ${err.message} ***\n\n`);
      process.exit(0);
    }
    throw err;
  }
  process.stdout.write(renderTable(result));
  if (!values.smoke || values.out) {
    const file = values.out ?? join(root, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}-gateway-routes.json`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`written ${file}\n`);
  }
}
