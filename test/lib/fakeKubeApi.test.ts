// The fake Kubernetes API server, driven by the real @kubernetes/client-node (and raw HTTPS where
// the wire itself is the point): CRUD and Status errors, selectors, paging, informers through
// updates, compaction, drops and failures, bookmarks, timeouts, TokenReview, kubeconfig files.
import t, { type Test } from 'tap';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { Agent as UndiciAgent, fetch } from 'undici';
import { request as httpsRequest } from 'node:https';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException, CoreV1Api, DiscoveryV1Api, KubeConfig, PatchStrategy, Watch, makeInformer, setHeaderOptions,
  type KubernetesObject, type V1ConfigMap, type V1EndpointSlice, type V1Namespace, type V1Service,
} from '@kubernetes/client-node';
import {
  endpointSlice, meshConfigMap, namespace, seedServices, service, withFakeKubeApi, type FakeKubeApi, type FakeKubeApiOptions,
} from './fakeKubeApi.ts';

const ADMIN = 'admin-token';

async function fakeApi(tt: Test, opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  const api = await withFakeKubeApi(tt, opts);
  api.addToken(ADMIN, { username: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'] });
  return api;
}

/** A raw request (HTTPS trusting only the fake's CA, or plain HTTP). */
function raw(api: FakeKubeApi, method: string, path: string, opts: { token?: string; body?: unknown; contentType?: string; headers?: Record<string, string> } = {}):
  Promise<{ status: number; text: string; json: any; headers: IncomingHttpHeaders; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    if (body !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      // Node frames no body on DELETE by default: say its length.
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const request = api.tls ? httpsRequest : httpRequest;
    const req = request(`${api.url}${path}`, { method, ca: api.tls ? api.caPem : undefined, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const text = bytes.toString('utf8');
        let json: unknown;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, text, json, headers: res.headers, bytes });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function apiError(p: Promise<unknown>): Promise<{ code: number; body: any }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) return { code: err.code, body: typeof err.body === 'string' ? JSON.parse(err.body) : err.body };
    throw err;
  }
  throw new Error('expected the call to fail');
}

/** An informer with every callback recorded as "verb ns/name" (errors as "error <message>"). */
function recordInformer<T extends KubernetesObject>(kc: KubeConfig, path: string, list: () => Promise<{ items: T[] }>, labelSelector?: string) {
  const informer = makeInformer<T>(kc, path, list as never, labelSelector);
  const events: string[] = [];
  const errors: unknown[] = [];
  for (const verb of ['add', 'update', 'delete'] as const) informer.on(verb, (o: T) => events.push(`${verb} ${o.metadata?.namespace}/${o.metadata?.name}`));
  informer.on('error', (err: unknown) => {
    errors.push(err);
    events.push(`error ${(err as Error)?.message ?? String(err)}`);
  });
  return { informer, events, errors };
}

t.test('HTTPS with a fresh CA; no token or an unknown one gets a 401 Status', async (t) => {
  const api = await fakeApi(t);
  t.match(api.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  t.match(api.caPem, /BEGIN CERTIFICATE/);
  for (const token of [undefined, 'nope']) {
    const r = await raw(api, 'GET', '/api/v1/services', { token });
    t.equal(r.status, 401);
    t.same(r.json, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
  }
  api.addToken('old', { username: 'someone', expired: true });
  t.equal((await raw(api, 'GET', '/api/v1/services', { token: 'old' })).status, 401, 'an expired token is refused');
  const core = api.kubeConfig('nope').makeApiClient(CoreV1Api);
  t.equal((await apiError(core.listServiceForAllNamespaces())).code, 401, 'client-node sees 401 too');
  const ok = await api.kubeConfig(ADMIN).makeApiClient(CoreV1Api).listServiceForAllNamespaces();
  t.equal(ok.items.length, 0);
  t.equal(ok.metadata?.resourceVersion, api.resourceVersion, 'the list carries the global resourceVersion');
  // Another CA is not trusted: the certificate really is checked.
  const other = await withFakeKubeApi(t);
  const mixed = new KubeConfig();
  mixed.loadFromOptions({
    clusters: [{ name: 'c', server: api.url, caData: Buffer.from(other.caPem).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'u', token: ADMIN }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
  });
  await t.rejects(mixed.makeApiClient(CoreV1Api).listServiceForAllNamespaces(), 'a certificate from another CA is refused');
});

t.test('CRUD through CoreV1Api: stamps, one global resourceVersion, Status errors', async (t) => {
  const api = await fakeApi(t);
  const core = api.kubeConfig(ADMIN).makeApiClient(CoreV1Api);
  const created = await core.createNamespacedConfigMap({ namespace: 'shop', body: meshConfigMap('shop', 'web', 'mesh', { base_services: [] }) as V1ConfigMap });
  t.ok(created.metadata?.uid, 'uid stamped');
  t.ok(created.metadata?.creationTimestamp, 'creationTimestamp stamped');
  t.equal(created.metadata?.namespace, 'shop');
  const rv1 = Number(created.metadata?.resourceVersion);
  const svc = await core.createNamespacedService({ namespace: 'shop', body: service('shop', 'api', [8080]) as V1Service });
  t.equal(Number(svc.metadata?.resourceVersion), rv1 + 1, 'every write bumps the one counter, across kinds');
  t.equal(svc.metadata?.generation, 1);
  t.match(svc.spec?.clusterIP, /^10\.96\./, 'a cluster IP is allocated');

  const dup = await apiError(core.createNamespacedConfigMap({ namespace: 'shop', body: meshConfigMap('shop', 'web', 'mesh', {}) as V1ConfigMap }));
  t.equal(dup.code, 409);
  t.match(dup.body, { kind: 'Status', reason: 'AlreadyExists', message: 'configmaps "shoal-mesh-web" already exists', details: { name: 'shoal-mesh-web', kind: 'configmaps' } });

  const missing = await apiError(core.readNamespacedConfigMap({ name: 'nope', namespace: 'shop' }));
  t.equal(missing.code, 404);
  t.match(missing.body, { reason: 'NotFound', message: 'configmaps "nope" not found' });

  const noName = await apiError(core.createNamespacedConfigMap({ namespace: 'shop', body: { metadata: {}, data: {} } }));
  t.equal(noName.code, 422);
  t.match(noName.body, { reason: 'Invalid', details: { causes: [{ field: 'metadata.name', reason: 'FieldValueRequired' }] } });

  // Replace: a fresh RV wins, the stale one then gets 409 Conflict and changes nothing.
  const fresh = await core.readNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop' });
  const stale = structuredClone(fresh);
  fresh.data = { 'plugin-config': '{"base_services":[{"depend_service_alias":"api","port":8080}]}' };
  const replaced = await core.replaceNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop', body: fresh });
  t.ok(Number(replaced.metadata?.resourceVersion) > Number(fresh.metadata?.resourceVersion));
  t.equal(replaced.metadata?.uid, created.metadata?.uid, 'uid kept across updates');
  stale.data = { 'plugin-config': 'lost update' };
  const c = await apiError(core.replaceNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop', body: stale }));
  t.equal(c.code, 409);
  t.match(c.body, { reason: 'Conflict', message: /the object has been modified/ });
  t.match(api.get('ConfigMap', 'shop', 'shoal-mesh-web')?.data, { 'plugin-config': /depend_service_alias/ }, 'the stale write changed nothing');

  // A replace that changes nothing is no new revision.
  const before = api.resourceVersion;
  const same = await core.replaceNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop', body: replaced });
  t.equal(same.metadata?.resourceVersion, replaced.metadata?.resourceVersion);
  t.equal(api.resourceVersion, before);

  // PATCH: client-node's default Content-Type is JSON Patch; merge patch on request.
  const jp = await core.patchNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop', body: [{ op: 'add', path: '/metadata/labels/team', value: 'a' }] });
  t.equal(jp.metadata?.labels?.team, 'a');
  const mp = await core.patchNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop', body: { metadata: { labels: { team: null } }, data: { extra: 'x' } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  t.equal(mp.metadata?.labels?.team, undefined, 'null removes a key in a merge patch');
  t.same(Object.keys(mp.data ?? {}).sort(), ['extra', 'plugin-config']);
  t.equal(mp.metadata?.labels?.['shoal.dev/app'], 'web', 'other labels kept');

  // Service spec changes bump generation; a label change does not.
  const svc2 = await core.patchNamespacedService({ name: 'api', namespace: 'shop', body: { spec: { ports: [{ port: 9090, protocol: 'TCP', targetPort: 9090 }] } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
  t.equal(svc2.metadata?.generation, 2);
  t.equal(svc2.spec?.clusterIP, svc.spec?.clusterIP, 'cluster IP kept');
  const svc3 = await core.patchNamespacedService({ name: 'api', namespace: 'shop', body: { metadata: { labels: { x: 'y' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  t.equal(svc3.metadata?.generation, 2);

  // DELETE answers as the real registries do: Services return the object, ConfigMaps a Status.
  const deletedSvc = await core.deleteNamespacedService({ name: 'api', namespace: 'shop' });
  t.equal(deletedSvc.metadata?.name, 'api');
  const deletedCm = await core.deleteNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop' });
  t.equal(deletedCm.status, 'Success');
  t.equal((await apiError(core.readNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop' }))).code, 404);
  t.equal((await apiError(core.deleteNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop' }))).code, 404);

  // Namespaces are cluster-scoped and carry their name label.
  const ns = await core.createNamespace({ body: namespace('shop', { 'shoal.dev/inject': 'enabled' }) as V1Namespace });
  t.same(ns.metadata?.labels, { 'shoal.dev/inject': 'enabled', 'kubernetes.io/metadata.name': 'shop' });
  t.equal((await core.readNamespace({ name: 'shop' })).status?.phase, 'Active');
});

t.test('LIST: label and field selectors, namespaces, paging with limit/continue', async (t) => {
  const api = await fakeApi(t);
  const core = api.kubeConfig(ADMIN).makeApiClient(CoreV1Api);
  const discovery = api.kubeConfig(ADMIN).makeApiClient(DiscoveryV1Api);
  api.apply(service('a', 'api', [80], { labels: { tier: 'back', team: 'x' } }));
  api.apply(service('a', 'web', [80], { labels: { tier: 'front' } }));
  api.apply(service('b', 'api', [80], { labels: { tier: 'back' } }));
  api.apply(service('b', 'db', [5432]));
  const names = async (q: { labelSelector?: string; fieldSelector?: string }) =>
    (await core.listServiceForAllNamespaces(q)).items.map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`);
  t.same(await names({}), ['a/api', 'a/web', 'b/api', 'b/db'], 'sorted by namespace/name as etcd keys are');
  t.same(await names({ labelSelector: 'tier=back' }), ['a/api', 'b/api']);
  t.same(await names({ labelSelector: 'tier==back,team' }), ['a/api']);
  t.same(await names({ labelSelector: 'tier' }), ['a/api', 'a/web', 'b/api']);
  t.same(await names({ labelSelector: '!tier' }), ['b/db']);
  t.same(await names({ labelSelector: 'tier!=back' }), ['a/web', 'b/db'], '!= also matches objects without the label');
  t.same(await names({ labelSelector: 'tier in (front, back),team notin (x)' }), ['a/web', 'b/api']);
  t.same(await names({ fieldSelector: 'metadata.name=api' }), ['a/api', 'b/api']);
  t.same(await names({ fieldSelector: 'metadata.namespace!=a,metadata.name!=db' }), ['b/api']);
  t.same((await core.listNamespacedService({ namespace: 'b' })).items.map((s) => s.metadata?.name), ['api', 'db']);
  const bad = await apiError(core.listServiceForAllNamespaces({ labelSelector: 'tier in front' }));
  t.equal(bad.code, 400);
  t.equal((await apiError(core.listServiceForAllNamespaces({ fieldSelector: 'spec.type=ClusterIP' }))).code, 400, 'unsupported field');

  // List items carry no kind/apiVersion, as on the real server; the list itself does.
  const r = await raw(api, 'GET', '/api/v1/namespaces/a/services', { token: ADMIN });
  t.match(r.json, { kind: 'ServiceList', apiVersion: 'v1', metadata: { resourceVersion: api.resourceVersion } });
  t.equal(r.json.items[0].kind, undefined);

  // Paging: a consistent snapshot at the first page's RV, even when writes happen in between.
  for (let i = 0; i < 5; i++) api.apply(endpointSlice('a', `api-${i}`, 'api', [{ ip: `10.0.0.${i}`, ready: true }], [{ port: 80 }]));
  const p1 = await discovery.listEndpointSliceForAllNamespaces({ limit: 2 });
  t.same(p1.items.map((s) => s.metadata?.name), ['api-0', 'api-1']);
  t.equal(p1.metadata?.remainingItemCount, 3);
  api.remove('EndpointSlice', 'a', 'api-4');
  api.apply(endpointSlice('a', 'api-5', 'api', [{ ip: '10.0.0.5' }], [{ port: 80 }]));
  const p2 = await discovery.listEndpointSliceForAllNamespaces({ limit: 2, _continue: p1.metadata?._continue });
  const p3 = await discovery.listEndpointSliceForAllNamespaces({ limit: 2, _continue: p2.metadata?._continue });
  t.same([...p2.items, ...p3.items].map((s) => s.metadata?.name), ['api-2', 'api-3', 'api-4'], 'pages show the state of the first page');
  t.notOk(p3.metadata?._continue, 'the last page has no continue token');
  api.compact();
  const expired = await apiError(discovery.listEndpointSliceForAllNamespaces({ limit: 2, _continue: p1.metadata?._continue }));
  t.equal(expired.code, 410, 'a continue token older than the compaction point is 410 Expired');
  t.match(expired.body, { reason: 'Expired' });
});

t.test('informers see add, update and delete; a label selector turns leaving objects into deletes', async (t) => {
  const api = await fakeApi(t);
  const kc = api.kubeConfig(ADMIN);
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  api.apply(service('shop', 'api', [8080]));
  api.apply(meshConfigMap('shop', 'web', 'mesh', { base_services: [] }));
  api.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unrelated', namespace: 'shop' }, data: {} });

  const svc = recordInformer<V1Service>(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
  const eps = recordInformer<V1EndpointSlice>(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());
  const cms = recordInformer<V1ConfigMap>(kc, '/api/v1/configmaps', () => core.listConfigMapForAllNamespaces({ labelSelector: 'shoal.dev/app' }), 'shoal.dev/app');
  t.teardown(() => Promise.all([svc.informer.stop(), eps.informer.stop(), cms.informer.stop()]));
  await Promise.all([svc.informer.start(), eps.informer.start(), cms.informer.start()]);
  t.same(svc.events, ['add shop/api']);
  t.same(cms.events, ['add shop/shoal-mesh-web'], 'the unlabelled ConfigMap is not listed');
  t.equal(api.watchCount(), 3);
  const watch = api.requests({ path: '/api/v1/configmaps', watch: true })[0];
  t.match(watch.query, { labelSelector: 'shoal.dev/app', resourceVersion: /^\d+$/ }, 'the watch carries the list RV and the selector');

  api.apply(endpointSlice('shop', 'api-abc', 'api', [{ ip: '10.0.0.1', ready: true }, { ip: '10.0.0.2', ready: true }], [{ name: 'http', port: 8080 }]));
  await until('slice added', () => eps.events.length === 1);
  api.apply(endpointSlice('shop', 'api-abc', 'api', [{ ip: '10.0.0.1', ready: false, serving: true, terminating: true }], [{ name: 'http', port: 8080 }]));
  await until('slice updated', () => eps.events.length === 2);
  t.same(eps.events, ['add shop/api-abc', 'update shop/api-abc']);
  t.same(eps.informer.get('api-abc', 'shop')?.endpoints?.[0].conditions, { ready: false, serving: true, terminating: true });
  api.remove('EndpointSlice', 'shop', 'api-abc');
  await until('slice deleted', () => eps.events.length === 3);
  t.equal(eps.events[2], 'delete shop/api-abc');

  // The ConfigMap loses its label: the filtered watch says DELETED; gets it back: ADDED.
  const cm = api.get('ConfigMap', 'shop', 'shoal-mesh-web')!;
  delete cm.metadata!.labels!['shoal.dev/app'];
  api.apply(cm);
  await until('leaving the selector', () => cms.events.length === 2);
  t.equal(cms.events[1], 'delete shop/shoal-mesh-web');
  api.apply(meshConfigMap('shop', 'web', 'mesh', { base_services: [] }));
  await until('entering the selector', () => cms.events.length === 3);
  t.equal(cms.events[2], 'add shop/shoal-mesh-web');
  api.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unrelated', namespace: 'shop' }, data: { a: 'b' } });
  api.remove('Service', 'shop', 'api');
  await until('service deleted', () => svc.events.length === 2);
  t.equal(cms.events.length, 3, 'an unlabelled ConfigMap never reaches the filtered watch');
  t.same(svc.errors, []);
});

t.test('410 after compact(): the informer relists, and reports objects deleted meanwhile', async (t) => {
  const api = await fakeApi(t);
  const kc = api.kubeConfig(ADMIN);
  const core = kc.makeApiClient(CoreV1Api);
  api.apply(service('shop', 'api', [80]));
  api.apply(service('shop', 'old', [80]));
  const svc = recordInformer<V1Service>(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
  t.teardown(() => svc.informer.stop());
  await svc.informer.start();
  const lists = () => api.requests({ path: '/api/v1/services', watch: false }).length;
  t.equal(lists(), 1);

  // Writes while the informer is not looking, then history is compacted and the watch ends.
  api.stallWatches();
  api.remove('Service', 'shop', 'old');
  api.apply(service('shop', 'new', [80]));
  api.compact();
  api.endWatches();
  await until('relist', () => lists() === 2);
  await until('catch-up events', () => svc.events.length === 4);
  t.same(svc.events.slice(2).sort(), ['add shop/new', 'delete shop/old'], 'relisting yields the add and the delete it missed');
  t.same(svc.errors, [], 'a 410 is no error for the informer');
  const resumes = api.requests({ path: '/api/v1/services', watch: true });
  t.ok(resumes.length >= 2, 'it tried to resume first');
  t.equal(resumes[1].status, 200, 'the expired resume is HTTP 200 carrying an ERROR event');

  // expireWatches(): open watches get ERROR 410 on their stream, then the informer relists.
  await until('watch back after the relist', () => api.watchCount() === 1, 5000);
  api.expireWatches();
  await until('second relist', () => lists() === 3, 5000);
  t.same(svc.errors, []);
});

t.test('a watch from a compacted RV: 200, one ERROR 410 Status event, end of stream', async (t) => {
  const api = await fakeApi(t);
  api.apply(service('shop', 'api', [80]));
  const old = Number(api.resourceVersion) - 1;
  api.compact();
  const r = await raw(api, 'GET', `/api/v1/services?watch=true&resourceVersion=${old}`, { token: ADMIN });
  t.equal(r.status, 200);
  const lines = r.text.trim().split('\n').map((l) => JSON.parse(l));
  t.equal(lines.length, 1);
  t.match(lines[0], { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: /too old resource version/ } });
  // Without resourceVersion a watch starts with the current state as ADDED events.
  const w = new Watch(api.kubeConfig(ADMIN));
  const seen: string[] = [];
  const ctl = await w.watch('/api/v1/namespaces/shop/services', {}, (type, obj) => seen.push(`${type} ${obj.metadata.name}`), () => {});
  await until('synthetic add', () => seen.length === 1);
  ctl.abort();
  t.same(seen, ['ADDED api']);

  // A bounded history compacts by itself: 8 writes with historyLimit 4 forget the oldest ones.
  const small = await fakeApi(t, { historyLimit: 4 });
  const start = Number(small.resourceVersion);
  for (let i = 0; i < 8; i++) small.apply(service('shop', `s${i}`, [80]));
  const tooOld = await raw(small, 'GET', `/api/v1/services?watch=true&resourceVersion=${start}`, { token: ADMIN });
  t.match(JSON.parse(tooOld.text), { type: 'ERROR', object: { code: 410 } }, 'the first writes fell out of the history');
  const recent = await raw(small, 'GET', `/api/v1/services?watch=true&resourceVersion=${start + 5}&timeoutSeconds=0.2`, { token: ADMIN });
  t.same(recent.text.trim().split('\n').map((l) => JSON.parse(l).object.metadata.name), ['s5', 's6', 's7'], 'the last ones replay');
});

t.test('bookmarks when asked for, timeoutSeconds ends the stream, watches honour selectors', async (t) => {
  const api = await fakeApi(t, { bookmarkIntervalMs: 50 });
  const w = new Watch(api.kubeConfig(ADMIN));
  const events: Array<{ type: string; obj: any }> = [];
  let done: unknown = 'open';
  const started = Date.now();
  await w.watch('/api/v1/namespaces/shop/services', { allowWatchBookmarks: true, timeoutSeconds: 1, resourceVersion: api.resourceVersion, labelSelector: 'tier=back' },
    (type, obj) => events.push({ type, obj }), (err) => { done = err; });
  api.apply(service('shop', 'api', [80], { labels: { tier: 'back' } }));
  api.apply(service('shop', 'web', [80], { labels: { tier: 'front' } }));
  api.apply(service('other', 'api', [80], { labels: { tier: 'back' } }));
  await until('a bookmark after the write', () => events.some((e) => e.type === 'BOOKMARK' && e.obj.metadata.resourceVersion === api.resourceVersion));
  const bookmark = events.find((e) => e.type === 'BOOKMARK')!;
  t.same(Object.keys(bookmark.obj).sort(), ['apiVersion', 'kind', 'metadata']);
  t.equal(bookmark.obj.kind, 'Service');
  t.same(events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.obj.metadata.namespace}/${e.obj.metadata.name}`), ['ADDED shop/api'],
    'only the matching object of the watched namespace');
  await until('timeoutSeconds', () => done !== 'open', 3000);
  t.equal(done, null, 'a server-side timeout is a clean end of stream');
  t.ok(Date.now() - started >= 900, 'not before timeoutSeconds');
  t.equal(api.watchCount(), 0);

  // No allowWatchBookmarks (client-node's informer never asks): no bookmarks.
  const quiet: string[] = [];
  const ctl = await w.watch('/api/v1/services', { resourceVersion: api.resourceVersion }, (type) => quiet.push(type), () => {});
  await new Promise((r) => setTimeout(r, 200));
  ctl.abort();
  t.same(quiet, []);
});

t.test('drops, stalls and injected failures: what the informer does', async (t) => {
  const api = await fakeApi(t);
  const kc = api.kubeConfig(ADMIN);
  const core = kc.makeApiClient(CoreV1Api);
  api.apply(service('shop', 'api', [80]));
  const svc = recordInformer<V1Service>(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
  t.teardown(() => svc.informer.stop());
  await svc.informer.start();

  // A clean end of stream: resumes from its RV, no relist, no error.
  t.equal(api.endWatches(), 1);
  await until('resumed', () => api.watchCount() === 1);
  t.equal(api.requests({ path: '/api/v1/services', watch: false }).length, 1, 'no relist after a clean end');
  t.same(svc.errors, []);

  // A cut connection: 'error' and the informer stops.
  t.equal(api.dropWatches(), 1);
  await until('error', () => svc.errors.length === 1);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(api.watchCount(), 0, 'it does not reconnect by itself');

  // While requests fail (503), a restart fails too, with the status on the error.
  api.failRequests(60_000, 503);
  const failing = await apiError(core.listServiceForAllNamespaces());
  t.equal(failing.code, 503);
  t.match(failing.body, { kind: 'Status', reason: 'ServiceUnavailable', code: 503 });
  await svc.informer.start();
  await until('second error', () => svc.errors.length === 2);
  t.equal((svc.errors[1] as { statusCode?: number }).statusCode, 503, 'start() after a drop resumes the watch (no list) and the watch gets the 503');
  api.healRequests();
  api.remove('Service', 'shop', 'api');
  await svc.informer.start();
  await until('resumed and caught up', () => svc.events.includes('delete shop/api'));
  t.equal(api.requests({ path: '/api/v1/services', watch: false, method: 'GET' }).filter((e) => e.status === 200).length, 1, 'still no relist: the history covered the gap');

  // A stalled watch stays open and silent.
  api.stallWatches();
  api.apply(service('shop', 'late', [80]));
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(svc.events.includes('add shop/late'), 'a stalled watch delivers nothing');
  t.equal(api.watchCount(), 1);
  // 403 from failRequests() reaches client-node as an ApiException.
  api.failRequests(60_000, 403, /configmaps/);
  t.equal((await apiError(core.listConfigMapForAllNamespaces())).code, 403);
  t.equal((await core.listServiceForAllNamespaces()).items.length, 1, 'the match leaves other paths alone');

  // client-node reports its own stop() as an error, after the fact.
  const before = svc.errors.length;
  await svc.informer.stop();
  await until('the AbortError after stop()', () => svc.errors.length > before);
  t.equal((svc.errors.at(-1) as Error).name, 'AbortError', 'stop() is followed by an AbortError on the error callback');
  t.equal(api.watchCount(), 0);
});

t.test('TokenReview: service-account identity, audiences, unknown and expired tokens, RBAC', async (t) => {
  const api = await fakeApi(t);
  api.addToken('sa-web', { serviceAccount: 'web', namespace: 'shop', pod: 'web-7d9f', audiences: ['shoal', 'https://kubernetes.default.svc.cluster.local'] });
  api.addToken('sa-expired', { serviceAccount: 'web', namespace: 'shop', expired: true });
  api.addToken('reviewer-denied', { username: 'bob', can: (a) => a.resource !== 'tokenreviews' });
  const review = (caller: string | undefined, token: string, audiences?: string[]) =>
    raw(api, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', { token: caller, body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });

  const ok = await review(ADMIN, 'sa-web', ['shoal']);
  t.equal(ok.status, 201);
  t.match(ok.json, {
    kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1',
    status: {
      authenticated: true, audiences: ['shoal'],
      user: {
        username: 'system:serviceaccount:shop:web',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:shop', 'system:authenticated'],
        extra: { 'authentication.kubernetes.io/pod-name': ['web-7d9f'] },
      },
    },
  });
  t.same((await review(ADMIN, 'sa-web')).json.status.audiences, ['https://kubernetes.default.svc.cluster.local'], 'no audiences asked: the API server\'s');
  for (const [token, why] of [['unknown', 'unknown token'], ['sa-expired', 'expired token']]) {
    const r = await review(ADMIN, token);
    t.equal(r.status, 201);
    t.notOk(r.json.status.authenticated, why);
    t.same(r.json.status.user, {});
    t.match(r.json.status.error, /invalid bearer token/);
  }
  const wrongAudience = await review(ADMIN, 'sa-web', ['vault']);
  t.notOk(wrongAudience.json.status.authenticated, 'a token for other audiences');
  t.equal((await review(undefined, 'sa-web')).status, 401, 'the caller needs a token');
  t.equal((await review('reviewer-denied', 'sa-web')).status, 403, 'and the right to create tokenreviews');
  t.match((await review('reviewer-denied', 'sa-web')).json, { reason: 'Forbidden', message: /User "bob" cannot create resource "tokenreviews" in API group "authentication.k8s.io"/ });
  // The sidecar token itself can call the API (its audiences include the API server's).
  t.equal((await raw(api, 'GET', '/api/v1/namespaces/shop/services', { token: 'sa-web' })).status, 200);
});

t.test('kubeconfig file and in-cluster files work with client-node loaders', async (t) => {
  const api = await fakeApi(t);
  api.apply(service('shop', 'api', [80]));
  const dir = await mkdtemp(join(tmpdir(), 'fake-kube-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = await api.writeKubeconfigFile(dir, ADMIN);
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  t.equal((await kc.makeApiClient(CoreV1Api).listServiceForAllNamespaces()).items.length, 1, 'loadFromFile');

  api.addToken('sa', { serviceAccount: 'discover', namespace: 'shoal-system' });
  const { pathPrefix, env } = await api.writeInClusterFiles(dir, 'sa', 'shoal-system');
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  Object.assign(process.env, env);
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const inCluster = new KubeConfig();
  inCluster.loadFromCluster(pathPrefix);
  t.equal(inCluster.getContextObject(inCluster.getCurrentContext())?.namespace, 'shoal-system');
  t.equal((await inCluster.makeApiClient(CoreV1Api).listNamespacedService({ namespace: 'shop' })).items.length, 1, 'loadFromCluster');
  t.equal(api.requestLog.at(-1)?.user, 'system:serviceaccount:shoal-system:discover');
});

t.test('scale: 10,000 Services and 10,000 EndpointSlices with 100,000 endpoints, listed in one response each', async (t) => {
  const api = await fakeApi(t);
  const kc = api.kubeConfig(ADMIN);
  const seedStart = Date.now();
  const seeded = seedServices(api);
  const seedMs = Date.now() - seedStart;
  t.equal(seeded.length, 10_000);
  const listStart = Date.now();
  const [services, slices] = await Promise.all([
    kc.makeApiClient(CoreV1Api).listServiceForAllNamespaces(),
    kc.makeApiClient(DiscoveryV1Api).listEndpointSliceForAllNamespaces(),
  ]);
  const listMs = Date.now() - listStart;
  t.equal(services.items.length, 10_000);
  t.equal(slices.items.length, 10_000);
  t.equal(slices.items.reduce((n, s) => n + (s.endpoints?.length ?? 0), 0), 100_000);
  t.equal(new Set(slices.items.flatMap((s) => s.endpoints!.map((e) => e.addresses[0]))).size, 100_000, 'every endpoint IP unique');
  t.comment(`seeded in ${seedMs} ms, both lists through client-node in ${listMs} ms`);
  t.ok(listMs < 15_000, 'lists in well under the 30 s readiness target');
  t.match(api.requests({ path: '/apis/discovery.k8s.io/v1/endpointslices' })[0].headers, { 'accept-encoding': /gzip/ }, 'client-node accepts gzip');
  const zipped = await raw(api, 'GET', '/apis/discovery.k8s.io/v1/endpointslices', { token: ADMIN, headers: { 'accept-encoding': 'gzip' } });
  t.equal(zipped.headers['content-encoding'], 'gzip', 'a big list is gzipped for clients that accept it, as the real server does');
  t.equal(JSON.parse(gunzipSync(zipped.bytes).toString('utf8')).items.length, 10_000);
});

t.test('plain HTTP, sendInitialEvents, legacy watch paths, historical lists and write edge cases', async (t) => {
  const api = await fakeApi(t, { tls: false });
  t.match(api.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const core = api.kubeConfig(ADMIN).makeApiClient(CoreV1Api);
  await core.createNamespacedConfigMap({ namespace: 'shop', body: meshConfigMap('shop', 'web', 'mesh', { base_services: [] }, { annotations: { 'shoal.dev/service-accounts': 'web,web-canary' } }) as V1ConfigMap });
  const rvAfterFirst = api.resourceVersion;
  api.apply(meshConfigMap('shop', 'web', 'mesh', 'not json'));
  api.apply(meshConfigMap('shop', 'cache', 'mesh', {}));
  t.equal(api.get('ConfigMap', 'shop', 'shoal-mesh-web')?.metadata?.annotations, undefined, 'apply() replaces: the annotation is gone');

  const [initial, legacy, plain, one] = await Promise.all([
    raw(api, 'GET', '/api/v1/namespaces/shop/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1', { token: ADMIN }),
    raw(api, 'GET', `/api/v1/watch/namespaces/shop/configmaps?resourceVersion=${rvAfterFirst}&timeoutSeconds=1`, { token: ADMIN }),
    raw(api, 'GET', '/api/v1/configmaps?watch=true&sendInitialEvents=true&timeoutSeconds=1', { token: ADMIN }),
    raw(api, 'GET', `/api/v1/watch/namespaces/shop/configmaps/shoal-mesh-cache?resourceVersion=${rvAfterFirst}&timeoutSeconds=1`, { token: ADMIN }),
  ]);
  const lines = (text: string) => text.trim().split('\n').map((l) => JSON.parse(l));
  t.same(lines(initial.text).slice(0, 3).map((e) => `${e.type} ${e.object.metadata.name ?? ''}`), ['ADDED shoal-mesh-cache', 'ADDED shoal-mesh-web', 'BOOKMARK '],
    'sendInitialEvents: the state, then a bookmark marking its end');
  t.same(lines(initial.text)[2].object.metadata.annotations, { 'k8s.io/initial-events-end': 'true' });
  t.same(lines(legacy.text).map((e) => `${e.type} ${e.object.metadata.name}`), ['MODIFIED shoal-mesh-web', 'ADDED shoal-mesh-cache'], '/watch/ paths replay after the RV');
  t.equal(plain.status, 422, 'sendInitialEvents needs bookmarks and NotOlderThan');
  t.same(lines(one.text).map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED shoal-mesh-cache'], 'a watch on one object');

  // Lists at an exact older RV show that past state; too old is 410, ahead of the server is 504.
  const past = await raw(api, 'GET', `/api/v1/namespaces/shop/configmaps?resourceVersion=${rvAfterFirst}&resourceVersionMatch=Exact`, { token: ADMIN });
  t.same(past.json.items.map((c: any) => [c.metadata.name, c.metadata.annotations]), [['shoal-mesh-web', { 'shoal.dev/service-accounts': 'web,web-canary' }]]);
  t.equal((await raw(api, 'GET', `/api/v1/configmaps?resourceVersion=${Number(api.resourceVersion) + 5}`, { token: ADMIN })).status, 504);
  api.compact();
  t.equal((await raw(api, 'GET', `/api/v1/configmaps?resourceVersion=${rvAfterFirst}&resourceVersionMatch=Exact`, { token: ADMIN })).status, 410);

  // Write edge cases, each with its real status and nothing changed.
  const rv = api.resourceVersion;
  const failedTest = await apiError(core.patchNamespacedConfigMap({ name: 'shoal-mesh-web', namespace: 'shop', body: [{ op: 'test', path: '/data/plugin-config', value: 'other' }, { op: 'remove', path: '/data' }] }));
  t.equal(failedTest.code, 422, 'a failed JSON Patch test op');
  const stalePre = await raw(api, 'DELETE', '/api/v1/namespaces/shop/configmaps/shoal-mesh-web', { token: ADMIN, body: { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { resourceVersion: '1' } } });
  t.equal(stalePre.status, 409, 'a stale delete precondition');
  t.equal((await raw(api, 'POST', '/api/v1/namespaces/shop/configmaps', { token: ADMIN, body: { metadata: { name: 'x', namespace: 'other' } } })).status, 400, 'namespace mismatch');
  t.equal((await raw(api, 'POST', '/api/v1/configmaps', { token: ADMIN, body: { metadata: { name: 'x', namespace: 'shop' } } })).status, 405, 'no create on the all-namespaces path');
  t.equal((await apiError(core.replaceNamespacedConfigMap({ name: 'nope', namespace: 'shop', body: { metadata: { name: 'nope' } } }))).code, 404, 'PUT does not create');
  t.equal((await raw(api, 'POST', '/api/v1/namespaces/shop/configmaps', { token: ADMIN, body: { metadata: { name: 'x' }, data: { n: 1 } } })).status, 400, 'ConfigMap data must be strings');
  t.equal((await raw(api, 'POST', '/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices', { token: ADMIN, body: { metadata: { name: 'x' } } })).status, 422, 'an EndpointSlice needs addressType');
  t.equal((await raw(api, 'GET', '/api/v1/pods', { token: ADMIN })).status, 404, 'unsupported resources are 404');
  t.equal(api.resourceVersion, rv, 'no failed write made a revision');
  t.equal((await raw(api, 'GET', '/healthz')).text, 'ok', 'health needs no token');

  // Deleting a namespace: Terminating, then its contents and itself are gone, each with an event.
  await core.createNamespace({ body: namespace('gone') as V1Namespace });
  api.apply(service('gone', 'api', [80]));
  const nsWatch = raw(api, 'GET', `/api/v1/namespaces?watch=true&resourceVersion=${api.resourceVersion}&timeoutSeconds=1`, { token: ADMIN });
  const svcWatch = raw(api, 'GET', `/api/v1/services?watch=true&resourceVersion=${api.resourceVersion}&timeoutSeconds=1`, { token: ADMIN });
  await until('watches open', () => api.watchCount() === 2);
  await core.deleteNamespace({ name: 'gone' });
  t.equal(api.get('Service', 'gone', 'api'), undefined);
  t.same(lines((await nsWatch).text).map((e) => `${e.type} ${e.object.status?.phase}`), ['MODIFIED Terminating', 'DELETED Terminating']);
  t.same(lines((await svcWatch).text).map((e) => `${e.type} ${e.object.metadata.name}`), ['DELETED api']);

  // latency(): slow watches only, lists stay fast.
  api.latency(300, (e) => e.watch);
  await Promise.all([
    raw(api, 'GET', '/api/v1/configmaps', { token: ADMIN }),
    raw(api, 'GET', '/api/v1/configmaps?watch=true&timeoutSeconds=0.01', { token: ADMIN }),
  ]);
  const [list, held] = [api.requests({ path: '/api/v1/configmaps', watch: false }).at(-1)!, api.requests({ path: '/api/v1/configmaps', watch: true }).at(-1)!];
  t.ok(list.ms < 300, `the list was not held (${list.ms} ms)`);
  t.ok(held.ms >= 300, `the watch was held (${held.ms} ms)`);
  api.latency(0);
});

t.test('standalone mode: a child process with a kubeconfig file and the /fake/ hooks over HTTP', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fake-kube-standalone-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [new URL('./fakeKubeApi.ts', import.meta.url).pathname, '--services', '3', '--endpoints', '2', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const [line] = await once(createInterface(child.stdout), 'line') as [string];
  const info = JSON.parse(line) as { url: string; token: string; kubeconfig: string; caFile: string };
  const kc = new KubeConfig();
  kc.loadFromFile(info.kubeconfig);
  const slices = await kc.makeApiClient(DiscoveryV1Api).listEndpointSliceForAllNamespaces();
  t.equal(slices.items.length, 3);
  t.equal(slices.items[0].endpoints?.length, 2);
  const hook = async (method: string, path: string) => {
    const res = await fetch(`${info.url}${path}`, { method, headers: { authorization: `Bearer ${info.token}` }, dispatcher: new UndiciAgent({ connect: { ca: await readFile(info.caFile, 'utf8') } }) });
    return { status: res.status, json: await res.json() as any };
  };
  const rv = (await hook('GET', '/fake/stats')).json.resourceVersion;
  t.equal((await hook('POST', '/fake/compact')).status, 200);
  t.equal((await hook('GET', '/fake/stats')).json.resourceVersion, String(Number(rv) + 1), 'compaction spends one revision');
  t.equal((await hook('POST', '/fake/fail?ms=5000&status=503&path=endpointslices')).status, 200);
  t.equal((await apiError(kc.makeApiClient(DiscoveryV1Api).listEndpointSliceForAllNamespaces())).code, 503);
  t.equal((await hook('POST', '/fake/heal')).status, 200);
  t.equal((await kc.makeApiClient(DiscoveryV1Api).listEndpointSliceForAllNamespaces()).items.length, 3);
  t.equal((await fetch(`${info.url}/fake/stats`, { dispatcher: new UndiciAgent({ connect: { ca: await readFile(info.caFile, 'utf8') } }) })).status, 401, 'the hooks need a token');
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  t.equal(code, 0, 'exits cleanly on SIGTERM');
});
