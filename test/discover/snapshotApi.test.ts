// discover's HTTP API driven by real clients: undici and curl.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { request } from 'undici';
import { snapshotError, type Snapshot } from '../../shared/snapshot.ts';
import { TWO_APPS, withDiscover } from '../lib/discover.ts';

const run = promisify(execFile);

async function curl(...args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const { stdout } = await run('curl', ['-s', '-S', '-D', '-', '--max-time', '10', ...args]);
  const split = stdout.indexOf('\r\n\r\n');
  const headers = stdout.slice(0, split);
  return { status: Number(/^HTTP\/[0-9.]+ ([0-9]{3})/.exec(headers)?.[1]), headers, body: stdout.slice(split + 4) };
}

async function getSnapshot(base: string, path = '/v2/snapshot/default/web'): Promise<Snapshot> {
  const res = await request(base + path);
  return (await res.body.json()) as Snapshot;
}

t.test('snapshot over curl: keys, endpoints, ETag, If-None-Match forms', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const res = await curl(`${d.url}/v2/snapshot/default/web`);
  t.equal(res.status, 200);
  const snap = JSON.parse(res.body) as Snapshot;
  for (const key of ['schemaVersion', 'version', 'namespace', 'app', 'inbound', 'outbound', 'clusters', 'dns'])
    t.ok(key in snap, `has ${key}`);
  t.equal(snapshotError(snap), null, 'valid against the contract');
  const byName = Object.fromEntries(snap.clusters.map((c) => [c.name, c.endpoints.length]));
  t.same(byName, { 'api.default:8080': 3, 'cache.default:6379': 2 });
  const etag = /^etag: (.*)$/im.exec(res.headers)?.[1].trim();
  t.equal(etag, `"${snap.version}"`);
  for (const form of [`"${snap.version}"`, snap.version, `W/"${snap.version}"`, `"zzz", "${snap.version}"`, '*']) {
    const r = await curl('-H', `If-None-Match: ${form}`, `${d.url}/v2/snapshot/default/web`);
    t.equal(r.status, 304, `If-None-Match: ${form} -> 304`);
    t.equal(r.body, '');
  }
  const stale = await curl('-H', 'If-None-Match: "0000000000000000"', `${d.url}/v2/snapshot/default/web`);
  t.equal(stale.status, 200);
  const missing = await curl(`${d.url}/v2/snapshot/default/nope`);
  t.equal(missing.status, 404);
  t.match(JSON.parse(missing.body), { error: 'not_found', message: /default\/nope/ });
});

t.test('prebuilt answers keep HTTP right: keep-alive, pipelining, HEAD, HTTP/1.0', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const { connect } = await import('node:net');
  const sock = connect(d.port, '127.0.0.1');
  let got = '';
  sock.on('data', (c) => (got += c.toString('latin1')));
  const req = 'GET /v2/snapshot/default/web HTTP/1.1\r\nhost: x\r\n\r\n';
  sock.write(req + req + 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
  const deadline = Date.now() + 5000;
  while (!got.includes('"status":"ok"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(got.match(/HTTP\/1\.1 200 OK/g)?.length, 3, 'three pipelined answers on one connection');
  t.equal(got.match(/"schemaVersion":1/g)?.length, 2);
  t.ok(got.indexOf('"status":"ok"') > got.lastIndexOf('"schemaVersion"'), 'in order');
  t.notOk(sock.destroyed, 'the connection stays open');
  sock.destroy();
  const head = await request(`${d.url}/v2/snapshot/default/web`, { method: 'HEAD' });
  t.equal(head.statusCode, 200);
  t.equal(await head.body.text(), '', 'HEAD has no body');
  t.ok(Number(head.headers['content-length']) > 100, 'and says how long the body would be');
  const old = await curl('--http1.0', `${d.url}/v2/snapshot/default/web`);
  t.equal(old.status, 200);
  t.equal(JSON.parse(old.body).app, 'web', 'HTTP/1.0 gets the ordinary path');
});

t.test('woken long-polls keep HTTP right: a HEAD and a request pipelined behind them, then the next poll', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const web = await getSnapshot(d.url);
  const { connect } = await import('node:net');
  const socks = [0, 1, 2].map(() => connect(d.port, '127.0.0.1'));
  const got = socks.map(() => '');
  socks.forEach((s, i) => s.on('data', (c) => (got[i] += c.toString('latin1'))));
  const poll = (v: string) => `GET /v2/snapshot/default/web?version=${v}&wait=10s HTTP/1.1\r\nhost: x\r\n\r\n`;
  // 0: a long-poll with /healthz pipelined behind it; 1: a HEAD long-poll (ordinary path); 2: a plain long-poll.
  socks[0].write(poll(web.version) + 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
  socks[1].write(poll(web.version).replace('GET', 'HEAD'));
  socks[2].write(poll(web.version));
  while (d.store.waiting('default', 'web') < 3) await new Promise((r) => setTimeout(r, 5));
  d.edit(TWO_APPS.replace('10.0.0.3:8080]', '10.0.0.3:8080, 10.0.0.4:8080]'));
  const until = async (ok: () => boolean, what: string) => {
    const deadline = Date.now() + 5000;
    while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    t.ok(ok(), what);
  };
  await until(
    () => got[0].includes('"status":"ok"') && got[1].includes('\r\n\r\n') && got[2].includes('"schemaVersion"'),
    'all three answered',
  );
  const fresh = /etag: "([^"]+)"/.exec(got[2])?.[1] ?? '';
  t.not(fresh, web.version, 'with the new version');
  t.ok(got[0].indexOf('"status":"ok"') > got[0].indexOf('"schemaVersion"'), 'the pipelined request is answered after the woken poll');
  t.match(got[1], /^HTTP\/1\.1 200 OK\r\n/);
  t.notOk(got[1].includes('"schemaVersion"'), 'HEAD gets no body');
  // The connection of a woken poll carries the next poll, which waits on the new version.
  got[2] = '';
  socks[2].write(poll(fresh));
  await until(() => d.store.waiting('default', 'web') === 1, 'the next poll on the same connection waits');
  d.edit(TWO_APPS.replace('10.0.0.3:8080]', '10.0.0.5:8080]'));
  await until(() => got[2].includes('"schemaVersion"'), 'and is woken by the next edit');
  t.notOk(got[2].includes(`etag: "${fresh}"`), 'with a newer version');
  for (const s of socks) s.destroy();
});

t.test('long-poll with the current version answers 304 after the wait', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const snap = await getSnapshot(d.url);
  for (const wait of ['1s', '1']) {
    // curl's own clock (time_total) leaves out the process start, which a loaded machine stretches.
    const { stdout } = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{time_total}',
      '--max-time',
      '10',
      `${d.url}/v2/snapshot/default/web?version=${snap.version}&wait=${wait}`,
    ]);
    const [status, seconds] = stdout.split(' ');
    const took = Number(seconds) * 1000;
    t.equal(status, '304', `wait=${wait}`);
    t.ok(took >= 950 && took < 2000, `answered after about a second (${took.toFixed(0)} ms)`);
  }
  const r = await curl(`${d.url}/v2/snapshot/default/web?version=old&wait=30s`);
  t.equal(r.status, 200, 'an older version answers at once');
  const bad = await curl(`${d.url}/v2/snapshot/default/web?version=${snap.version}&wait=soon`);
  t.equal(bad.status, 400, 'a malformed wait is a 400');
  t.match(bad.body, /wait/);
  t.equal(d.store.waiting('default', 'web'), 0, 'no waiter left behind');
});

t.test('an edit wakes the waiters of the changed app within 100 ms, and only them', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const web = await getSnapshot(d.url);
  const worker = await getSnapshot(d.url, '/v2/snapshot/default/worker');
  const N = 50;
  const webWaits = Array.from({ length: N }, () => request(`${d.url}/v2/snapshot/default/web?version=${web.version}&wait=10s`));
  let workerAnswered = false;
  const workerWait = request(`${d.url}/v2/snapshot/default/worker?version=${worker.version}&wait=2s`).then((r) => {
    workerAnswered = true;
    return r;
  });
  while (d.store.waiting('default', 'web') < N || d.store.waiting('default', 'worker') < 1) await new Promise((r) => setTimeout(r, 5));
  const edited = TWO_APPS.replace('10.0.0.3:8080]', '10.0.0.3:8080, 10.0.0.4:8080]');
  const start = performance.now();
  d.edit(edited);
  const answers = await Promise.all(webWaits);
  const took = performance.now() - start;
  t.ok(took < 100, `all ${N} waiters woken in ${took.toFixed(1)} ms`);
  for (const a of answers) t.equal(a.statusCode, 200);
  const fresh = (await answers[0].body.json()) as Snapshot;
  for (const a of answers.slice(1)) await a.body.dump();
  t.not(fresh.version, web.version);
  t.equal(fresh.clusters.find((c) => c.name === 'api.default:8080')?.endpoints.length, 4);
  t.notOk(workerAnswered, "the other app's waiter was not woken");
  const w = await workerWait;
  t.equal(w.statusCode, 304, 'it times out unchanged');
  await w.body.dump();
});

t.test('an invalid edit at runtime is refused and the last good snapshot keeps serving', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const before = await getSnapshot(d.url);
  const waiter = request(`${d.url}/v2/snapshot/default/web?version=${before.version}&wait=1s`);
  d.edit(
    TWO_APPS.replace(
      '{ depend_service_alias: api, port: 8080, protocol: http }',
      '{ depend_service_alias: api, port: 8080, protocol: http, options: { MaxRequests: ten } }',
    ),
  );
  const w = await waiter;
  t.equal(w.statusCode, 304, 'nobody is woken by a refused edit');
  await w.body.dump();
  const after = await getSnapshot(d.url);
  t.equal(after.version, before.version);
  const metrics = await (await request(`${d.url}/metrics`)).body.text();
  t.match(metrics, /shoal_discover_config_errors_total\{source="static",piece="discover"\} 1/);
  d.edit(TWO_APPS.replace('10.0.0.3:8080]', '10.0.0.9:8080]'));
  const deadline = Date.now() + 2000;
  let fixed = after;
  while (fixed.version === before.version && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    fixed = await getSnapshot(d.url);
  }
  t.not(fixed.version, before.version, 'a good edit after a bad one applies');
});

t.test('health, readiness, metrics and OpenAPI', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  t.equal((await curl(`${d.url}/healthz`)).status, 200);
  const ready = await curl(`${d.url}/readyz`);
  t.equal(ready.status, 200);
  t.match(JSON.parse(ready.body), { status: 'ready' });
  await getSnapshot(d.url);
  const metrics = await curl(`${d.url}/metrics`);
  for (const name of [
    'shoal_discover_snapshots_served_total',
    'shoal_discover_longpoll_waiters',
    'shoal_discover_rebuild_seconds',
    'shoal_discover_config_errors_total',
  ]) {
    t.match(metrics.body, name);
  }
  t.match(metrics.body, /shoal_discover_snapshots_served_total\{result="full",piece="discover"\} 1/);
  const docs = JSON.parse((await curl(`${d.url}/docs/json`)).body);
  t.equal(docs.openapi.slice(0, 2), '3.');
  t.ok(docs.paths['/v2/snapshot/{namespace}/{app}'], 'snapshot route documented');
  t.ok(docs.paths['/v1/resources/{namespace}/{app}/{plugin_id}'], 'resources route documented');
  const unknown = await curl(`${d.url}/nope`);
  t.equal(unknown.status, 404);
  t.match(JSON.parse(unknown.body), { error: 'not_found' });
});

t.test('/v1/resources: read the mesh config; writes need the token, are validated, and are atomic', async (t) => {
  const d = await withDiscover(t, TWO_APPS, { writeToken: 's3cret' });
  const got = await curl(`${d.url}/v1/resources/default/web/mesh`);
  t.equal(got.status, 200);
  t.same(JSON.parse(got.body).base_services[0], { depend_service_alias: 'api', port: 8080, protocol: 'http' });
  t.equal((await curl(`${d.url}/v1/resources/default/web/other`)).status, 404, 'wrong plugin id');
  t.equal((await curl(`${d.url}/v1/resources/default/nope/mesh`)).status, 404, 'unknown app');
  const spec = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { MaxRequests: '10' } }] };
  const body = JSON.stringify(spec);
  const put = (...extra: string[]) =>
    curl('-X', 'PUT', '-H', 'content-type: application/json', ...extra, `${d.url}/v1/resources/default/web/mesh`);
  t.equal((await put('--data', body)).status, 401, 'no token');
  t.equal((await put('-H', 'authorization: Bearer wrong', '--data', body)).status, 401, 'bad token');
  const bad = await put(
    '-H',
    'authorization: Bearer s3cret',
    '--data',
    JSON.stringify({ base_services: [{ depend_service_alias: 'api', port: 8080, options: { MaxRequests: 'ten' } }] }),
  );
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body).message, /dependency api:8080: invalid option MaxRequests="ten"/);
  const malformed = await put('-H', 'authorization: Bearer s3cret', '--data', '{not json');
  t.equal(malformed.status, 400, 'malformed JSON is a 400');
  const before = await getSnapshot(d.url);
  t.equal(before.clusters[0].policy.maxRequests, 10240, 'unchanged by refused writes');
  const waiter = request(`${d.url}/v2/snapshot/default/web?version=${before.version}&wait=5s`);
  const ok = await put('-H', 'authorization: Bearer s3cret', '--data', body);
  t.equal(ok.status, 200);
  const woke = await waiter;
  t.equal(woke.statusCode, 200, 'the write wakes waiters');
  const after = (await woke.body.json()) as Snapshot;
  t.equal(after.clusters.length, 1);
  t.equal(after.clusters[0].policy.maxRequests, 10);
  const { readFileSync } = await import('node:fs');
  t.match(readFileSync(d.file, 'utf8'), /MaxRequests: "10"/, 'written to the topology file');
  t.equal((await curl(`${d.url}/v1/resources/default/web/mesh`)).body, JSON.stringify(spec));
});

t.test('writes are off without a token', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const r = await curl('-X', 'PUT', '-H', 'content-type: application/json', '--data', '{}', `${d.url}/v1/resources/default/web/mesh`);
  t.equal(r.status, 403);
  t.match(r.body, /--write-token/);
});
