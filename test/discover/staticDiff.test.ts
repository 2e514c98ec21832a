// A static edit rebuilds only the apps it can change: unchanged entries parse to the same objects,
// and affectedApps names the apps added, removed, edited or depending on a changed service.
// Checked against a full rebuild over many random edits.
import t from 'tap';
import { Registry } from 'prom-client';
import { affectedApps, parseStaticTopologyWith, type ParseMemo } from '../../discover/topology/staticFile.ts';
import { SnapshotStore } from '../../discover/snapshot/store.ts';
import { createDiscoverMetrics } from '../../discover/metrics.ts';
import { createLogger } from '../../shared/log.ts';
import type { Topology } from '../../discover/topology/model.ts';

const BASE = `
services:
  - { name: api, ports: [{ port: 8080, protocol: http }], endpoints: [10.0.0.1:8080, 10.0.0.2:8080] }
  - { name: db, namespace: data, ports: [5432], endpoints: [10.3.0.1] }
  - { name: lonely, ports: [9000], endpoints: [10.9.0.1] }
apps:
  - { name: web, config: { base_services: [{ depend_service_alias: api, port: 8080 }, { depend_service_alias: db.data, port: 5432 }] } }
  - { name: worker, config: { base_services: [{ depend_service_alias: db.data, port: 5432 }] } }
  - { name: api, config: { base_ports: [{ port: 8080 }] } }
`;

function parse(text: string, memo?: ParseMemo) {
  return parseStaticTopologyWith(text, memo);
}

t.test('unchanged entries come back as the same objects; an identical file affects nothing', async (t) => {
  const a = parse(BASE);
  const b = parse(BASE, a.memo);
  t.equal(b.topology.services.get('default/api'), a.topology.services.get('default/api'));
  t.equal(b.topology.apps.get('default/web'), a.topology.apps.get('default/web'));
  t.same([...affectedApps(a.topology, b.topology)!], []);
  // Without the memo every entry is new: every app counts as changed.
  t.same([...affectedApps(a.topology, parse(BASE).topology)!].sort(), ['default/api', 'default/web', 'default/worker']);
});

t.test('which apps an edit affects', async (t) => {
  const a = parse(BASE);
  const after = (text: string) => [...(affectedApps(a.topology, parse(text, a.memo).topology) ?? ['ALL'])].sort();
  t.same(after(BASE.replace('10.0.0.2:8080]', '10.0.0.3:8080]')), ['default/web'], 'an endpoint of api: its dependents');
  t.same(after(BASE.replace('10.3.0.1]', '10.3.0.2]')), ['default/web', 'default/worker'], 'db: both dependents');
  t.same(after(BASE.replace('10.9.0.1]', '10.9.0.2]')), [], 'a service nobody depends on: nobody');
  t.same(
    after(BASE.replace('port: 5432 }] } }\n  - { name: api', 'port: 5432, options: { MaxRequests: 7 } }] } }\n  - { name: api')),
    ['default/worker'],
    "one app's options: that app",
  );
  t.same(after(BASE.replace(/ {2}- \{ name: db,.*\n/, '')), ['default/web', 'default/worker'], 'a service removed: its dependents');
  t.same(after(BASE.replace(/ {2}- \{ name: worker,.*\n/, '')), ['default/worker'], 'an app removed: that app');
  t.same(
    after(`${BASE}  - { name: batch, config: { base_services: [{ depend_service_alias: api, port: 8080 }] } }\n`),
    ['default/batch'],
    'an app added',
  );
  t.same(
    after(BASE.replace('base_ports: [{ port: 8080 }]', 'base_ports: [{ port: 8081 }]')),
    ['default/api', 'default/web'],
    "the app named like a service: it and the service's dependents",
  );
  t.same(after(`clusterDomain: corp.local\n${BASE}`), ['ALL'], 'the cluster domain: every app');
  t.equal(affectedApps(null, a.topology), undefined, 'the first topology: every app');
});

t.test('over 300 random edits, applying only the affected apps gives what a full rebuild gives', async (t) => {
  // A small deterministic generator (no flaky seeds): services with endpoints, apps with dependencies.
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  interface Model {
    svcs: Map<string, string[]>;
    apps: Map<string, { deps: string[]; maxRequests: number | null }>;
    domain: string;
  }
  const m: Model = { svcs: new Map(), apps: new Map(), domain: 'cluster.local' };
  for (let i = 0; i < 8; i++) m.svcs.set(`svc-${i}`, [`10.0.${i}.1:80`]);
  for (let i = 0; i < 8; i++) m.apps.set(`app-${i}`, { deps: [`svc-${i}`, `svc-${(i + 3) % 8}`], maxRequests: null });
  const render = (): string => {
    const lines = [`clusterDomain: ${m.domain}`, 'services:'];
    for (const [name, eps] of m.svcs)
      lines.push(`  - { name: ${name}, ports: [{ port: 80, protocol: http }], endpoints: [${eps.join(', ')}] }`);
    lines.push('apps:');
    for (const [name, a] of m.apps) {
      const deps = a.deps.map(
        (d) => `{ depend_service_alias: ${d}, port: 80${a.maxRequests ? `, options: { MaxRequests: ${a.maxRequests} }` : ''} }`,
      );
      lines.push(`  - { name: ${name}, config: { base_services: [${deps.join(', ')}] } }`);
    }
    return `${lines.join('\n')}\n`;
  };
  const edits = [
    () => {
      const s = `svc-${rnd(10)}`;
      const eps = m.svcs.get(s);
      if (eps) eps.push(`10.1.${rnd(250)}.${rnd(250)}:80`);
    },
    () => {
      const s = `svc-${rnd(10)}`;
      const eps = m.svcs.get(s);
      if (eps && eps.length > 1) eps.splice(rnd(eps.length), 1);
    },
    () => {
      const s = `svc-${rnd(10)}`;
      if (m.svcs.has(s)) m.svcs.delete(s);
      else m.svcs.set(s, [`10.2.${rnd(250)}.1:80`]);
    },
    () => {
      const a = `app-${rnd(10)}`;
      if (m.apps.has(a)) m.apps.delete(a);
      else m.apps.set(a, { deps: [`svc-${rnd(10)}`], maxRequests: null });
    },
    () => {
      const a = m.apps.get(`app-${rnd(10)}`);
      if (a) a.maxRequests = rnd(3) === 0 ? null : 1 + rnd(100);
    },
    () => {
      const a = m.apps.get(`app-${rnd(10)}`);
      if (a) a.deps = [`svc-${rnd(10)}`, `svc-${rnd(10)}`].filter((d, i, all) => all.indexOf(d) === i);
    },
    () => {
      if (rnd(20) === 0) m.domain = m.domain === 'cluster.local' ? 'corp.local' : 'cluster.local';
    },
  ];
  const log = createLogger('discover', 'silent');
  const incremental = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
  let prev: Topology | null = null;
  let memo: ParseMemo | undefined;
  let partial = 0;
  let rebuiltPartial = 0;
  let mismatches = 0;
  for (let i = 0; i < 300; i++) {
    if (i > 0) edits[rnd(edits.length)]();
    const text = render();
    const parsed = parse(text, memo);
    const affected = affectedApps(prev, parsed.topology);
    if (affected) partial++;
    const r = incremental.apply(parsed.topology, affected);
    if (affected) rebuiltPartial += r.rebuilt;
    prev = parsed.topology;
    memo = parsed.memo;
    const full = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
    const fresh = parseStaticTopologyWith(text).topology;
    full.apply(fresh);
    for (const key of new Set([...fresh.apps.keys(), ...m.apps.keys()].map((k) => (k.includes('/') ? k : `default/${k}`)))) {
      const [ns, app] = key.split('/');
      if (incremental.get(ns, app)?.etag !== full.get(ns, app)?.etag) mismatches++;
    }
    full.close();
  }
  incremental.close();
  t.equal(mismatches, 0, "every app's snapshot version matches a full rebuild after every edit");
  t.ok(partial > 250, `most edits took the partial path (${partial} of 300)`);
  t.comment(`${rebuiltPartial} snapshots rebuilt over ${partial} partial applies`);
});
