// Gateway API matches on every HTTP/1.1 path (fast path, node:http): path Exact / PathPrefix by whole
// segments / RegularExpression, method, query (exact and regex, first value), header regex, first match
// wins; the weighted split.
import t from 'tap';
import { H1_PATHS, route, routeSetup } from './routeFixtures.ts';

for (const protocol of ['http', 'http2'] as const)
  t.test(`${protocol} listener: path, method, query and header matches route every request to its backend`, async (t) => {
    const s = await routeSetup(t, ['exact', 'prefix', 'regex', 'method', 'query', 'queryre', 'header', 'fallback'], { protocol });
    const c = s.cluster;
    await s.setRoutes([
      route(c.exact, { path: { type: 'Exact', value: '/exact' } }),
      route(c.prefix, { path: { type: 'PathPrefix', value: '/v2' } }),
      route(c.regex, { path: { type: 'RegularExpression', value: '/items/[0-9]+' } }),
      route(c.method, { method: 'DELETE' }),
      route(c.query, { query: [{ name: 'canary', value: 'yes please' }] }),
      route(c.queryre, { query: [{ name: 'v', value: '[0-9]+', type: 'RegularExpression' }] }),
      route(c.header, { headers: [{ name: 'x-user', value: 'admin-[a-z]+', type: 'RegularExpression' }] }),
      route(c.fallback),
    ]);
    const cases: [string, string, Record<string, string>, string][] = [
      ['GET', '/exact', {}, 'exact'],
      ['GET', '/exact?x=1', {}, 'exact'],
      ['GET', '/exact/', {}, 'fallback'],
      ['GET', '/v2', {}, 'prefix'],
      ['GET', '/v2/', {}, 'prefix'],
      ['GET', '/v2/x', {}, 'prefix'],
      ['GET', '/v2?q=1', {}, 'prefix'],
      ['GET', '/v2example', {}, 'fallback'],
      ['GET', '/items/42', {}, 'regex'],
      ['GET', '/items/42?x', {}, 'regex'],
      ['GET', '/items/42x', {}, 'fallback'],
      ['GET', '/xitems/42', {}, 'fallback'],
      ['DELETE', '/anything', {}, 'method'],
      ['GET', '/q?canary=yes+please', {}, 'query'],
      ['GET', '/q?a=b&canary=yes%20please', {}, 'query'],
      ['GET', '/q?canary=no&canary=yes+please', {}, 'fallback'], // first value counts
      ['GET', '/q?canary=yes', {}, 'fallback'],
      ['GET', '/q?v=123', {}, 'queryre'],
      ['GET', '/q?v=12a', {}, 'fallback'],
      ['GET', '/h', { 'x-user': 'admin-bob' }, 'header'],
      ['GET', '/h', { 'x-user': 'admin-Bob' }, 'fallback'],
      ['GET', '/h', { 'x-user': 'xadmin-bob' }, 'fallback'],
    ];
    for (const path of protocol === 'http' ? H1_PATHS : (['h2c'] as const)) {
      for (const [method, target, headers, want] of cases) {
        const r = await s.send(path, method, target, headers);
        t.equal(r.body, want, `${path}: ${method} ${target} ${JSON.stringify(headers)} goes to ${want}`);
      }
    }
  });

for (const protocol of ['http', 'http2'] as const)
  t.test(`${protocol} listener: header and query matches route 100% of 200 requests right`, async (t) => {
    const s = await routeSetup(t, ['hit', 'miss'], { protocol });
    await s.setRoutes([
      route(s.cluster.hit, { headers: [{ name: 'x-canary', value: 'true' }], query: [{ name: 'tenant', value: 't1' }] }),
      route(s.cluster.miss),
    ]);
    for (const path of protocol === 'http' ? H1_PATHS : (['h2c'] as const)) {
      const got: Record<string, number> = {};
      for (let i = 0; i < 200; i++) {
        const hit = i % 2 === 0;
        const r = await s.send(path, 'GET', hit ? `/x?tenant=t1&i=${i}` : `/x?tenant=t2&i=${i}`, { 'x-canary': 'true' });
        const right = r.body === (hit ? 'hit' : 'miss');
        got[right ? 'right' : 'wrong'] = (got[right ? 'right' : 'wrong'] ?? 0) + 1;
      }
      t.same(got, { right: 200 }, `${path}: every request on its route`);
    }
  });

for (const protocol of ['http', 'http2'] as const)
  t.test(`${protocol} listener: a 90/10 weighted split over 2,000 requests lands within 3% per backend`, async (t) => {
    const s = await routeSetup(t, ['stable', 'canary'], { protocol });
    await s.setRoutes([
      {
        domains: ['*'],
        prefix: '/',
        headers: [],
        path: { type: 'PathPrefix', value: '/' },
        source: 'HTTPRoute default/split rule 0',
        backends: [
          { cluster: s.cluster.stable, weight: 90 },
          { cluster: s.cluster.canary, weight: 10 },
        ],
      },
    ]);
    for (const path of protocol === 'http' ? H1_PATHS : (['h2c'] as const)) {
      const got: Record<string, number> = { stable: 0, canary: 0 };
      const n = 2000;
      // 8 at a time: the split is per request, whatever the concurrency.
      for (let i = 0; i < n; i += 8) {
        const rs = await Promise.all(Array.from({ length: 8 }, () => s.send(path, 'GET', '/split')));
        for (const r of rs) got[r.body] = (got[r.body] ?? 0) + 1;
      }
      t.ok(Math.abs(got.stable / n - 0.9) <= 0.03, `${path}: stable ${got.stable}/${n} within 3% of 90%`);
      t.ok(Math.abs(got.canary / n - 0.1) <= 0.03, `${path}: canary ${got.canary}/${n} within 3% of 10%`);
      t.equal(got.stable + got.canary, n, `${path}: nothing else answered`);
    }
  });

t.test('the two HTTP/1.1 clients of these tests take the two paths they are named for', async (t) => {
  const s = await routeSetup(t, ['a']);
  await s.setRoutes([route(s.cluster.a, { path: { type: 'PathPrefix', value: '/' } })]);
  // undici (the node:http path's upstream client) says Connection: keep-alive; the fast path writes no Connection header.
  const fast = JSON.parse((await s.send('fast', 'GET', '/p', { 'x-echo': '1' })).body) as { headers: Record<string, string> };
  const node = JSON.parse((await s.send('node', 'GET', '/p', { 'x-echo': '1' })).body) as { headers: Record<string, string> };
  t.equal(fast.headers.connection, undefined, 'fast: the fast path sent it');
  t.equal(node.headers.connection, 'keep-alive', 'node: undici sent it');
});

t.test('other real clients: curl (redirect, query match) and undici (header regex match)', async (t) => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { request } = await import('undici');
  const run = promisify(execFile);
  const s = await routeSetup(t, ['hit', 'miss']);
  await s.setRoutes([
    {
      ...route(s.cluster.hit),
      backends: [],
      path: { type: 'Exact', value: '/go' },
      redirect: { scheme: 'https', hostname: 'example.org', statusCode: 308 },
    },
    route(s.cluster.hit, { query: [{ name: 'q', value: 'a b' }] }),
    route(s.cluster.hit, { headers: [{ name: 'x-who', value: 'w[0-9]', type: 'RegularExpression' }] }),
    route(s.cluster.miss),
  ]);
  const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', `${s.url}/go?x=1`]);
  t.equal(stdout, '308 https://example.org/go?x=1', 'curl: redirect');
  const q = await run('curl', ['-s', `${s.url}/p?q=a%20b`]);
  t.equal(q.stdout, 'hit', 'curl: query match on the decoded value');
  const u = await request(`${s.url}/u`, { headers: { 'x-who': 'w7' } });
  t.equal(await u.body.text(), 'hit', 'undici: header regex match');
  const u2 = await request(`${s.url}/u`, { headers: { 'x-who': 'w77' } });
  t.equal(await u2.body.text(), 'miss', 'undici: the regex matches the whole value only');
});
