// discover's watches against a real kube-apiserver that fails the real ways (test/lib/kube.ts): the
// API server killed and started again (every watch drops), etcd gone for 10 s (the API server answers
// 5xx), and etcd's history compacted past the watches' resourceVersion before they resume (410
// Expired). After each, a change made right after the fault must reach the snapshot by itself, and at
// the end discover serves what a discover started fresh on the same cluster serves.
import t from 'tap';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { startComponent, stopComponent } from '../../../scripts/kube.ts';
import { kubeForFile, type TestKube } from '../../lib/kube.ts';
import { longPoll, until } from './discoverClient.ts';
import {
  Api,
  endpointsIn,
  etcdBump,
  etcdCompact,
  etcdDelete,
  latest,
  seedApp,
  sleep,
  startRealDiscover,
  untilEndpoints,
  watchFailures,
  whenSlices,
} from './realKube.ts';

const kube = kubeForFile(t, import.meta.filename);

/** The first line of a watch of NS's Pods from resourceVersion RV: the HTTP status and the first event, if any. */
function firstWatchEvent(k: TestKube, ns: string, rv: string): Promise<{ status: number; event: any }> {
  const server = new URL(k.cluster.server);
  return new Promise((resolve, reject) => {
    const r = request(
      {
        host: server.hostname,
        port: server.port,
        path: `/api/v1/namespaces/${ns}/pods?watch=true&resourceVersion=${rv}`,
        agent: false,
        timeout: 10_000,
        ca: readFileSync(k.cluster.caFile),
        cert: readFileSync(k.cluster.adminCertFile),
        key: readFileSync(k.cluster.adminKeyFile),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        const done = () => {
          res.destroy();
          let event: unknown = text;
          try {
            event = JSON.parse(text.split('\n')[0]);
          } catch {
            /* partial */
          }
          resolve({ status: res.statusCode ?? 0, event });
        };
        res.on('data', (d) => {
          text += d;
          if (text.includes('\n')) done();
        });
        res.on('end', done);
      },
    );
    r.on('timeout', () => r.destroy(new Error('watch: no event in 10 s')));
    r.on('error', reject);
    r.end();
  });
}

if (kube) {
  t.test('API server restarted, etcd down for 10 s, 410 Expired: the watches heal by themselves and end in the real state', async (t) => {
    const k = await kube.up();
    const dir = k.cluster.dir;
    const api = new Api(k);
    await api.node();
    const ns = 'faults';
    await api.namespace(ns);
    const [ep1, ep2, ep3] = await seedApp(api, ns, 3, 3, ['api', 'cache']);
    const ip = (n: number) => `10.244.3.${n}`;
    // A second dependency, deleted behind the API server's back during the 410 fault.
    await api.service(ns, 'cache');
    await api.pod(ns, 'cache-1', 'cache');
    await api.setPodStatus(ns, 'cache-1', '10.244.4.1', true);
    const { d, logs } = await startRealDiscover(t, k);
    const cluster = `api.${ns}:8080`;
    await untilEndpoints(d, ns, cluster, [ep1, ep2, ep3], 20_000);
    await untilEndpoints(d, ns, `cache.${ns}:8080`, ['10.244.4.1:8080']);
    const heal: string[] = [];
    /** When discover's last watch resumed after log line FROM, against the wall-clock time AT. */
    const resumed = (from: number, at: number) => {
      const times = logs
        .slice(from)
        .filter((l) => l.msg === 'watch resumed')
        .map((l) => l.time as number);
      if (times.length === 0) return 'no watch of discover had to resume';
      const ms = Math.max(...times) - at;
      // The API server takes watches before its /readyz says ready (what startComponent waits for).
      return `discover's watches had all resumed ${Math.abs(ms)} ms ${ms < 0 ? 'before' : 'after'} it was ready`;
    };
    // Throughout: /readyz stays 200 (every outage is shorter than --stale-after) and snapshots keep serving.
    const notReady: number[] = [];
    const pollAnswers: number[] = [];
    let watching = true;
    const readyWatch = (async () => {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by another task while this one awaited (TypeScript keeps the narrowing across await)
      while (watching) {
        const code = await fetch(`${d.url}/readyz`).then(
          (r) => r.status,
          () => 0,
        );
        if (code !== 200) notReady.push(code);
        await sleep(100);
      }
    })();
    const poller = (async () => {
      let version = (await latest(d, ns)).version;
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by another task while this one awaited (TypeScript keeps the narrowing across await)
      while (watching) {
        const a = await longPoll(d, ns, 'web', version, 1);
        pollAnswers.push(a.status);
        if (a.status === 200) version = a.json.version;
        else if (a.status !== 304) await sleep(50);
      }
    })();

    // 1. The API server is killed: every watch drops. It comes back on the same port; api-1 turns not Ready at once.
    let mark = logs.length;
    await stopComponent(dir, 'kube-apiserver', 0);
    await sleep(1000);
    t.same(endpointsIn(await latest(d, ns), cluster), [ep1, ep2, ep3], 'the last state serves while the API server is gone');
    const down1 = performance.now();
    await startComponent(dir, 'kube-apiserver');
    const back1 = performance.now();
    const wall1 = Date.now();
    await api.setPodStatus(ns, 'api-1', ip(1), false);
    const written1 = performance.now();
    const [slice1, snap1] = await Promise.all([
      whenSlices(api, ns, 'api', [ep2, ep3]),
      untilEndpoints(d, ns, cluster, [ep2, ep3]).then(() => performance.now()),
    ]);
    heal.push(
      `API server killed, started again after ${((back1 - down1) / 1000 + 1).toFixed(1)} s: the change written ${(written1 - back1).toFixed(0)} ms after it was ready ` +
        `reached the snapshot ${(snap1 - written1).toFixed(0)} ms after the write (the controller's EndpointSlice, polled every 10 ms, after ${(slice1 - written1).toFixed(0)} ms)`,
    );
    heal[heal.length - 1] += `; ${resumed(mark, wall1)}`;
    t.comment(`${heal.at(-1)}; discover's watch failures: ${JSON.stringify(watchFailures(logs, mark))}`);
    t.ok(Object.keys(watchFailures(logs, mark)).length > 0, 'discover saw its watches fail');

    // 2. etcd stopped for 10 s: the API server fails what needs etcd (5xx, hang-ups). After it comes back, api-1
    // is Ready again and api-2 not.
    mark = logs.length;
    const etcdDown = performance.now();
    await stopComponent(dir, 'etcd', 0);
    // A read of one object goes to etcd (a quorum read; its timeout parameter bounds the wait for etcd).
    // Without etcd the real API server answers such reads 504, or hangs up, or does not answer in time.
    const probes: string[] = [];
    const probing = (async () => {
      while (performance.now() - etcdDown < 9_000) {
        // Every probe ends before etcd is started again.
        const budget = Math.min(4000, 9_900 - (performance.now() - etcdDown));
        probes.push(
          await api.req('GET', `/api/v1/namespaces/${ns}/pods/api-1?timeout=2s`, undefined, undefined, budget).then(
            (a) => `${a.status}${typeof a.json === 'object' ? ` ${a.json?.reason ?? ''}` : ''}`,
            (err: Error) => err.message.replace(/^GET \S+: /, ''),
          ),
        );
        await sleep(500);
      }
    })();
    await sleep(10_000 - (performance.now() - etcdDown));
    t.same(endpointsIn(await latest(d, ns), cluster), [ep2, ep3], 'the last state serves while etcd is gone');
    await startComponent(dir, 'etcd');
    const back2 = performance.now();
    const wall2 = Date.now();
    await probing;
    t.ok(
      probes.length > 0 && probes.every((p) => !p.startsWith('2')),
      `no read of an object succeeded without etcd (${[...new Set(probes)].join('; ')})`,
    );
    await api.setPodStatus(ns, 'api-1', ip(1), true);
    await api.setPodStatus(ns, 'api-2', ip(2), false);
    const written2 = performance.now();
    const [slice2, snap2] = await Promise.all([
      whenSlices(api, ns, 'api', [ep1, ep3]),
      untilEndpoints(d, ns, cluster, [ep1, ep3], 60_000).then(() => performance.now()),
    ]);
    heal.push(
      `etcd down ${((back2 - etcdDown) / 1000).toFixed(1)} s: writes accepted ${(written2 - back2).toFixed(0)} ms after etcd was back; ` +
        `the change reached the snapshot ${(snap2 - written2).toFixed(0)} ms after the writes (the controller's EndpointSlice, polled every 10 ms, after ${(slice2 - written2).toFixed(0)} ms)`,
    );
    heal[heal.length - 1] += `; ${resumed(mark, wall2)}`;
    t.comment(`${heal.at(-1)}; discover's watch failures: ${JSON.stringify(watchFailures(logs, mark))}`);

    // 3. 410 Expired: with the API server down, the Service cache is deleted in etcd itself, etcd's revision
    // moves on (a key outside /registry) and its history is compacted to there, so every watch resumes
    // before the compacted revision: only a relist can tell discover that cache is gone.
    mark = logs.length;
    const oldRv = (await api.ok('GET', `/api/v1/namespaces/${ns}/pods`)).metadata.resourceVersion as string;
    await stopComponent(dir, 'kube-apiserver', 0);
    t.equal(
      await etcdDelete(k.cluster.etcdUrl, `/registry/services/specs/${ns}/cache`),
      1,
      'Service cache deleted in etcd while the API server is down',
    );
    const compactedTo = await etcdBump(k.cluster.etcdUrl);
    await etcdCompact(k.cluster.etcdUrl, compactedTo);
    await startComponent(dir, 'kube-apiserver');
    const back3 = performance.now();
    const wall3 = Date.now();
    // The change: api-4 joins, api-3 goes.
    await api.okEventually('POST', `/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'api-4', namespace: ns, labels: { app: 'api' } },
      spec: {
        nodeName: 'node-a',
        automountServiceAccountToken: false,
        containers: [{ name: 'app', image: 'registry.invalid/app:1', ports: [{ name: 'http', containerPort: 8080 }] }],
      },
    });
    await api.setPodStatus(ns, 'api-4', ip(4), true);
    await api.deletePodNow(ns, 'api-3');
    const written3 = performance.now();
    const ep4 = `${ip(4)}:8080`;
    const [slice3, snap3] = await Promise.all([
      whenSlices(api, ns, 'api', [ep1, ep4]),
      untilEndpoints(d, ns, cluster, [ep1, ep4], 60_000).then(() => performance.now()),
    ]);
    await until(
      'cache gone from the snapshot',
      async () => /service faults\/cache not found/.test((await latest(d, ns)).status.errors.join('\n')),
      30_000,
    );
    t.pass('the Service deleted during the fault is gone from the snapshot (a relist found it missing)');
    heal.push(
      `410 (etcd compacted to revision ${compactedTo}, past resourceVersion ${oldRv}, and the API server started again): the changes written ${(written3 - back3).toFixed(0)} ms after it was ready ` +
        `reached the snapshot ${(snap3 - written3).toFixed(0)} ms after the last write (the controller's EndpointSlice, polled every 10 ms, after ${(slice3 - written3).toFixed(0)} ms)`,
    );
    heal[heal.length - 1] += `; ${resumed(mark, wall3)}`;
    t.comment(`${heal.at(-1)}; discover's watch failures: ${JSON.stringify(watchFailures(logs, mark))}`);
    const w = await firstWatchEvent(k, ns, oldRv);
    const expired = w.status === 410 || (w.event?.type === 'ERROR' && w.event?.object?.code === 410);
    t.ok(expired, `a watch from the old resourceVersion is answered 410 Expired (${w.status} ${JSON.stringify(w.event).slice(0, 200)})`);

    // The end: ready, and the same snapshot as a discover started fresh on this cluster.
    await until('/readyz 200', async () => (await fetch(`${d.url}/readyz`)).status === 200, 30_000);
    const fresh = await startRealDiscover(t, k);
    const mine = await latest(d, ns);
    const theirs = await latest(fresh.d, ns);
    t.same(endpointsIn(theirs, cluster), [ep1, ep4], 'a fresh discover sees the same endpoints');
    t.equal(mine.version, theirs.version, 'the same version as a discover started fresh');
    t.same(mine, theirs, 'the same snapshot');
    watching = false;
    await Promise.all([readyWatch, poller]);
    t.same(notReady, [], '/readyz stayed 200 through every fault');
    t.same(
      pollAnswers.filter((x) => x !== 200 && x !== 304),
      [],
      `every long-poll was answered 200 or 304 (${pollAnswers.filter((x) => x === 200).length} changes seen)`,
    );
    for (const line of heal) t.comment(line);
  });
}
