// discover against the real control plane of test/lib/kube.ts: a small API client with the admin
// certificate (no kubectl process per call, so a status write can be timed to the millisecond), the
// objects a kubelet-less cluster needs (a Node, Pods bound to it, their status written through the
// status subresource as a kubelet would), etcd's JSON gateway, and discover started in-process.
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Test } from 'tap';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { createLogger } from '../../../shared/log.ts';
import { startDiscover, type Discover } from '../../../discover/main.ts';
import type { TestKube } from '../../lib/kube.ts';
import { AUDIENCE, OPERATOR_TOKEN, snapshot, until } from './discoverClient.ts';

export const NODE = 'node-a';
export const APP_LABEL = 'shoal.dev/app';
export const PLUGIN_LABEL = 'shoal.dev/plugin-id';

export interface ApiAnswer {
  status: number;
  json: any;
}

/** The API server with the admin client certificate. */
export class Api {
  readonly server: URL;
  private readonly tls: { ca: Buffer; cert: Buffer; key: Buffer };

  constructor(k: TestKube) {
    const c = k.cluster;
    this.server = new URL(c.server);
    this.tls = { ca: readFileSync(c.caFile), cert: readFileSync(c.adminCertFile), key: readFileSync(c.adminKeyFile) };
  }

  req(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 10_000): Promise<ApiAnswer> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const headers: Record<string, string> = { accept: 'application/json' };
      if (data !== undefined) {
        headers['content-type'] = contentType;
        // Node frames a DELETE's body only with a length (no chunked encoding by default for DELETE).
        headers['content-length'] = String(Buffer.byteLength(data));
      }
      const r = request(
        {
          host: this.server.hostname,
          port: this.server.port,
          path,
          method,
          headers,
          agent: false,
          timeout: timeoutMs,
          ...this.tls,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => {
            let json: unknown = text;
            try {
              json = JSON.parse(text);
            } catch {
              /* not JSON */
            }
            resolve({ status: res.statusCode ?? 0, json });
          });
          res.on('error', reject);
        },
      );
      r.on('timeout', () => r.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
      r.on('error', reject);
      r.end(data);
    });
  }

  /** A request that must succeed (2xx): its body. */
  async ok(method: string, path: string, body?: unknown, contentType?: string): Promise<any> {
    const a = await this.req(method, path, body, contentType);
    if (a.status < 200 || a.status > 299) throw new Error(`${method} ${path}: ${a.status} ${JSON.stringify(a.json).slice(0, 400)}`);
    return a.json;
  }

  /** `ok`, retried while the API server is coming back (connection refused, 429, 5xx). */
  async okEventually(method: string, path: string, body?: unknown, contentType?: string, ms = 30_000): Promise<any> {
    const end = Date.now() + ms;
    for (;;) {
      try {
        const a = await this.req(method, path, body, contentType);
        if (a.status >= 200 && a.status < 300) return a.json;
        if (a.status !== 429 && a.status < 500)
          throw Object.assign(new Error(`${method} ${path}: ${a.status} ${JSON.stringify(a.json).slice(0, 400)}`), { final: true });
        if (Date.now() > end) throw new Error(`${method} ${path}: still ${a.status} after ${ms} ms`);
      } catch (err) {
        if ((err as { final?: boolean }).final || Date.now() > end) throw err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A namespace whose `default` ServiceAccount exists (the ServiceAccount admission plugin wants it for Pods). */
  async namespace(name: string): Promise<void> {
    await this.ok('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    await until(
      `the default ServiceAccount of ${name}`,
      async () => (await this.req('GET', `/api/v1/namespaces/${name}/serviceaccounts/default`)).status === 200,
      30_000,
    );
  }

  /** The Node the Pods are bound to (the EndpointSlice controller skips Pods whose Node it cannot find). */
  async node(name = NODE): Promise<void> {
    const a = await this.req('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, labels: { 'kubernetes.io/hostname': name } },
    });
    if (a.status !== 201 && a.status !== 409) throw new Error(`create node ${name}: ${a.status} ${JSON.stringify(a.json)}`);
  }

  /** Service NAME selecting app=NAME, port 8080 (http) to target port 8080. */
  service(ns: string, name: string): Promise<any> {
    return this.ok('POST', `/api/v1/namespaces/${ns}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: ns },
      spec: { selector: { app: name }, ports: [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' }] },
    });
  }

  /** A Pod of app APP bound to the Node, listening on 8080 (no kubelet runs it: its status is written by setPodStatus). */
  pod(ns: string, name: string, app: string): Promise<any> {
    return this.ok('POST', `/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns, labels: { app } },
      spec: {
        nodeName: NODE,
        automountServiceAccountToken: false,
        containers: [{ name: 'app', image: 'registry.invalid/app:1', ports: [{ name: 'http', containerPort: 8080 }] }],
      },
    });
  }

  /** What a kubelet writes: Running with IP, and the Ready condition (through the status subresource). */
  setPodStatus(ns: string, name: string, ip: string, ready: boolean): Promise<any> {
    const cond = (type: string) => ({ type, status: ready ? 'True' : 'False' });
    return this.okEventually(
      'PATCH',
      `/api/v1/namespaces/${ns}/pods/${name}/status`,
      {
        status: {
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: [cond('Initialized'), cond('ContainersReady'), cond('Ready')],
        },
      },
      'application/merge-patch+json',
    );
  }

  /** Deletes a Pod at once (grace period 0: no kubelet would ever confirm a graceful deletion). */
  async deletePodNow(ns: string, name: string): Promise<void> {
    await this.ok('DELETE', `/api/v1/namespaces/${ns}/pods/${name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 });
    await until(
      `pod ${ns}/${name} gone`,
      async () => (await this.req('GET', `/api/v1/namespaces/${ns}/pods/${name}`)).status === 404,
      30_000,
    );
  }

  /** The mesh ConfigMap of APP: it depends on the given Services (port 8080, http) of its namespace. */
  meshConfig(ns: string, app: string, deps: string[]): Promise<any> {
    return this.ok('POST', `/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `shoal-mesh-${app}`, namespace: ns, labels: { [APP_LABEL]: app, [PLUGIN_LABEL]: 'mesh' } },
      data: {
        'plugin-config': JSON.stringify({ base_services: deps.map((d) => ({ depend_service_alias: d, port: 8080, protocol: 'http' })) }),
      },
    });
  }

  /** The EndpointSlices of a Service (those the controller made, by their service-name label). */
  async slicesOf(ns: string, service: string): Promise<any[]> {
    const l = await this.ok(
      'GET',
      `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${service}`)}`,
    );
    return l.items;
  }
}

/** The collection path of a namespaced object (Service, EndpointSlice, ConfigMap, Pod, ServiceAccount, Event). */
export function collectionPath(obj: { apiVersion: string; kind: string; metadata: { namespace?: string } }): string {
  const plural = `${obj.kind.toLowerCase()}s`;
  const base = obj.apiVersion.includes('/') ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
  return `${base}/namespaces/${obj.metadata.namespace ?? 'default'}/${plural}`;
}

/** Creates OBJ, or replaces it (at its current resourceVersion) when it exists: kubectl apply for one object. */
export async function applyObject(api: Api, obj: any): Promise<any> {
  const coll = collectionPath(obj);
  const created = await api.req('POST', coll, obj);
  if (created.status === 201) return created.json;
  if (created.status !== 409)
    throw new Error(`create ${obj.kind} ${obj.metadata.name}: ${created.status} ${JSON.stringify(created.json).slice(0, 400)}`);
  const current = await api.ok('GET', `${coll}/${obj.metadata.name}`);
  return api.ok('PUT', `${coll}/${obj.metadata.name}`, {
    ...obj,
    metadata: { ...obj.metadata, resourceVersion: current.metadata.resourceVersion },
  });
}

/** Deletes OBJ now (grace period 0). */
export async function deleteObject(
  api: Api,
  obj: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } },
): Promise<void> {
  await api.ok('DELETE', `${collectionPath(obj)}/${obj.metadata.name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 });
}

/** A token of ServiceAccount NS/SA (created when missing) from the real TokenRequest API. */
export async function serviceAccountToken(
  api: Api,
  ns: string,
  sa: string,
  audiences: string[] = [AUDIENCE],
  expirationSeconds = 3600,
): Promise<string> {
  const made = await api.req('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: sa, namespace: ns },
  });
  if (made.status !== 201 && made.status !== 409)
    throw new Error(`create serviceaccount ${ns}/${sa}: ${made.status} ${JSON.stringify(made.json)}`);
  const r = await api.ok('POST', `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { audiences, expirationSeconds },
  });
  return r.status.token as string;
}

/** A kubeconfig (JSON is YAML) for the API server with a bearer TOKEN instead of the admin certificate. */
export function tokenKubeconfig(k: TestKube, token: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'test',
    clusters: [
      {
        name: 'test',
        cluster: { server: k.cluster.server, 'certificate-authority-data': readFileSync(k.cluster.caFile).toString('base64') },
      },
    ],
    users: [{ name: 'test', user: { token } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
  });
}

/** A Service with N Pods (10.244.NET.1..N) bound to the Node and made Ready, and app `web` depending on it. */
export async function seedApp(api: Api, ns: string, net: number, n = 3, deps = ['api']): Promise<string[]> {
  await api.service(ns, 'api');
  await api.meshConfig(ns, 'web', deps);
  const ips: string[] = [];
  for (let i = 1; i <= n; i++) {
    await api.pod(ns, `api-${i}`, 'api');
    await api.setPodStatus(ns, `api-${i}`, `10.244.${net}.${i}`, true);
    ips.push(`10.244.${net}.${i}:8080`);
  }
  return ips;
}

/**
 * When the Service's EndpointSlices first list exactly WANT ("ip:port" of ready endpoints; polled every
 * 10 ms, errors while the API server is away count as not yet): performance.now() at that moment.
 */
export async function whenSlices(api: Api, ns: string, service: string, want: string[], ms = 60_000): Promise<number> {
  const w = JSON.stringify([...want].sort());
  await until(
    `the EndpointSlices of ${ns}/${service} = ${w}`,
    async () => {
      try {
        const ready = (await api.slicesOf(ns, service)).flatMap((s) =>
          (s.endpoints ?? []).filter((e: any) => e.conditions?.ready).map((e: any) => `${e.addresses[0]}:${s.ports?.[0]?.port}`),
        );
        return JSON.stringify(ready.sort()) === w;
      } catch {
        return false;
      }
    },
    ms,
  );
  return performance.now();
}

// ----- etcd's v3 JSON gateway ---------------------------------------------------------------------

const b64 = (s: string) => Buffer.from(s).toString('base64');

async function etcdPost(etcdUrl: string, path: string, body: unknown): Promise<any> {
  const r = await fetch(`${etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(5000) });
  const json = await r.json();
  if (!r.ok) throw new Error(`etcd ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

/** Writes a key outside Kubernetes' /registry prefix: etcd's revision moves on, no Kubernetes object changes. */
export async function etcdBump(etcdUrl: string): Promise<number> {
  const r = await etcdPost(etcdUrl, '/v3/kv/put', { key: b64('/shoal-test/bump'), value: b64(String(Date.now())) });
  return Number(r.header.revision);
}

/** Deletes KEY in etcd itself, behind the API server's back (what a change while it is down can only be). */
export async function etcdDelete(etcdUrl: string, key: string): Promise<number> {
  const r = await etcdPost(etcdUrl, '/v3/kv/deleterange', { key: b64(key) });
  return Number(r.deleted ?? 0);
}

/** Compacts etcd's history up to REVISION: watches that resume before it get 410 Expired. */
export async function etcdCompact(etcdUrl: string, revision: number): Promise<void> {
  await etcdPost(etcdUrl, '/v3/kv/compaction', { revision: String(revision), physical: true });
}

// ----- discover -------------------------------------------------------------------------------

export interface Running {
  d: Discover;
  /** discover's log lines, parsed. */
  logs: Array<Record<string, any>>;
}

/** discover --kubernetes with the admin kubeconfig, in-process; its log lines are kept (and printed with SHOAL_TEST_LOG). */
export async function startRealDiscover(t: Test, k: TestKube, staleAfterMs = 30_000): Promise<Running> {
  return startDiscoverWith(t, k.kubeconfig, { staleAfterMs });
}

/** startRealDiscover with any kubeconfig file; with wait false it returns before discover is ready. */
export async function startDiscoverWith(
  t: Test,
  kubeconfigFile: string,
  opts: { staleAfterMs?: number; wait?: boolean } = {},
): Promise<Running> {
  const logs: Array<Record<string, any>> = [];
  const log = createLogger('discover', 'info', {
    write(line: string) {
      for (const l of line.split('\n')) {
        if (l === '') continue;
        try {
          logs.push(JSON.parse(l));
        } catch {
          logs.push({ msg: l });
        }
      }
      if (process.env.SHOAL_TEST_LOG) process.stderr.write(line);
    },
  });
  const d = await startDiscover({
    kubernetes: { kubeconfigFile, staleAfterMs: opts.staleAfterMs ?? 30_000, tokenAudience: AUDIENCE },
    host: '127.0.0.1',
    port: 0,
    writeToken: OPERATOR_TOKEN,
    log,
  });
  t.teardown(() => d.close());
  if (opts.wait !== false) await d.ready;
  return { d, logs };
}

/** "address:port" of the app's endpoints for CLUSTER, sorted; null when the snapshot has no such cluster. */
export function endpointsIn(s: Snapshot, cluster: string): string[] | null {
  const c = s.clusters.find((x) => x.name === cluster);
  return c ? c.endpoints.map((e) => `${e.address}:${e.port}`).sort() : null;
}

export async function latest(d: Discover, ns: string, app = 'web'): Promise<Snapshot> {
  const a = await snapshot(d, ns, app);
  if (a.status !== 200) throw new Error(`snapshot ${ns}/${app}: ${a.status} ${JSON.stringify(a.json)}`);
  return a.json as Snapshot;
}

/** Waits until the app's endpoints for CLUSTER are WANT (sorted); the ms it took. */
export async function untilEndpoints(d: Discover, ns: string, cluster: string, want: string[] | null, ms = 30_000): Promise<number> {
  const t0 = performance.now();
  const w = want === null ? null : [...want].sort();
  let last: string[] | null = null;
  try {
    await until(
      `${cluster} = ${JSON.stringify(w)}`,
      async () => {
        last = endpointsIn(await latest(d, ns), cluster);
        return JSON.stringify(last) === JSON.stringify(w);
      },
      ms,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen ${JSON.stringify(last)}`, { cause: err });
  }
  return performance.now() - t0;
}

/** discover's watch failures logged since line FROM: status (or message) -> count. */
export function watchFailures(logs: Array<Record<string, any>>, from = 0): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of logs.slice(from)) {
    if (l.msg !== 'watch failed; restarting with backoff') continue;
    const k = `${l.informer} ${l.status ?? String(l.error).slice(0, 60)}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
