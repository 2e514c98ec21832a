// The mesh under test, built on a NetnsCluster: pods web, api-N, cache-N, discover and an upstream
// resolver, each in its own network namespace, with the real `shoal` processes in them.
//
//   web      shoal proxy (outbound + DNS on 127.0.0.1:53, upstream = dnsmasq in `dnsup`);
//            /etc/netns/<web>/resolv.conf names 127.0.0.1, so curl, getent and Node resolve through it
//   api-N    the backend on 127.0.0.1:8080 + shoal proxy inbound on 0.0.0.0:65380 -> 127.0.0.1:8080
//   cache-N  a TCP server on 0.0.0.0:6379 (no sidecar)
//   disc     shoal discover on 0.0.0.0:6100: --static FILE (variant 1) or --kubernetes against the
//            test file's real control plane (test/lib/kube.ts) on the host's loopback, reached through
//            a Unix-socket relay (variant 2): Services, Pods and mesh ConfigMaps are written through the
//            API, the EndpointSlices are the controller's, the sidecars' tokens come from TokenRequest
//   dnsup    dnsmasq on its address, port 53, knowing only outside.e2e.test, and an HTTP server
//            answering "outside" on port 8081 there
import { existsSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { NetnsCluster, type Pod, type Proc } from './netns.ts';
import type { LoadResult } from './loadClient.ts';
import { unixToTcp } from './kubeRelay.ts';
import type { KubeForFile, TestKube } from '../../lib/kube.ts';
import { meshConfigMap, service } from '../../lib/kubeFixtures.ts';
import { Api, applyObject, serviceAccountToken } from '../../discover/kubernetes/realKube.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');

/** Newest modification time of the TypeScript sources under dir (node_modules, dist, test left out). */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (!['node_modules', 'dist', 'test', 'bench', 'charts', '.git'].includes(e.name))
        newest = Math.max(newest, newestSource(join(dir, e.name)));
    } else if (e.name.endsWith('.ts')) {
      newest = Math.max(newest, statSync(join(dir, e.name)).mtimeMs);
    }
  }
  return newest;
}

/**
 * The shoal binary the pods run: dist/cli.js when it is at least as new as every source (CI builds
 * before testing; built JavaScript starts faster, which matters with a dozen processes per
 * cluster), else cli.ts. SHOAL_E2E_CLI=src|dist forces one.
 */
function pickCli(): { path: string; why: string } {
  const dist = join(root, 'dist', 'cli.js');
  const src = join(root, 'cli.ts');
  const want = process.env.SHOAL_E2E_CLI;
  if (want === 'src') return { path: src, why: 'SHOAL_E2E_CLI=src' };
  if (want === 'dist') return { path: dist, why: 'SHOAL_E2E_CLI=dist' };
  if (!existsSync(dist)) return { path: src, why: 'no dist/ (npm run build)' };
  const stale = newestSource(root) > statSync(dist).mtimeMs;
  return stale ? { path: src, why: 'dist/ is older than the sources' } : { path: dist, why: 'dist/ is up to date' };
}
export const CLI_CHOICE = pickCli();
export const CLI = CLI_CHOICE.path;
const POD_APP = join(here, 'podApp.ts');
const LOAD_CLIENT = join(here, 'loadClient.ts');
const KUBE_RELAY = join(here, 'kubeRelay.ts');
const NODE = process.execPath;

export const API_PORT = 8080;
/** 65300 + (8080 mod 100): the inbound listen port shared/loopbackAndListenPorts.ts gives port 8080. */
export const API_LISTEN_PORT = 65380;
export const CACHE_PORT = 6379;
export const DISCOVER_PORT = 6100;
export const OUTSIDE_NAME = 'outside.e2e.test';
export const OUTSIDE_PORT = 8081;
export const POD_RESOLV_CONF =
  'nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:2\n';

export type Options = Record<string, string | number>;

export interface MeshOptions {
  /** A few letters naming the test file in namespace names. */
  tag: string;
  variant: 'static' | 'kubernetes';
  /** Options of web's dependency on api (base_services[].options). */
  webApiOptions?: Options;
  /** Options of api's own port 8080 (base_ports[].options: OPEN_LIMIT, LIMIT_RPS...). */
  apiInboundOptions?: Options;
  apiPods?: number;
  /** Drain timeout of every sidecar, seconds. */
  drainTimeoutS?: number;
  /** The test file's control plane (kubeForFile): the kubernetes variant needs it. */
  kube?: KubeForFile;
}

export type EndpointState = 'ready' | 'terminating';

export interface ApiPod {
  name: string;
  pod: Pod;
  backend: Proc;
  sidecar: Proc;
  state: EndpointState;
}

export interface LoadRun {
  proc: Proc;
  startedAt: number;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Stops the pacing, waits for the requests in flight, returns the figures. */
  stop(): Promise<LoadResult>;
}

export class Mesh {
  readonly cluster: NetnsCluster;
  readonly opts: MeshOptions;
  web!: Pod;
  disc!: Pod;
  dnsup!: Pod;
  api: ApiPod[] = [];
  cache: Pod[] = [];
  discover!: Proc;
  webSidecar!: Proc;
  kube: TestKube | null = null;
  private kubeApi: Api | null = null;
  /** The api pods written to the API server, and how far: created Ready, or deleted gracefully (terminating). */
  private readonly kubePods = new Map<string, EndpointState>();
  private kubeSocket: Server | null = null;
  private kubeconfig = '';
  private topologyFile = '';
  private edits = 0;
  private apiCount = 0;
  private tokens = new Map<string, string>();

  private constructor(opts: MeshOptions) {
    this.opts = opts;
    this.cluster = new NetnsCluster(opts.tag);
  }

  /** Builds the whole mesh and waits until web's sidecar balances over every api pod. */
  static async start(opts: MeshOptions): Promise<Mesh> {
    const m = new Mesh(opts);
    try {
      await m.build();
    } catch (err) {
      const logs = m.cluster.logs();
      await m.destroy();
      throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
    }
    return m;
  }

  get dir(): string {
    return this.cluster.dir;
  }

  private async build(): Promise<void> {
    const c = this.cluster;
    this.disc = c.addPod('disc');
    this.dnsup = c.addPod('dnsup');
    this.web = c.addPod('web', { resolvConf: POD_RESOLV_CONF });
    for (let i = 1; i <= 2; i++) this.cache.push(c.addPod(`cache-${i}`));

    const upstream = c.spawn(this.dnsup, 'dnsmasq', 'dnsmasq', [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--pid-file=${join(this.dir, 'dnsmasq.pid')}`,
      '--port=53',
      `--listen-address=${this.dnsup.ip}`,
      '--bind-interfaces',
      '--local-ttl=30',
      '--log-facility=-',
      `--host-record=${OUTSIDE_NAME},${this.dnsup.ip}`,
      '--local=/e2e.test/',
    ]);
    const outside = c.spawn(this.dnsup, 'outside', NODE, [POD_APP, 'http', 'outside', '0.0.0.0', String(OUTSIDE_PORT), this.dir]);
    const caches = this.cache.map((p) => c.spawn(p, 'app', NODE, [POD_APP, 'tcp', p.name, '0.0.0.0', String(CACHE_PORT), this.dir]));
    if (this.opts.variant === 'kubernetes') await this.startKube();
    else this.writeTopology();
    this.startDiscover();
    await Promise.all([
      outside.waitFor(/ready outside/),
      ...caches.map((p) => p.waitFor(/ready cache/)),
      this.waitDiscover(),
      upstream.waitFor(/started, version/),
    ]);
    // Sidecars start once discover answers (else they sit in their backoff).
    const apiPods = Array.from({ length: this.opts.apiPods ?? 3 }, () => this.newApiPod());
    await this.publish();
    this.webSidecar = this.startSidecar(this.web, 'web');
    await Promise.all([...apiPods.map((p) => this.waitApiPod(p)), this.waitHttp(this.web, 'http://127.0.0.1:65533/ready')]);
    await this.waitWebEndpoints();
  }

  // ----- pods ----------------------------------------------------------------------------------

  /** A new api pod (namespace, backend, sidecar), listed as a ready endpoint at the next publish(). */
  private newApiPod(): ApiPod {
    const name = `api-${++this.apiCount}`;
    const pod = this.cluster.addPod(name);
    const backend = this.cluster.spawn(pod, 'app', NODE, [POD_APP, 'http', name, '127.0.0.1', String(API_PORT), this.dir]);
    const sidecar = this.startSidecar(pod, 'api');
    const a: ApiPod = { name, pod, backend, sidecar, state: 'ready' };
    this.api.push(a);
    return a;
  }

  private async waitApiPod(a: ApiPod): Promise<void> {
    await Promise.all([a.backend.waitFor(/ready api/), this.waitHttp(a.pod, 'http://127.0.0.1:65533/ready')]);
  }

  /** Starts a pod, waits until it serves, publishes it as a ready endpoint, waits until web uses it. */
  async addApiPod(): Promise<ApiPod> {
    const a = this.newApiPod();
    await this.waitApiPod(a);
    await this.publish();
    await this.waitWebEndpoints();
    return a;
  }

  /**
   * Takes an api pod away as Kubernetes does on a rolling update: the endpoint turns terminating
   * (web stops choosing it), the pod gets SIGTERM (its sidecar drains what is in flight), then
   * the endpoint is removed and the namespace deleted. Returns the sidecar's exit code.
   */
  async retireApiPod(name: string): Promise<number | null> {
    const a = this.apiPod(name);
    a.state = 'terminating';
    await this.publish();
    await this.waitWebEndpoints();
    a.sidecar.kill('SIGTERM');
    a.backend.kill('SIGTERM');
    const exit = await a.sidecar.exited;
    await a.backend.exited;
    this.api.splice(this.api.indexOf(a), 1);
    await this.publish();
    await this.waitWebEndpoints();
    this.cluster.deletePod(name);
    return exit.code;
  }

  /**
   * A hard failure, as a node dying: the pod's cable is cut first (so its dying processes send no
   * RST, and nothing answers its address), then its processes are killed and its namespace
   * deleted. Discover is not told.
   */
  killApiPod(name: string): void {
    this.cluster.unplugPod(name);
    this.cluster.deletePod(name);
  }

  /** Drops an endpoint from discover's view (after a hard failure, as the EndpointSlice controller would). */
  async forgetApiPod(name: string): Promise<void> {
    this.api.splice(this.api.indexOf(this.apiPod(name)), 1);
    await this.publish();
    await this.waitWebEndpoints();
  }

  apiPod(name: string): ApiPod {
    const a = this.api.find((x) => x.name === name);
    if (!a) throw new Error(`no api pod ${name}`);
    return a;
  }

  // ----- processes -----------------------------------------------------------------------------

  startSidecar(pod: Pod, app: string, extra: string[] = []): Proc {
    const args = [
      CLI,
      'proxy',
      '--discover-url',
      `http://${this.disc.ip}:${DISCOVER_PORT}/v1/resources/default/${app}/mesh`,
      '--state-file',
      join(this.dir, `${pod.name}.state.json`),
      '--drain-timeout',
      String(this.opts.drainTimeoutS ?? 5),
      '--log-level',
      'warn',
    ];
    if (app === 'web') args.push('--dns-host', '127.0.0.1', '--dns-port', '53', '--dns-upstream', `${this.dnsup.ip}:53`);
    else args.push('--no-dns');
    const token = this.tokens.get(app);
    if (token) args.push('--token-file', token);
    return this.cluster.spawn(pod, 'sidecar', NODE, [...args, ...extra]);
  }

  /** Restarts web's sidecar (SIGTERM, then a new process with the same state file); returns the old one's exit code. */
  async restartWebSidecar(): Promise<number | null> {
    this.webSidecar.kill('SIGTERM');
    const { code } = await this.webSidecar.exited;
    this.webSidecar = this.startSidecar(this.web, 'web');
    await this.waitHttp(this.web, 'http://127.0.0.1:65533/ready');
    return code;
  }

  startDiscover(): void {
    const args =
      this.opts.variant === 'kubernetes'
        ? [CLI, 'discover', '--kubernetes', '--kubeconfig', this.kubeconfig]
        : [CLI, 'discover', '--static', this.topologyFile];
    this.discover = this.cluster.spawn(this.disc, 'discover', NODE, [
      ...args,
      '--host',
      '0.0.0.0',
      '--port',
      String(DISCOVER_PORT),
      '--log-level',
      'warn',
    ]);
  }

  async waitDiscover(): Promise<void> {
    // Kubernetes mode loads client-node and lists first: slow to start on a busy machine.
    await this.waitHttp(this.disc, `http://127.0.0.1:${DISCOVER_PORT}/readyz`, 90_000);
  }

  /** Polls url with curl inside pod until it answers 2xx. */
  async waitHttp(pod: Pod, url: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await this.cluster.exec(pod, 'curl', ['-sS', '-f', '-m', '2', url], 5000);
      if (r.code === 0) return;
      last = `${r.stdout}${r.stderr}`.trim();
      // Each probe is two processes (ip, curl): poll gently, the machine is busy starting pods.
      await sleep(300);
    }
    throw new Error(`${url} in ${pod.name} not answering 2xx after ${timeoutMs} ms: ${last}`);
  }

  /** GET inside pod; body and exit code. */
  async curl(pod: Pod, args: string[], timeoutMs = 15_000) {
    return this.cluster.exec(pod, 'curl', ['-sS', ...args], timeoutMs);
  }

  async metrics(pod: Pod): Promise<string> {
    return (await this.curl(pod, ['-m', '5', 'http://127.0.0.1:65533/metrics'])).stdout;
  }

  /** The api endpoints web's sidecar has applied (from /config_dump), as "ip:port". */
  async webApiEndpoints(): Promise<string[]> {
    const r = await this.curl(this.web, ['-m', '5', 'http://127.0.0.1:65533/config_dump']);
    const dump = JSON.parse(r.stdout) as {
      snapshot: { clusters: Array<{ service: string; endpoints: Array<{ address: string; port: number; ready: boolean }> }> } | null;
    };
    const cl = dump.snapshot?.clusters.find((x) => x.service === 'api');
    return (cl?.endpoints ?? [])
      .filter((e) => e.ready)
      .map((e) => `${e.address}:${e.port}`)
      .sort();
  }

  /** Waits until web's sidecar has exactly the ready api pods as endpoints. */
  async waitWebEndpoints(timeoutMs = 30_000): Promise<void> {
    const want = this.api
      .filter((a) => a.state === 'ready')
      .map((a) => `${a.pod.ip}:${API_LISTEN_PORT}`)
      .sort()
      .join(',');
    const deadline = Date.now() + timeoutMs;
    let got = '';
    while (Date.now() < deadline) {
      got = (await this.webApiEndpoints().catch(() => [])).join(',');
      if (got === want) return;
      await sleep(150);
    }
    throw new Error(`web's sidecar has api endpoints [${got}], expected [${want}] after ${timeoutMs} ms`);
  }

  /** Starts the Node client in web (see loadClient.ts) and waits until it runs. */
  async startClient(mode: 'load' | 'burst' | 'tcp', o: object): Promise<LoadRun> {
    const proc = this.cluster.spawn(this.web, `client-${mode}`, NODE, [LOAD_CLIENT, mode, JSON.stringify(o), this.dir], { stdin: true });
    const m = await proc.waitFor(/started (\d+)/);
    return {
      proc,
      startedAt: Number(m[1]),
      pause: async () => {
        proc.write('pause');
        await proc.waitFor(/paused \d+/);
      },
      resume: async () => {
        proc.write('resume');
        await proc.waitFor(/resumed \d+/);
      },
      stop: async () => {
        proc.write('stop');
        const r = await proc.waitFor(/result (\{.*\})\n/, 60_000);
        proc.child.stdin?.end();
        await proc.exited;
        return JSON.parse(r[1]) as LoadResult;
      },
    };
  }

  /** Runs the client to its end (burst, tcp, or a load with durationMs). */
  async runClient(mode: 'load' | 'burst' | 'tcp', o: object): Promise<LoadResult> {
    const run = await this.startClient(mode, o);
    const r = await run.proc.waitFor(/result (\{.*\})\n/, 120_000);
    run.proc.child.stdin?.end();
    await run.proc.exited;
    return JSON.parse(r[1]) as LoadResult;
  }

  // ----- configuration: static file or Kubernetes objects --------------------------------------

  private webConfig() {
    return {
      base_services: [
        { depend_service_alias: 'api', port: API_PORT, protocol: 'http', options: this.opts.webApiOptions ?? {} },
        { depend_service_alias: 'cache', port: CACHE_PORT, protocol: 'tcp' },
      ],
    };
  }

  private apiConfig() {
    return {
      base_ports: [{ port: API_PORT, protocol: 'http', ...(this.opts.apiInboundOptions ? { options: this.opts.apiInboundOptions } : {}) }],
    };
  }

  private static conditions(state: EndpointState) {
    return state === 'ready' ? { ready: true, serving: true, terminating: false } : { ready: false, serving: true, terminating: true };
  }

  private writeTopology(): void {
    const topology = {
      clusterDomain: 'cluster.local',
      services: [
        {
          name: 'api',
          ports: [{ port: API_PORT, protocol: 'http' }],
          endpoints: this.api.map((a) => ({ address: a.pod.ip, ports: { [API_PORT]: API_LISTEN_PORT }, ...Mesh.conditions(a.state) })),
        },
        { name: 'cache', ports: [{ port: CACHE_PORT, protocol: 'tcp' }], endpoints: this.cache.map((p) => `${p.ip}:${CACHE_PORT}`) },
      ],
      apps: [
        { name: 'web', pluginId: 'mesh', config: this.webConfig() },
        { name: 'api', pluginId: 'mesh', config: this.apiConfig() },
      ],
    };
    // JSON is YAML. Replaced atomically, as an editor or a ConfigMap mount does.
    const file = join(this.dir, 'topology.yaml');
    const tmp = join(this.dir, `.topology-${this.edits++}`);
    writeFileSync(tmp, JSON.stringify(topology, null, 1));
    renameSync(tmp, file);
    this.topologyFile = file;
  }

  private async startKube(): Promise<void> {
    if (!this.opts.kube) throw new Error('the kubernetes variant needs MeshOptions.kube (kubeForFile of the test file)');
    const kube = await this.opts.kube.up();
    const api = new Api(kube);
    this.kube = kube;
    this.kubeApi = api;
    // The Node the pods are bound to (there is no kubelet: their status is written as one would).
    await api.node();
    for (const app of ['web', 'api']) {
      const file = join(this.dir, `${app}.token`);
      writeFileSync(file, await serviceAccountToken(api, 'default', app));
      this.tokens.set(app, file);
    }
    // The Service's targetPort is the sidecar's listen port, as the injector rewrites it.
    await applyObject(api, service('default', 'api', [{ name: 'http', port: API_PORT, targetPort: API_LISTEN_PORT, appProtocol: 'http' }]));
    await applyObject(api, service('default', 'cache', [{ name: 'tcp', port: CACHE_PORT }]));
    for (const p of this.cache) {
      await api.pod('default', p.name, 'cache');
      await api.setPodStatus('default', p.name, p.ip, true);
    }
    await applyObject(api, meshConfigMap('default', 'web', 'mesh', this.webConfig()));
    await applyObject(api, meshConfigMap('default', 'api', 'mesh', this.apiConfig()));
    this.kubeconfig = kube.kubeconfig;
    // In disc's namespace the relay listens on the API server's own address and port, so the kubeconfig
    // (and the serving certificate's 127.0.0.1) hold there too.
    const port = Number(new URL(kube.cluster.server).port);
    const sock = join(this.dir, 'kube.sock');
    this.kubeSocket = await unixToTcp(sock, '127.0.0.1', port);
    const relay = this.cluster.spawn(this.disc, 'kube-relay', NODE, [KUBE_RELAY, '127.0.0.1', String(port), sock]);
    await relay.waitFor(/ready/);
  }

  /**
   * Brings the API server's api Pods to the mesh's: a new one is created and made Ready (the
   * EndpointSlice controller adds it), a retiring one is deleted gracefully (with no kubelet to
   * confirm, it stays terminating and serving), a gone one is deleted at once (its endpoint goes).
   */
  private async syncKubePods(api: Api): Promise<void> {
    for (const a of this.api) {
      const was = this.kubePods.get(a.name);
      if (was === undefined) {
        await api.pod('default', a.name, 'api');
        await api.setPodStatus('default', a.name, a.pod.ip, true);
        this.kubePods.set(a.name, 'ready');
      }
      if (a.state === 'terminating' && this.kubePods.get(a.name) !== 'terminating') {
        await api.ok('DELETE', `/api/v1/namespaces/default/pods/${a.name}`);
        this.kubePods.set(a.name, 'terminating');
      }
    }
    for (const name of [...this.kubePods.keys()]) {
      if (this.api.some((a) => a.name === name)) continue;
      await api.ok('DELETE', `/api/v1/namespaces/default/pods/${name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 });
      this.kubePods.delete(name);
    }
  }

  /** Tells discover the current api endpoints (topology edit, or Pods in the API server). */
  async publish(): Promise<void> {
    if (this.kubeApi) await this.syncKubePods(this.kubeApi);
    else this.writeTopology();
  }

  async destroy(opts: { keepDir?: boolean } = {}): Promise<void> {
    await this.cluster.destroy(opts);
    this.kubeSocket?.close();
  }
}

/** The sum of a Prometheus metric's series whose labels include every given pair. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Shares of each pod in a byPod count, as "api-1 34%, ...". */
export function shares(byPod: Record<string, number>): string {
  const total = Object.values(byPod).reduce((a, b) => a + b, 0);
  return Object.keys(byPod)
    .sort()
    .map((k) => `${k} ${byPod[k]} (${((100 * byPod[k]) / Math.max(1, total)).toFixed(0)}%)`)
    .join(', ');
}
