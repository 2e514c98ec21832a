// The snapshot body is serialised once: its version is the hash of the content's text and the body
// is that text with the version put in. Checked against JSON.stringify and snapshotVersion (what a
// replica, or an older discover, computes) over many random topologies, and pinned to the bytes
// the builder gave before it serialised once, so replicas of both ages serve the same versions.
import t from 'tap';
import { createHash } from 'node:crypto';
import { Registry } from 'prom-client';
import { buildSnapshot, buildSnapshotBody, inputsMemo, snapshotInputs } from '../../discover/snapshot/builder.ts';
import { SnapshotStore } from '../../discover/snapshot/store.ts';
import { createDiscoverMetrics } from '../../discover/metrics.ts';
import { createLogger } from '../../shared/log.ts';
import { snapshotError, snapshotVersion } from '../../shared/snapshot.ts';
import type { Service, Topology } from '../../discover/topology/model.ts';
import { random, randomTopology } from './snapshotFixtures.ts';

const SEEDS = 300;

t.test('body is JSON.stringify(snapshot) and the version is snapshotVersion, byte for byte', async (t) => {
  let snapshots = 0;
  let bad = 0;
  const all = createHash('sha256');
  const kinds = { errors: 0, identity: 0, meshed: 0 };
  for (let seed = 1; seed <= SEEDS; seed++) {
    const topo = randomTopology(seed);
    // One apply's memo: the apps share their dependencies' endpoint lists and those lists' JSON.
    const memo = inputsMemo();
    for (const app of topo.apps.values()) {
      const { snapshot, body } = buildSnapshotBody(app, topo);
      snapshots++;
      if (buildSnapshotBody(app, topo, memo).body !== body) {
        bad++;
        if (bad <= 3) t.fail(`seed ${seed}, ${app.namespace}/${app.name}: built with the apply's memo, the body differs`);
      }
      if (body !== JSON.stringify(snapshot) || snapshot.version !== snapshotVersion(snapshot) || snapshotError(JSON.parse(body)) !== null) {
        bad++;
        if (bad <= 3) t.fail(`seed ${seed}, ${app.namespace}/${app.name}: body or version differs`);
      }
      if (JSON.stringify(buildSnapshot(app, topo)) !== body) bad++;
      all.update(body);
      if (snapshot.status.errors.length > 0) kinds.errors++;
      if (snapshot.identity) kinds.identity++;
      if (snapshot.clusters.some((c) => c.endpoints.some((e) => e.meshed))) kinds.meshed++;
    }
  }
  t.equal(bad, 0, `all ${snapshots} snapshots`);
  t.ok(
    kinds.errors > 100 && kinds.identity > 100 && kinds.meshed > 50 && snapshots - kinds.errors > 100,
    `the topologies cover errors, identity and sidecar endpoints (${JSON.stringify(kinds)})`,
  );
  // The same topologies through the builder as it was before (JSON.stringify of buildSnapshot's
  // object, every address hashed afresh): a different digest means versions moved between releases.
  t.equal(
    all.digest('hex'),
    '07178d1d06e0fedcf91c23d69ffab867fb69a385fc68189bedcaf0f4db051088',
    'the bytes of every snapshot are what the earlier builder gave',
  );
});

t.test('the inputs memo gives the same inputs as none, and a Service changed in place is read again on the next apply', async (t) => {
  for (let seed = 1; seed <= 50; seed++) {
    const topo = randomTopology(seed);
    const memo = inputsMemo();
    for (const app of topo.apps.values()) t.equal(snapshotInputs(app, topo, memo), snapshotInputs(app, topo), `seed ${seed} ${app.name}`);
  }
  // An endpoint flipped in place on the same Service object: the next apply (a fresh memo) sees it.
  const topo: Topology = randomTopology(7);
  const store = new SnapshotStore(createDiscoverMetrics(new Registry()), createLogger('discover', 'silent'));
  store.apply(topo);
  const [key, svc] = [...topo.services].find(([, s]) => [...s.endpoints.values()].some((e) => e.length > 0)) as [string, Service];
  const dependents = [...topo.apps.values()].filter((a) => a.config.dependencies.some((d) => `${d.namespace}/${d.service}` === key));
  t.ok(dependents.length > 0, `${key} has dependents`);
  const before = dependents.map((a) => store.get(a.namespace, a.name)!.etag);
  for (const eps of svc.endpoints.values()) for (const e of eps) e.ready = !e.ready;
  const r = store.apply(
    topo,
    dependents.map((a) => `${a.namespace}/${a.name}`),
  );
  t.equal(r.rebuilt, dependents.length, 'every dependent rebuilt');
  const full = new SnapshotStore(createDiscoverMetrics(new Registry()), createLogger('discover', 'silent'));
  full.apply(topo);
  t.same(
    dependents.map((a) => store.get(a.namespace, a.name)!.etag),
    dependents.map((a) => full.get(a.namespace, a.name)!.etag),
    'as a full rebuild gives',
  );
  t.notSame(
    dependents.map((a) => store.get(a.namespace, a.name)!.etag),
    before,
    'and new versions',
  );
  for (const a of dependents)
    t.equal(store.get(a.namespace, a.name)!.body.toString(), JSON.stringify(full.get(a.namespace, a.name)!.snapshot), `${a.name}: body`);
  store.close();
  full.close();
});

t.test('with Gateway API routes: the body is JSON.stringify(snapshot), with the apply memo or without', async (t) => {
  let snapshots = 0;
  let routed = 0;
  let bad = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const topo = randomTopology(seed, { routes: true });
    const memo = inputsMemo(new Map());
    for (const app of topo.apps.values()) {
      const { snapshot, body } = buildSnapshotBody(app, topo);
      snapshots++;
      if (snapshot.outbound.some((l) => l.routes.some((r) => r.source !== undefined))) routed++;
      const withMemo = buildSnapshotBody(app, topo, memo);
      if (
        withMemo.body !== body ||
        body !== JSON.stringify(snapshot) ||
        JSON.stringify(withMemo.snapshot) !== body ||
        snapshot.version !== snapshotVersion(snapshot) ||
        snapshotError(JSON.parse(body)) !== null
      ) {
        bad++;
        if (bad <= 3) t.fail(`seed ${seed}, ${app.namespace}/${app.name}: body or version differs`);
      }
      if (snapshotInputs(app, topo, memo) !== snapshotInputs(app, topo)) {
        bad++;
        if (bad <= 3) t.fail(`seed ${seed}, ${app.namespace}/${app.name}: inputs differ with the memo`);
      }
    }
  }
  t.equal(bad, 0, `all ${snapshots} snapshots`);
  t.ok(routed > 100, `${routed} snapshots carry Gateway API routes`);
});

t.test('a store applying changes one by one (routes kept across applies) gives what a full build gives', async (t) => {
  const log = createLogger('discover', 'silent');
  let compared = 0;
  let bad = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const rnd = random(seed * 7919);
    const topo = randomTopology(seed, { routes: true });
    topo.routes ??= new Map();
    const store = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
    store.apply(topo);
    for (let step = 0; step < 8; step++) {
      // One edit: a route replaced with other weights or removed, a Service replaced with an endpoint
      // flipped, or a Service's endpoints flipped in place.
      const routes = [...topo.routes!.entries()];
      const services = [...topo.services.entries()];
      const kind = rnd(4);
      if (kind === 0 && routes.length > 0) {
        const [key, r] = routes[rnd(routes.length)];
        const spec = JSON.parse(JSON.stringify(r.spec));
        for (const rule of spec.rules ?? []) for (const b of rule.backendRefs ?? []) b.weight = rnd(50);
        topo.routes!.set(key, { ...r, spec });
      } else if (kind === 1 && routes.length > 0) {
        topo.routes!.delete(routes[rnd(routes.length)][0]);
      } else if (kind === 2 && services.length > 0) {
        const [key, s] = services[rnd(services.length)];
        topo.services.set(key, {
          ...s,
          endpoints: new Map([...s.endpoints].map(([p, eps]) => [p, eps.map((e, i) => (i === 0 ? { ...e, ready: !e.ready } : e))])),
        });
      } else if (services.length > 0) {
        for (const eps of services[rnd(services.length)][1].endpoints.values()) for (const e of eps) e.ready = !e.ready;
      }
      store.apply(topo, [...topo.apps.keys()]);
      const full = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
      full.apply(topo);
      for (const app of topo.apps.values()) {
        compared++;
        const got = store.get(app.namespace, app.name)!.body.toString();
        const want = full.get(app.namespace, app.name)!.body.toString();
        if (got !== want || got !== JSON.stringify(buildSnapshot(app, topo))) {
          bad++;
          if (bad <= 3) t.fail(`seed ${seed}, step ${step}, ${app.namespace}/${app.name}: incremental body differs from a full build`);
        }
      }
      full.close();
    }
    store.close();
  }
  t.equal(bad, 0, `all ${compared} snapshots`);
});
