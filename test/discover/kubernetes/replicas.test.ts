// Two discover replicas against the same real API server (test/lib/kube.ts): for the same state they
// serve byte-identical snapshots with the same version and ETag, whatever order each saw the objects
// in (one watched them arrive, the other listed them at start). So a sidecar whose long-poll moves
// to the other replica is not woken by a change that is not one, and is woken by a real one with the
// bytes the first replica serves.
import t from 'tap';
import type { Discover } from '../../../discover/main.ts';
import { kubeForFile } from '../../lib/kube.ts';
import { OPERATOR_TOKEN, until, waiters } from './discoverClient.ts';
import { Api, endpointsIn, latest, startRealDiscover } from './realKube.ts';

const kube = kubeForFile(t, import.meta.filename);

interface Raw {
  status: number;
  body: string;
  etag: string | null;
}

/** GET PATH from discover with the operator token: the body's exact text and the ETag. */
async function raw(d: Discover, path: string): Promise<Raw> {
  const res = await fetch(`${d.url}${path}`, {
    headers: { authorization: `Bearer ${OPERATOR_TOKEN}` },
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.text(), etag: res.headers.get('etag') };
}

const snap = (d: Discover, ns: string, app: string) => raw(d, `/v2/snapshot/${ns}/${app}`);
const poll = (d: Discover, ns: string, app: string, version: string, wait: string) =>
  raw(d, `/v2/snapshot/${ns}/${app}?version=${encodeURIComponent(version)}&wait=${wait}`);

/** The top-level fields (and, for clusters, the cluster names) where two snapshot bodies differ. */
function differences(a: string, b: string): string[] {
  const x = JSON.parse(a);
  const y = JSON.parse(b);
  const out: string[] = [];
  for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
    if (JSON.stringify(x[k]) === JSON.stringify(y[k])) continue;
    out.push(`${k}: ${JSON.stringify(x[k]).slice(0, 300)} vs ${JSON.stringify(y[k]).slice(0, 300)}`);
  }
  if (out.length === 0 && a !== b) out.push('same JSON, different bytes (key order or spacing)');
  return out;
}

if (kube) {
  t.test('two replicas serve the same bytes and versions; a long-poll moved to the other is not woken spuriously', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'replicas';
    await api.namespace(ns);

    // Replica A runs before anything exists and sees every object arrive by its watches.
    const a = await startRealDiscover(t, k);

    // web -> api, db; worker -> db, cache; front -> api. Pods created in an order unlike their names.
    const apps: Record<string, string[]> = { web: ['api', 'db'], worker: ['db', 'cache'], front: ['api'] };
    for (const s of ['db', 'api', 'cache']) await api.service(ns, s);
    for (const [app, deps] of Object.entries(apps)) await api.meshConfig(ns, app, deps);
    const pods: Array<[string, string, string]> = [
      ['db-2', 'db', '10.244.7.22'],
      ['api-1', 'api', '10.244.7.11'],
      ['cache-1', 'cache', '10.244.7.31'],
      ['db-1', 'db', '10.244.7.21'],
      ['api-2', 'api', '10.244.7.12'],
    ];
    for (const [name, app, ip] of pods) {
      await api.pod(ns, name, app);
      await api.setPodStatus(ns, name, ip, true);
    }
    const want: Record<string, string[]> = {
      api: ['10.244.7.11:8080', '10.244.7.12:8080'],
      db: ['10.244.7.21:8080', '10.244.7.22:8080'],
      cache: ['10.244.7.31:8080'],
    };

    // Replica B starts on the finished state and builds it from its first lists.
    const b = await startRealDiscover(t, k);

    const settled = async (d: Discover, w: Record<string, string[]>) => {
      for (const [app, deps] of Object.entries(apps)) {
        await until(
          `${app} settled`,
          async () => {
            const s = await latest(d, ns, app);
            return (
              s.status.errors.length === 0 &&
              deps.every((dep) => JSON.stringify(endpointsIn(s, `${dep}.${ns}:8080`)) === JSON.stringify(w[dep]))
            );
          },
          30_000,
        );
      }
    };
    const same = async (when: string) => {
      for (const app of Object.keys(apps)) {
        const x = await snap(a.d, ns, app);
        const y = await snap(b.d, ns, app);
        t.equal(x.status, 200, `${when}: A serves ${app}`);
        t.equal(y.status, 200, `${when}: B serves ${app}`);
        const diff = differences(x.body, y.body);
        t.same(diff, [], `${when}: ${app} is byte-identical on A and B`);
        t.equal(x.body, y.body, `${when}: ${app} bodies equal (${x.body.length} bytes)`);
        t.equal(JSON.parse(x.body).version, JSON.parse(y.body).version, `${when}: ${app} has the same version`);
        t.ok(x.etag, `${when}: ${app} has an ETag`);
        t.equal(x.etag, y.etag, `${when}: ${app} has the same ETag`);
      }
    };

    let t0 = performance.now();
    await settled(a.d, want);
    await settled(b.d, want);
    t.comment(`both replicas settled (from B ready) in ${(performance.now() - t0).toFixed(0)} ms`);
    await same('first state');

    // A change: a third db Pod. Both reflect it, and agree again.
    t0 = performance.now();
    await api.pod(ns, 'db-3', 'db');
    await api.setPodStatus(ns, 'db-3', '10.244.7.23', true);
    want.db = [...want.db, '10.244.7.23:8080'];
    await settled(a.d, want);
    await settled(b.d, want);
    t.comment(`db-3 reached both replicas in ${(performance.now() - t0).toFixed(0)} ms`);
    await same('after db-3');

    // A second cache Pod, not Ready yet (no IP: no endpoint, no change to any snapshot).
    await api.pod(ns, 'cache-2', 'cache');

    // A sidecar of worker whose long-poll moves from A to B with A's version: no change, so 304.
    const fromA = await snap(a.d, ns, 'worker');
    const va = JSON.parse(fromA.body).version as string;
    t0 = performance.now();
    const quiet = await poll(b.d, ns, 'worker', va, '2s');
    t.equal(quiet.status, 304, `B answers A's version with 304 after the wait (${(performance.now() - t0).toFixed(0)} ms)`);
    t.equal(quiet.body, '', 'and no body');

    // The same long-poll on B, then a real change (the second cache Pod turns Ready): 200 with the bytes A serves.
    const woken = poll(b.d, ns, 'worker', va, '20s');
    await waiters(b.d, ns, 'worker');
    t0 = performance.now();
    await api.setPodStatus(ns, 'cache-2', '10.244.7.32', true);
    const got = await woken;
    t.equal(got.status, 200, `B wakes the long-poll on the real change (${(performance.now() - t0).toFixed(0)} ms after the status write)`);
    const s = JSON.parse(got.body);
    t.same(endpointsIn(s, `cache.${ns}:8080`), ['10.244.7.31:8080', '10.244.7.32:8080'], 'with the new cache endpoint');
    t.not(s.version, va, 'and a new version');
    await until('A has the version B answered', async () => (await latest(a.d, ns, 'worker')).version === s.version, 10_000);
    const onA = await snap(a.d, ns, 'worker');
    t.same(differences(onA.body, got.body), [], 'A serves the same snapshot');
    t.equal(onA.body, got.body, 'byte for byte');
    t.equal(onA.etag, got.etag, 'with the same ETag');
  });
}
