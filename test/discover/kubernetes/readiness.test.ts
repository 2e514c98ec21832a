// Readiness and watches against a real control plane (test/lib/kube.ts) failing the real ways:
// not ready before every informer's first list (discover's account may not list ConfigMaps until
// RBAC grants it), not ready once the API server has been gone longer than --stale-after and ready
// again when it is back, close() while the informers wait to watch again (after the API server ended
// every watch cleanly) leaves no connection behind, and through etcd down, a compaction that ends
// every watch and makes the resumes 410, and the API server killed, no long-poll waiter is ever handed
// a snapshot missing an endpoint that existed all along. One control plane, a namespace per test.
import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { kubeCluster, startComponent, stopComponent } from '../../../scripts/kube.ts';
import { kubeForFile, type TestKube } from '../../lib/kube.ts';
import { call, longPoll, snapshot, until } from './discoverClient.ts';
import {
  Api,
  endpointsIn,
  etcdBump,
  etcdCompact,
  etcdDelete,
  latest,
  seedApp,
  serviceAccountToken,
  sleep,
  startDiscoverWith,
  startRealDiscover,
  tokenKubeconfig,
  untilEndpoints,
} from './realKube.ts';

// A control plane start, two etcd outages of 9 s or more and a killed API server: about 3 minutes on a loaded 2-core machine, past tap's 120 s.
t.setTimeout(360_000);
const kube = kubeForFile(t, import.meta.filename);

const readyz = (base: string) =>
  fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) }).then(
    (r) => r.status,
    () => 0,
  );

/** Established TCP connections from this process to PORT on loopback (from /proc: the sockets this process holds). */
function connectionsTo(port: number): number {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '01') continue; // 01: ESTABLISHED
      if (parseInt(f[2].split(':')[1], 16) === port) inodes.add(f[9]);
    }
  }
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m && inodes.has(m[1])) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

/** A watch of PATH from resourceVersion RV with the admin certificate: `ended` says how the API server ended it. */
function watchProbe(k: TestKube, path: string, rv: string): { ended: Promise<string>; close(): void } {
  const server = new URL(k.cluster.server);
  let req: ReturnType<typeof httpsRequest> | undefined;
  const ended = new Promise<string>((resolve) => {
    req = httpsRequest(
      {
        host: server.hostname,
        port: server.port,
        path: `${path}?watch=true&resourceVersion=${rv}`,
        agent: false,
        ca: readFileSync(k.cluster.caFile),
        cert: readFileSync(k.cluster.adminCertFile),
        key: readFileSync(k.cluster.adminKeyFile),
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200 ? 'clean end' : `status ${res.statusCode}`));
        res.on('error', (err) => resolve(`error ${err.message}`));
      },
    );
    req.on('error', (err) => resolve(`error ${err.message}`));
    req.end();
  });
  return { ended, close: () => req?.destroy() };
}

const CACHERS = ['services', 'endpointslices.discovery.k8s.io', 'configmaps'];

/** How often the API server's log says it terminated every watcher of each of CACHERS. */
function terminations(k: TestKube): number[] {
  const log = readFileSync(join(k.cluster.dir, 'kube-apiserver.log'), 'utf8');
  return CACHERS.map((c) => log.split(`Terminating all watchers from cacher ${c}\n`).length - 1);
}

/**
 * etcd stopped for DOWNMS (the API server answers what needs it with errors), then started again and
 * compacted before the API server's etcd watches can resume (it is paused meanwhile, a second or so, as a
 * stalled process would be): on resuming they find their revision compacted, the watch caches start over
 * (relist) and end every client watch cleanly, and watches resumed from before get 410. Confirmed by the
 * API server's log for each of CACHERS; tried once more if not.
 */
async function etcdOutageWithCompaction(k: TestKube, downMs = 5000): Promise<string> {
  const t0 = performance.now();
  for (let attempt = 1; ; attempt++) {
    const before = terminations(k);
    await stopComponent(k.cluster.dir, 'etcd', 0);
    await sleep(downMs);
    const apiserver = kubeCluster(k.cluster.dir)!.pids['kube-apiserver'];
    process.kill(apiserver, 'SIGSTOP');
    try {
      await startComponent(k.cluster.dir, 'etcd');
      // Two writes: a watch resumes after the last revision it saw (progress notifications bring a quiet
      // one to the newest), so compacting to the second leaves every resume behind.
      await etcdBump(k.cluster.etcdUrl);
      await etcdCompact(k.cluster.etcdUrl, await etcdBump(k.cluster.etcdUrl));
    } finally {
      process.kill(apiserver, 'SIGCONT');
    }
    const resumed = performance.now();
    const end = Date.now() + 20_000;
    while (Date.now() < end) {
      if (terminations(k).every((n, j) => n > before[j])) {
        return `etcd down ${downMs} ms; every watch cache started over ${(performance.now() - resumed).toFixed(0)} ms after the compaction (${((performance.now() - t0) / 1000).toFixed(1)} s in all, attempt ${attempt})`;
      }
      await sleep(50);
    }
    if (attempt === 2)
      throw new Error(
        `the API server's watch caches of ${CACHERS.join(', ')} did not start over after etcd was compacted behind them (twice)`,
      );
  }
}

if (kube) {
  t.test(
    "/readyz only after every informer's first list (ConfigMaps refused by RBAC until granted); /healthz at once; snapshots 503 until then",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await api.node();
      const ns = 'rbac';
      await api.namespace(ns);
      await seedApp(api, ns, 21, 1);
      // discover's account may list and watch what it watches (Services, EndpointSlices, Nodes) but ConfigMaps.
      const role = (resources: Array<[string, string]>) => ({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'shoal-test-readiness' },
        rules: resources.map(([group, resource]) => ({ apiGroups: [group], resources: [resource], verbs: ['get', 'list', 'watch'] })),
      });
      const others: Array<[string, string]> = [
        ['', 'services'],
        ['discovery.k8s.io', 'endpointslices'],
        ['', 'nodes'],
      ];
      await api.ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', role(others));
      await api.ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'shoal-test-readiness' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'shoal-test-readiness' },
        subjects: [{ kind: 'ServiceAccount', name: 'lister', namespace: ns }],
      });
      t.teardown(async () => {
        await api.req('DELETE', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/shoal-test-readiness');
        await api.req('DELETE', '/apis/rbac.authorization.k8s.io/v1/clusterroles/shoal-test-readiness');
      });
      const dir = mkdtempSync(join(tmpdir(), 'shoal-readiness-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const kubeconfig = join(dir, 'kubeconfig');
      // No audience: a token for the API server itself.
      writeFileSync(kubeconfig, tokenKubeconfig(k, await serviceAccountToken(api, ns, 'lister', [])));
      const { d, logs } = await startDiscoverWith(t, kubeconfig, { wait: false });
      const refused = () =>
        logs.filter((l) => l.msg === 'watch failed; restarting with backoff' && l.informer === 'configmaps' && l.status === 403).length;
      await until('the ConfigMap list refused', () => refused() >= 1, 20_000);
      t.equal((await call(d.url, 'GET', '/healthz')).status, 200, 'alive while listing');
      // The refusal can come before the other lists are done: wait for them (they are allowed), then
      // discover must still be waiting on ConfigMaps alone.
      await until(
        'the allowed informers listed',
        async () => !/services|endpointslices/.test(String((await call(d.url, 'GET', '/readyz')).json?.message ?? '')),
        20_000,
      ).catch(() => undefined);
      const r = await call(d.url, 'GET', '/readyz');
      t.equal(r.status, 503, 'not ready');
      t.match(r.json.message, /configmaps/, 'names the informer it waits for');
      t.notMatch(r.json.message, /services|endpointslices/, 'and only that one');
      const s = await snapshot(d, ns, 'web');
      t.equal(s.status, 503, 'a snapshot request gets 503 before the first list');
      t.match(s.json.message, /not ready/);

      await api.ok('PUT', '/apis/rbac.authorization.k8s.io/v1/clusterroles/shoal-test-readiness', role([...others, ['', 'configmaps']]));
      const granted = performance.now();
      await d.ready;
      t.comment(
        `ready ${(performance.now() - granted).toFixed(0)} ms after RBAC granted ConfigMaps (discover retries with backoff, at most 8 s)`,
      );
      t.equal(await readyz(d.url), 200, 'ready after the first full list');
      await untilEndpoints(d, ns, `api.${ns}:8080`, ['10.244.21.1:8080']);
      t.ok(refused() >= 1, `the ConfigMap list was refused and retried (${refused()} refusals)`);
      t.same(
        logs.filter((l) => l.msg === 'watch failed; restarting with backoff' && l.informer !== 'configmaps'),
        [],
        'the other informers never failed',
      );
    },
  );

  t.test(
    '/readyz fails once the API server has been gone longer than --stale-after, and returns when it is back; snapshots keep serving',
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await api.node();
      const ns = 'stale';
      await api.namespace(ns);
      const want = await seedApp(api, ns, 22, 3);
      const { d } = await startRealDiscover(t, k, 1000);
      await untilEndpoints(d, ns, `api.${ns}:8080`, want);
      t.equal(await readyz(d.url), 200);
      await stopComponent(k.cluster.dir, 'kube-apiserver', 0);
      let restarted = false;
      t.teardown(() => (restarted ? undefined : startComponent(k.cluster.dir, 'kube-apiserver')));
      await until('/readyz to fail', async () => (await readyz(d.url)) === 503, 15_000);
      const body = await call(d.url, 'GET', '/readyz');
      t.match(body.json.message, /down for more than 1000 ms/, 'says which watch and the bound');
      const s = await snapshot(d, ns, 'web');
      t.equal(s.status, 200, 'the last good snapshot still serves while not ready');
      t.same(endpointsIn(s.json as Snapshot, `api.${ns}:8080`), want, 'with its 3 endpoints');
      await startComponent(k.cluster.dir, 'kube-apiserver');
      restarted = true;
      const back = performance.now();
      await until('/readyz to return', async () => (await readyz(d.url)) === 200, 30_000);
      t.comment(`ready again ${(performance.now() - back).toFixed(0)} ms after the API server was`);
    },
  );

  t.test(
    'close() while the informers wait to watch again (every watch ended cleanly by the API server) leaves no connection behind',
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'close';
      await api.namespace(ns);
      await api.meshConfig(ns, 'web', ['api']);
      const port = Number(new URL(k.cluster.server).port);
      // The earlier tests' discovers are closed: their idle keep-alive connections go within undici's 4 s.
      await until('no connection left by the earlier tests', () => connectionsTo(port) === 0, 10_000).catch(() => undefined);
      t.equal(connectionsTo(port), 0, 'no connection to the API server before this discover starts');
      const { d, logs } = await startRealDiscover(t, k);
      t.ok(connectionsTo(port) >= 3, `discover holds its watches open (${connectionsTo(port)} connections to the API server)`);
      // Watches of our own on the same resources end when the watch caches start over, as discover's do.
      const rv = (await api.ok('GET', '/api/v1/namespaces?limit=1')).metadata.resourceVersion as string;
      const probes = ['/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices', '/api/v1/configmaps'].map((p) =>
        watchProbe(k, p, rv),
      );
      t.teardown(() => probes.forEach((p) => p.close()));
      await sleep(500);
      t.comment(await etcdOutageWithCompaction(k));
      const how = await Promise.race([Promise.all(probes.map((p) => p.ended)), sleep(10_000).then(() => null)]);
      t.same(how, ['clean end', 'clean end', 'clean end'], 'the API server ended every watch of those resources cleanly');
      // The informers watch again at once, get 410 (or 429 while the cache fills) and wait: client-node 1 s
      // after a clean end with no event, discover's backoff after an error. close() comes within that wait.
      const mark = logs.length;
      await sleep(300);
      t.comment(
        `discover's log between the watches' end and close(): ${JSON.stringify(logs.slice(mark).map((l) => `${l.msg} ${l.informer ?? ''} ${l.status ?? ''}`))}`,
      );
      await d.close();
      probes.forEach((p) => p.close());
      // Idle keep-alive connections close after undici's 4 s; a watch opened after close() would stay.
      const closed = performance.now();
      await until('no connection from discover left', () => connectionsTo(port) === 0, 10_000).catch(() => undefined);
      t.comment(`${connectionsTo(port)} connections ${(performance.now() - closed).toFixed(0)} ms after close()`);
      await sleep(1500);
      // close() can land while client-node is opening a watch again on its own (after a clean end it
      // watches again at once, and the re-watch waits on the watch caches starting over): discover's
      // Watch aborts a watch that opens after close(). Without that, 2 connections stayed here.
      t.equal(connectionsTo(port), 0, 'no connection to the API server after close(): no watch was opened during or after it');
    },
  );

  t.test(
    "etcd down, a compaction that ends every watch (410 on resume), the API server killed: no waiter ever loses an endpoint that exists; the end state is a fresh discover's",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await api.node();
      const ns = 'outage';
      await api.namespace(ns);
      const [ep1, ep2, ep3] = await seedApp(api, ns, 23, 3, ['api', 'cache', 'gone']);
      await api.service(ns, 'cache');
      await api.pod(ns, 'cache-1', 'cache');
      await api.setPodStatus(ns, 'cache-1', '10.244.24.1', true);
      await api.service(ns, 'gone');
      const { d, logs } = await startRealDiscover(t, k);
      const api8080 = `api.${ns}:8080`;
      const cache8080 = `cache.${ns}:8080`;
      await untilEndpoints(d, ns, api8080, [ep1, ep2, ep3], 20_000);
      await untilEndpoints(d, ns, cache8080, ['10.244.24.1:8080']);

      // Endpoints that exist from start to end: no snapshot handed to a waiter may lack them.
      const stable: Record<string, string[]> = { [api8080]: [ep1, ep2], [cache8080]: ['10.244.24.1:8080'] };
      const received: Snapshot[] = [];
      const violations: string[] = [];
      const notReady: number[] = [];
      let polling = true;
      const poller = (async () => {
        let version = (await latest(d, ns)).version;
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by another task while this one awaited (TypeScript keeps the narrowing across await)
        while (polling) {
          const a = await longPoll(d, ns, 'web', version, 1);
          if (a.status === 304) continue;
          if (a.status !== 200) {
            violations.push(`long-poll answered ${a.status}: ${JSON.stringify(a.json)}`);
            await sleep(50);
            continue;
          }
          const s = a.json as Snapshot;
          received.push(s);
          for (const [cluster, eps] of Object.entries(stable)) {
            const have = endpointsIn(s, cluster) ?? [];
            for (const e of eps)
              if (!have.includes(e)) violations.push(`version ${s.version}: ${cluster} lacks ${e} (has ${have.join(' ')})`);
          }
          version = s.version;
        }
      })();
      const readyWatch = (async () => {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by another task while this one awaited (TypeScript keeps the narrowing across await)
        while (polling) {
          const code = await readyz(d.url);
          if (code !== 200) notReady.push(code);
          await sleep(100);
        }
      })();

      // 1. etcd down, then compacted at once: the watch caches start over and end every watch; the resumes get 410 and relist.
      let mark = logs.length;
      t.comment(await etcdOutageWithCompaction(k));
      t.same(endpointsIn(await latest(d, ns), api8080), [ep1, ep2, ep3], 'the last good state serves through the outage');
      await api.pod(ns, 'api-4', 'api');
      await api.setPodStatus(ns, 'api-4', '10.244.23.4', true);
      await api.setPodStatus(ns, 'api-3', '10.244.23.3', false);
      await untilEndpoints(d, ns, api8080, [ep1, ep2, '10.244.23.4:8080'], 60_000);
      t.pass('a change after the compaction reaches the snapshot');
      t.comment(
        `discover's log after the etcd outage: ${JSON.stringify(logs.slice(mark).map((l) => `${l.msg} ${l.informer ?? ''} ${l.status ?? ''}`))}`,
      );

      // 2. The API server killed; meanwhile Service gone is deleted in etcd itself and history compacted past it:
      // only a relist can tell discover. Once it is back, cache gets a second Pod.
      mark = logs.length;
      await stopComponent(k.cluster.dir, 'kube-apiserver', 0);
      t.equal(
        await etcdDelete(k.cluster.etcdUrl, `/registry/services/specs/${ns}/gone`),
        1,
        'Service gone deleted in etcd while the API server is down',
      );
      await etcdCompact(k.cluster.etcdUrl, await etcdBump(k.cluster.etcdUrl));
      await sleep(1000);
      t.same(endpointsIn(await latest(d, ns), cache8080), ['10.244.24.1:8080'], 'the last good state serves while the API server is gone');
      await startComponent(k.cluster.dir, 'kube-apiserver');
      await api.pod(ns, 'cache-2', 'cache');
      await api.setPodStatus(ns, 'cache-2', '10.244.24.2', true);
      await untilEndpoints(d, ns, cache8080, ['10.244.24.1:8080', '10.244.24.2:8080'], 60_000);
      await until(
        'gone missing from the snapshot',
        async () => new RegExp(`service ${ns}/gone not found`).test((await latest(d, ns)).status.errors.join('\n')),
        30_000,
      );
      t.pass(
        "the Service deleted behind the API server's back is gone (a relist found it missing), and the change after the restart arrived",
      );
      t.ok(
        logs.slice(mark).some((l) => l.msg === 'watch failed; restarting with backoff'),
        'discover saw its watches fail and kept retrying',
      );

      // The end: a discover started fresh on the same cluster builds the same snapshot.
      const fresh = await startRealDiscover(t, k);
      const mine = await latest(d, ns);
      const theirs = await latest(fresh.d, ns);
      t.equal(mine.version, theirs.version, 'the same version as a discover started fresh');
      t.same(mine, theirs, 'the same snapshot');
      polling = false;
      await Promise.all([poller, readyWatch]);
      t.same(violations, [], 'no waiter was handed a snapshot that lost an endpoint that still existed');
      t.ok(received.length >= 3, `the waiters saw every step (${received.length} versions)`);
      t.same(notReady, [], '/readyz stayed ready throughout (every outage shorter than --stale-after)');
    },
  );
}
