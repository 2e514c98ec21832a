// The mesh the Gateway API mesh conformance cases run against, built the way the official runner
// expects its cluster (conformance/mesh/manifests.yaml applied as it is), with what a kubelet-less
// control plane lacks supplied by the harness:
//
//   - the test file's real control plane (test/lib/kube.ts), the Gateway API CRDs (experimental
//     channel of the pinned release) installed when the control plane has not installed them;
//   - the echo Deployments' Pods, made by the Deployment and ReplicaSet controllers, bound to a Node
//     (the binding subresource, as a scheduler does) and given the status a kubelet would write, with the
//     address of a network namespace of their own (test/e2e/lib/netns.ts): the EndpointSlice controller
//     refuses loopback addresses ("may not be in the loopback range"), so the pods cannot live on the
//     host's loopback. In each pod's namespace echo-basic (the conformance echo server, built from the
//     module: scripts/gateway.ts ensureEchoBasic) serves HTTP on 8080 and gRPC on 7070, the container
//     ports the Services target, with POD_NAME and NAMESPACE as the Deployment would give them;
//   - for each caller (echo-v1 of gateway-conformance-mesh, and of -consumer) a shoal sidecar (proxy
//     and DNS responder on 127.0.0.1:53, resolv.conf naming it with the pod's cluster search list), fed
//     by discover (in this process, watching the API server; reached through a Unix socket relay,
//     test/e2e/lib/kubeRelay.ts), with the app's mesh ConfigMap declaring the Services the cases call
//     (the harness's, not the cases') and the service account echo-v1 of the pod's namespace;
//   - the caller itself: test/gateway/lib/meshClient.ts beside that sidecar, what `kubectl exec
//     <echo-v1 pod> -- client ...` does in the official runner.
//
// The caller's sidecar and client run in a network namespace of their own, next to the echo-v1 pod's
// (whose echo-basic answers as the echo-v1 endpoint), not inside it: echo-basic listens on the wildcard
// address on 8080 and 7070, the very ports the cases call the Services on, and a shoal sidecar (no
// traffic capture) listens for each dependency on its own loopback address and that port, which a
// wildcard listener of the same network namespace already holds (the sidecar says so and stays
// unready). Everything the cases can observe of the caller (its namespace, app and identity, its
// requests going through its sidecar) is the echo-v1 pod's.
import { writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';
import { crdFiles, ensureEchoBasic, GATEWAY_CONFORMANCE, moduleDir } from '../../../scripts/gateway.ts';
import type { TestKube } from '../../lib/kube.ts';
import { meshConfigMap } from '../../lib/kubeFixtures.ts';
import { Api, applyObject, NODE, serviceAccountToken, startDiscoverWith, type Running } from '../../discover/kubernetes/realKube.ts';
import { OPERATOR_TOKEN, snapshot, until } from '../../discover/kubernetes/discoverClient.ts';
import { unixToTcp } from '../../e2e/lib/kubeRelay.ts';
import { CLI } from '../../e2e/lib/mesh.ts';
import { NetnsCluster, type Pod, type Proc } from '../../e2e/lib/netns.ts';
import type { ClientRequest, ClientResult } from './meshClient.ts';

export const MESH_NS = 'gateway-conformance-mesh';
export const CONSUMER_NS = 'gateway-conformance-mesh-consumer';
/** The app name of the caller pods' sidecars (their mesh ConfigMap is shoal-mesh-echo-v1, their service account echo-v1). */
export const CALLER_APP = 'echo-v1';
const RELAY = join(import.meta.dirname, '..', '..', 'e2e', 'lib', 'kubeRelay.ts');
const CLIENT = join(import.meta.dirname, 'meshClient.ts');
const NODE_BIN = process.execPath;
/** The port discover has in the caller pods (the relay's), and where the pod's "cluster DNS" answers. */
const DISCOVER_PORT = 6100;
const CLUSTER_DNS = '127.0.0.53';
const ECHO_HTTP_PORT = 8080;
const ECHO_GRPC_PORT = 7070;

export type CallerName = 'mesh' | 'consumer';

/**
 * What each caller's app depends on (base_services): every Service and port a case calls, and every
 * backend port a case's routes name. echo's 7070 is gRPC (appProtocol kubernetes.io/h2c); the others'
 * 7070 are named grpc.
 */
const DEPENDENCIES: Record<CallerName, Array<{ depend_service_alias: string; port: number; protocol: string }>> = {
  mesh: [
    { depend_service_alias: 'echo', port: 80, protocol: 'http' },
    { depend_service_alias: 'echo', port: 8080, protocol: 'http' },
    { depend_service_alias: 'echo', port: 7070, protocol: 'grpc' },
    { depend_service_alias: 'echo-v1', port: 80, protocol: 'http' },
    { depend_service_alias: 'echo-v1', port: 8080, protocol: 'http' },
    { depend_service_alias: 'echo-v1', port: 7070, protocol: 'grpc' },
    { depend_service_alias: 'echo-v2', port: 80, protocol: 'http' },
    { depend_service_alias: 'echo-v2', port: 8080, protocol: 'http' },
    { depend_service_alias: 'echo-v2', port: 7070, protocol: 'grpc' },
  ],
  consumer: [{ depend_service_alias: `echo-v1.${MESH_NS}`, port: 80, protocol: 'http' }],
};

export interface EchoPod {
  /** The Pod's name in the API server (echo-v1-<replicaset hash>-<random>). */
  name: string;
  namespace: string;
  /** The Deployment's name (echo-v1, echo-v2). */
  deployment: string;
  net: Pod;
}

class CallerClient {
  readonly proc: Proc;
  private next = 1;
  private readonly waiting = new Map<number, (answer: any) => void>();

  constructor(proc: Proc) {
    this.proc = proc;
    const rl = createInterface({ input: proc.child.stdout! });
    rl.on('line', (line) => {
      if (!line.startsWith('{')) return;
      let a: { id?: number };
      try {
        a = JSON.parse(line);
      } catch {
        return;
      }
      const w = this.waiting.get(a.id ?? -1);
      if (w) {
        this.waiting.delete(a.id!);
        w(a);
      }
    });
    void proc.exited.then(({ code, signal }) => {
      for (const [id, w] of this.waiting) {
        this.waiting.delete(id);
        w({ id, error: `the client exited (${code ?? signal})` });
      }
    });
  }

  ask(op: ClientRequest, timeoutMs = 120_000): Promise<any> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`client ${this.proc.name}: no answer to ${JSON.stringify(op).slice(0, 200)} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, (a) => {
        clearTimeout(timer);
        if (a.error) reject(new Error(`client ${this.proc.name}: ${a.error}`));
        else resolve(a);
      });
      this.proc.write(JSON.stringify({ ...op, id }));
    });
  }
}

export interface Caller {
  name: CallerName;
  namespace: string;
  pod: EchoPod;
  sidecar: Proc;
  client: CallerClient;
}

export class MeshHarness {
  readonly cluster: NetnsCluster;
  readonly kube: TestKube;
  readonly api: Api;
  readonly discover: Running;
  readonly pods: EchoPod[];
  readonly callers: Map<CallerName, Caller>;
  readonly conformanceDir: string;
  /** Each caller's snapshot (without its version) before any case: what a case's cleanup returns to. */
  private baseline = new Map<CallerName, string>();
  private socket: Server;

  private constructor(parts: {
    cluster: NetnsCluster;
    kube: TestKube;
    api: Api;
    discover: Running;
    pods: EchoPod[];
    callers: Map<CallerName, Caller>;
    socket: Server;
    conformanceDir: string;
  }) {
    this.cluster = parts.cluster;
    this.kube = parts.kube;
    this.api = parts.api;
    this.discover = parts.discover;
    this.pods = parts.pods;
    this.callers = parts.callers;
    this.socket = parts.socket;
    this.conformanceDir = parts.conformanceDir;
  }

  /** Builds the mesh; `comment` reports its steps. The cluster is torn down by destroy() (and on exit by netns.ts). */
  static async start(t: Test, kube: TestKube, cluster: NetnsCluster, comment: (m: string) => void): Promise<MeshHarness> {
    const t0 = Date.now();
    const step = (m: string) => comment(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${m}`);
    const conformanceDir = moduleDir(GATEWAY_CONFORMANCE);
    const echoBasic = await ensureEchoBasic((m) => comment(m));
    const api = new Api(kube);
    await api.node();
    const installed = await ensureGatewayCrds(kube);
    step(
      installed ? `Gateway API CRDs installed by the harness (${installed})` : 'Gateway API CRDs already installed by the control plane',
    );
    await kubectlOk(kube, ['apply', '-f', join(conformanceDir, 'mesh', 'manifests.yaml')]);
    step('mesh/manifests.yaml applied');

    // The Deployment and ReplicaSet controllers make the Pods; no scheduler, no kubelet: bind and run them here.
    const want = [
      [MESH_NS, 'echo-v1'],
      [MESH_NS, 'echo-v2'],
      [CONSUMER_NS, 'echo-v1'],
    ] as const;
    const pods: EchoPod[] = [];
    for (const [namespace, deployment] of want) {
      let name = '';
      await until(
        `a Pod of Deployment ${namespace}/${deployment}`,
        async () => {
          const l = await api.ok(
            'GET',
            `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(`app=echo,version=${deployment.slice(5)}`)}`,
          );
          name = l.items.find((p: any) => !p.metadata.deletionTimestamp)?.metadata.name ?? '';
          return name !== '';
        },
        60_000,
      );
      const net = cluster.addPod(`${namespace === MESH_NS ? 'm' : 'c'}-${deployment.slice(5)}`);
      const env = { POD_NAME: name, NAMESPACE: namespace };
      const http = cluster.spawn(net, 'echo-http', echoBasic, [], { env: { ...env, HTTP_PORT: String(ECHO_HTTP_PORT) } });
      const grpc = cluster.spawn(net, 'echo-grpc', echoBasic, [], {
        env: { ...env, GRPC_ECHO_SERVER: '1', HTTP_PORT: String(ECHO_GRPC_PORT) },
      });
      await Promise.all([http.waitFor(/listening on port \d+ \(http\)/, 30_000), grpc.waitFor(/plaintext server listening/, 30_000)]);
      await api.ok('POST', `/api/v1/namespaces/${namespace}/pods/${name}/binding`, {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name, namespace },
        target: { apiVersion: 'v1', kind: 'Node', name: NODE },
      });
      await api.setPodStatus(namespace, name, net.ip, true);
      pods.push({ name, namespace, deployment, net });
    }
    step(
      `pods ${pods.map((p) => `${p.namespace}/${p.name}=${p.net.ip}`).join(', ')} bound and Ready, echo-basic serving ${ECHO_HTTP_PORT} and ${ECHO_GRPC_PORT}`,
    );
    const meshPods = pods.filter((p) => p.namespace === MESH_NS);
    for (const [service, members] of [
      ['echo', meshPods],
      ['echo-v1', meshPods.filter((p) => p.deployment === 'echo-v1')],
      ['echo-v2', meshPods.filter((p) => p.deployment === 'echo-v2')],
    ] as const) {
      const w = members
        .map((p) => p.net.ip)
        .sort()
        .join(',');
      await until(
        `the EndpointSlices of ${MESH_NS}/${service} = ${w}`,
        async () => {
          const l = await api.ok(
            'GET',
            `/apis/discovery.k8s.io/v1/namespaces/${MESH_NS}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${service}`)}`,
          );
          const ready = l.items.flatMap((s: any) =>
            (s.endpoints ?? []).filter((e: any) => e.conditions?.ready !== false).map((e: any) => e.addresses[0]),
          );
          return [...new Set(ready)].sort().join(',') === w;
        },
        30_000,
      );
    }
    step('EndpointSlices list the pods');

    // The callers' mesh configs and service-account tokens (discover reviews them with the API server).
    const tokens = new Map<CallerName, string>();
    for (const [caller, namespace] of [
      ['mesh', MESH_NS],
      ['consumer', CONSUMER_NS],
    ] as const) {
      await applyObject(api, meshConfigMap(namespace, CALLER_APP, 'mesh', { base_services: DEPENDENCIES[caller] }));
      const file = join(cluster.dir, `${caller}.token`);
      writeFileSync(file, await serviceAccountToken(api, namespace, CALLER_APP));
      tokens.set(caller, file);
    }
    const discover = await startDiscoverWith(t, kube.kubeconfig);
    const sock = join(cluster.dir, 'discover.sock');
    const socket = await unixToTcp(sock, '127.0.0.1', Number(new URL(discover.d.url).port));
    step(`discover ready on ${discover.d.url}`);

    const callers = new Map<CallerName, Caller>();
    for (const [caller, namespace] of [
      ['mesh', MESH_NS],
      ['consumer', CONSUMER_NS],
    ] as const) {
      const pod = pods.find((p) => p.namespace === namespace && p.deployment === 'echo-v1')!;
      const net = cluster.addPod(`${namespace === MESH_NS ? 'm' : 'c'}-caller`, { resolvConf: resolvConf(namespace) });
      const relay = cluster.spawn(net, 'discover-relay', NODE_BIN, [RELAY, '127.0.0.1', String(DISCOVER_PORT), sock]);
      const client = cluster.spawn(net, 'client', NODE_BIN, [CLIENT, CLUSTER_DNS, '53'], { stdin: true });
      await Promise.all([relay.waitFor(/ready/), client.waitFor(/ready/)]);
      const sidecar = cluster.spawn(net, 'sidecar', NODE_BIN, [
        CLI,
        'proxy',
        '--discover-url',
        `http://127.0.0.1:${DISCOVER_PORT}/v1/resources/${namespace}/${CALLER_APP}/mesh`,
        '--token-file',
        tokens.get(caller)!,
        '--state-file',
        join(cluster.dir, `${caller}.state.json`),
        '--dns-host',
        '127.0.0.1',
        '--dns-port',
        '53',
        '--dns-upstream',
        `${CLUSTER_DNS}:53`,
        '--log-level',
        'warn',
      ]);
      callers.set(caller, { name: caller, namespace, pod, sidecar, client: new CallerClient(client) });
    }
    const h = new MeshHarness({ cluster, kube, api, discover, pods, callers, socket, conformanceDir });
    for (const c of callers.values()) {
      await until(
        `the sidecar of ${c.namespace}/${c.pod.name} ready`,
        async () => {
          if (!c.sidecar.running) throw new Error(`the sidecar of ${c.namespace}/${c.pod.name} exited:\n${c.sidecar.tail()}`);
          return (await c.client.ask({ op: 'get', url: 'http://127.0.0.1:65533/ready' })).status === 200;
        },
        60_000,
      );
    }
    step('sidecars ready');
    for (const c of callers.values()) h.baseline.set(c.name, await h.snapshotText(c));
    return h;
  }

  /** The caller's snapshot as discover serves it, without its version (what a case's manifests change). */
  private async snapshotText(c: Caller): Promise<string> {
    const a = await snapshot(this.discover.d, c.namespace, CALLER_APP, OPERATOR_TOKEN);
    if (a.status !== 200) throw new Error(`snapshot ${c.namespace}/${CALLER_APP}: ${a.status} ${JSON.stringify(a.json).slice(0, 300)}`);
    const { version: _version, ...rest } = a.json as { version: string };
    return JSON.stringify(rest);
  }

  /** The pod addresses by Deployment in gateway-conformance-mesh (ConnectToApp's Address). */
  podIps(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const p of this.pods) if (p.namespace === MESH_NS) out[p.deployment] = p.net.ip;
    return out;
  }

  caller(name: CallerName): Caller {
    const c = this.callers.get(name);
    if (!c) throw new Error(`no caller ${name}`);
    return c;
  }

  /** kubectl apply -f of the module's files (paths inside the conformance module). */
  async apply(files: string[]): Promise<void> {
    for (const f of files) await kubectlOk(this.kube, ['apply', '-f', join(this.conformanceDir, f)]);
  }

  /**
   * Deletes what apply() made, then waits until every caller's snapshot is the one before any case (a
   * case starts from the base mesh, as the official suite's cleanup gives it) and the sidecar runs it.
   * Returns a note when that did not happen in time (the next case may then see leftovers).
   */
  async clean(files: string[]): Promise<string | null> {
    for (const f of files) await kubectlOk(this.kube, ['delete', '--ignore-not-found', '--wait=true', '-f', join(this.conformanceDir, f)]);
    const notes: string[] = [];
    for (const c of this.callers.values()) {
      try {
        await until(
          `the snapshot of ${c.namespace}/${CALLER_APP} back to the base mesh`,
          async () => (await this.snapshotText(c)) === this.baseline.get(c.name),
          30_000,
        );
        const version = (await snapshot(this.discover.d, c.namespace, CALLER_APP, OPERATOR_TOKEN)).json.version as string;
        await until(
          `the sidecar of ${c.namespace} on snapshot ${version}`,
          async () => {
            const a = await c.client.ask({ op: 'get', url: 'http://127.0.0.1:65533/config_dump' });
            try {
              return JSON.parse(a.body).snapshot?.version === version;
            } catch {
              return false;
            }
          },
          15_000,
        );
      } catch (err) {
        notes.push((err as Error).message);
      }
    }
    return notes.length > 0 ? notes.join('; ') : null;
  }

  /** One request (or a batch) from the caller pod, as the echo client sends it. */
  async send(caller: CallerName, op: ClientRequest): Promise<ClientResult[]> {
    return (await this.caller(caller).client.ask(op)).results as ClientResult[];
  }

  /** The path of the module's gRPC echo proto (read by the caller's gRPC client). */
  get grpcProto(): string {
    return join(this.conformanceDir, 'echo-basic', 'grpcecho.proto');
  }

  async destroy(opts: { keepDir?: boolean } = {}): Promise<void> {
    await this.cluster.destroy(opts);
    this.socket.close();
  }
}

/** A pod's resolv.conf with the sidecar's DNS responder as its name server (as the injector sets it). */
function resolvConf(namespace: string): string {
  return `nameserver 127.0.0.1\nsearch ${namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:2\n`;
}

function kubectlOk(kube: TestKube, args: string[]): Promise<string> {
  return kube.kubectlOk(args, { timeoutMs: 60_000 });
}

/**
 * The Gateway API CRDs (experimental channel of the pinned release) when the control plane has not
 * installed them: kubectl apply (server-side: the CRDs exceed the last-applied annotation's size),
 * then wait until every one is Established. Returns what it installed, or null when they were there.
 */
export async function ensureGatewayCrds(kube: TestKube): Promise<string | null> {
  const needed = ['httproutes.gateway.networking.k8s.io', 'grpcroutes.gateway.networking.k8s.io'];
  const have = await kube.kubectl(['get', 'crd', ...needed, '-o', 'name']);
  if (have.code === 0) {
    await kubectlOk(kube, ['wait', '--for=condition=Established', '--timeout=60s', ...needed.map((n) => `crd/${n}`)]);
    return null;
  }
  const files = crdFiles('experimental');
  const args = ['apply', '--server-side', '--force-conflicts'];
  for (const f of files) args.push('-f', f);
  const out = await kubectlOk(kube, args);
  const names = out
    .split('\n')
    .map((l) => l.trim().split(' ')[0])
    .filter((n) => n.startsWith('customresourcedefinition'));
  await kubectlOk(kube, ['wait', '--for=condition=Established', '--timeout=60s', ...names]);
  return `${names.length} CRDs from ${files.length} files`;
}

/** Whether a caller's sidecar process still runs (a crash is a product failure to report, not a hang). */
export function sidecarDown(h: MeshHarness): string | null {
  for (const c of h.callers.values())
    if (!c.sidecar.running) return `the sidecar of ${c.namespace}/${c.pod.name} exited:\n${c.sidecar.tail()}`;
  return null;
}
