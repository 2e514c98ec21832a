// Gateway API filters on every path the protocol allows (HTTP/1.1 fast path and node:http, h2c):
// request and response header modifiers (route, then backendRef), redirects (the spec's cases), URL
// rewrites, mirrors, unresolved backends, timeouts and retries.
import t from 'tap';
import type { Route } from '../../../shared/snapshot.ts';
import { waitFor } from '../fixtures.ts';
import { route, routeSetup, type Path } from './routeFixtures.ts';

const PROTOCOLS = [
  ['http', ['fast', 'node']],
  ['http2', ['h2c']],
] as const;

for (const [protocol, paths] of PROTOCOLS) {
  t.test(`${protocol}: header modifiers, route then backend, on the way up and down`, async (t) => {
    const s = await routeSetup(t, ['a'], { protocol });
    await s.setRoutes([
      {
        ...route(s.cluster.a),
        requestHeaders: { set: [{ name: 'x-set', value: 'route' }], add: [{ name: 'x-added', value: 'one' }], remove: ['x-secret'] },
        responseHeaders: { set: [{ name: 'x-resp', value: 'route' }], remove: ['x-from-backend'] },
        backends: [
          {
            cluster: s.cluster.a,
            weight: 1,
            requestHeaders: { set: [{ name: 'x-backend-set', value: 'yes' }], add: [{ name: 'x-added', value: 'two' }] },
            responseHeaders: { add: [{ name: 'x-resp-backend', value: 'b' }] },
          },
        ],
      },
    ]);
    for (const path of paths as readonly Path[]) {
      const r = await s.send(path, 'GET', '/m', { 'x-echo': '1', 'x-set': 'client', 'x-secret': 'hush', 'x-keep': 'k' });
      t.equal(r.status, 200, `${path}: answered`);
      const seen = JSON.parse(r.body) as { headers: Record<string, string> };
      t.equal(seen.headers['x-set'], 'route', `${path}: set replaces the client's value`);
      t.equal(seen.headers['x-secret'], undefined, `${path}: removed`);
      t.equal(seen.headers['x-keep'], 'k', `${path}: others kept`);
      t.equal(seen.headers['x-backend-set'], 'yes', `${path}: the backendRef's modifier too`);
      t.match(String(seen.headers['x-added']), /one.*two/, `${path}: add appends, route then backend`);
      t.equal(r.headers['x-resp'], 'route', `${path}: response header set`);
      t.equal(r.headers['x-resp-backend'], 'b', `${path}: backend response header added`);
      t.equal(r.headers['x-from-backend'], undefined, `${path}: response header removed`);
      t.equal(r.headers['x-backend'], 'a', `${path}: the rest of the response kept`);
    }
  });

  t.test(`${protocol}: redirects answer with the spec's Location values`, async (t) => {
    const s = await routeSetup(t, ['a'], { protocol });
    const rd = (prefix: string, redirect: Route['redirect']): Route => ({
      ...route(s.cluster.a),
      backends: [],
      path: { type: 'PathPrefix', value: prefix },
      redirect,
    });
    await s.setRoutes([
      rd('/original-prefix', { path: { type: 'ReplacePrefixMatch', value: '/replacement-prefix' }, statusCode: 302 }),
      rd('/full', { path: { type: 'ReplaceFullPath', value: '/full-path-replacement' }, statusCode: 302 }),
      rd('/path-and-host', {
        hostname: 'example.org',
        path: { type: 'ReplacePrefixMatch', value: '/replacement-prefix' },
        statusCode: 302,
      }),
      rd('/path-and-status', { path: { type: 'ReplacePrefixMatch', value: '/replacement-prefix' }, statusCode: 301 }),
      rd('/strip', { path: { type: 'ReplacePrefixMatch', value: '/' }, statusCode: 308 }),
      rd('/port-and-host', { hostname: 'example.org', port: 8083, statusCode: 302 }),
      rd('/port', { port: 8083, statusCode: 307 }),
      rd('/scheme-and-host', { scheme: 'https', hostname: 'example.org', statusCode: 302 }),
      rd('/scheme-port', { scheme: 'https', port: 8443, statusCode: 303 }),
      rd('/scheme', { scheme: 'https', statusCode: 301 }),
      rd('/host-only', { hostname: 'example.org', statusCode: 302 }),
      {
        ...rd('/with-headers', { statusCode: 302, path: { type: 'ReplaceFullPath', value: '/h' } }),
        responseHeaders: { set: [{ name: 'x-redirected', value: 'yes' }] },
      },
      route(s.cluster.a),
    ]);
    const cases: [string, string, number, string][] = [
      ['echo', '/original-prefix/lemon', 302, 'http://echo/replacement-prefix/lemon'],
      ['echo', '/original-prefix/lemon?x=1', 302, 'http://echo/replacement-prefix/lemon?x=1'],
      ['echo', '/full/path/original', 302, 'http://echo/full-path-replacement'],
      ['echo', '/path-and-host', 302, 'http://example.org/replacement-prefix'],
      ['echo', '/path-and-status', 301, 'http://echo/replacement-prefix'],
      ['echo', '/strip/x/', 308, 'http://echo/x/'],
      ['echo', '/strip', 308, 'http://echo/'],
      ['echo', '/port-and-host', 302, 'http://example.org:8083/port-and-host'],
      ['echo', '/port', 307, 'http://echo:8083/port'],
      ['echo:8080', '/port', 307, 'http://echo:8083/port'],
      ['echo', '/scheme-and-host', 302, 'https://example.org/scheme-and-host'],
      ['echo:8080', '/scheme', 301, 'https://echo/scheme'], // a scheme without a port: its well-known port
      ['echo', '/scheme-port', 303, 'https://echo:8443/scheme-port'],
      ['echo:8080', '/host-only', 302, 'http://example.org:8080/host-only'], // no scheme: the port the request was sent to
    ];
    for (const path of paths as readonly Path[]) {
      for (const [host, target, status, location] of cases) {
        const r = await s.send(path, 'GET', target, { host });
        t.equal(r.status, status, `${path}: ${host}${target} status`);
        t.equal(r.headers.location, location, `${path}: ${host}${target} Location`);
      }
      const wh = await s.send(path, 'GET', '/with-headers', { host: 'echo' });
      t.equal(wh.headers.location, 'http://echo/h', `${path}: redirect with the rule's response header modifier`);
      t.equal(wh.headers['x-redirected'], 'yes', `${path}: the redirect carries the rule's response headers`);
      t.equal(s.backends.a.requests, 0, `${path}: no redirect reached a backend`);
    }
  });

  t.test(`${protocol}: URL rewrites are what the upstream sees`, async (t) => {
    const s = await routeSetup(t, ['a'], { protocol });
    const rw = (path: Route['path'], rewrite: Route['rewrite']): Route => ({ ...route(s.cluster.a), path, rewrite });
    await s.setRoutes([
      rw({ type: 'PathPrefix', value: '/prefix' }, { path: { type: 'ReplacePrefixMatch', value: '/' } }),
      rw({ type: 'PathPrefix', value: '/strip-prefix' }, { path: { type: 'ReplacePrefixMatch', value: '' } }),
      rw({ type: 'PathPrefix', value: '/swap/' }, { path: { type: 'ReplacePrefixMatch', value: '/new/' } }),
      rw({ type: 'PathPrefix', value: '/full' }, { path: { type: 'ReplaceFullPath', value: '/one' } }),
      rw({ type: 'PathPrefix', value: '/host' }, { hostname: 'rewritten.example' }),
    ]);
    const cases: [string, string, string | null][] = [
      ['/prefix/one/two', '/one/two', null],
      ['/prefix/one/two?q=1', '/one/two?q=1', null],
      ['/strip-prefix/three', '/three', null],
      ['/strip-prefix', '/', null],
      ['/swap/x', '/new/x', null],
      ['/swap', '/new', null],
      ['/full/one/two', '/one', null],
      ['/host/x', '/host/x', 'rewritten.example'],
    ];
    for (const path of paths as readonly Path[]) {
      for (const [target, want, host] of cases) {
        const r = await s.send(path, 'GET', target, { 'x-echo': '1' });
        const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
        t.equal(seen.url, want, `${path}: ${target} arrives as ${want}`);
        if (host !== null)
          t.match(
            protocol === 'http2' ? seen.headers[':authority'] : seen.headers.host,
            new RegExp(`^${host.replace('.', '\\.')}(:[0-9]+)?$`),
            `${path}: Host rewritten`,
          );
      }
    }
  });

  t.test(`${protocol}: mirrors get copies whose answers never reach the client`, async (t) => {
    const s = await routeSetup(t, ['main', 'mirror', 'half'], { protocol });
    await s.setRoutes([{ ...route(s.cluster.main), mirrors: [{ cluster: s.cluster.mirror }, { cluster: s.cluster.half, percent: 50 }] }]);
    let sent = 0;
    for (const path of paths as readonly Path[]) {
      for (let i = 0; i < 100; i++) {
        // Every backend answers a key's first request with 418 (the mirrors too): the client gets main's own answer.
        const body = i % 2 === 0 && path !== 'fast' ? `body-${i}` : undefined;
        const r = await s.send(
          path,
          body === undefined ? 'GET' : 'POST',
          `/mirror/${i}`,
          { 'x-fail-key': `m${i}`, 'x-fail-times': '1', 'x-fail-code': '418' },
          body,
        );
        sent++;
        t.equal(r.headers['x-backend'], 'main', `${path} ${i}: main answered`);
      }
    }
    await waitFor(() => s.backends.mirror.requests === sent, `the mirror to get ${sent} copies (has ${s.backends.mirror.requests})`);
    t.equal(s.backends.main.requests, sent, 'main got every request once');
    t.ok(
      s.backends.half.requests > sent * 0.3 && s.backends.half.requests < sent * 0.7,
      `the 50% mirror got about half (${s.backends.half.requests}/${sent})`,
    );
    const withBody = s.backends.mirror.seen.filter((x) => x.method === 'POST');
    for (const x of withBody) t.equal(x.body, `body-${x.url.split('/').pop()}`, `mirror copy of ${x.url} carries the body`);
    if (protocol === 'http') t.ok(withBody.length > 0, 'bodies were mirrored');
    // A body over the mirror copy's bound (64 KiB) is forwarded whole but not mirrored.
    const big = 'x'.repeat(100 * 1024);
    const before = s.backends.mirror.requests;
    for (const path of paths as readonly Path[]) {
      if (path === 'fast') continue; // the fast path takes no bodies
      const r = await s.send(path, 'POST', '/big', { 'x-echo': '1' }, big);
      t.equal((JSON.parse(r.body) as { body: string }).body.length, big.length, `${path}: main got the whole big body`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.equal(s.backends.mirror.requests, before, 'no mirror of a body over the bound');
  });

  t.test(`${protocol}: unresolved backends and routes without backends get a 500`, async (t) => {
    const s = await routeSetup(t, ['a'], { protocol });
    await s.setRoutes([
      { ...route(s.cluster.a), path: { type: 'PathPrefix', value: '/none' }, backends: [] },
      {
        ...route(s.cluster.a),
        backends: [
          { cluster: 'missing/svc', weight: 1, unresolved: true },
          { cluster: s.cluster.a, weight: 1 },
        ],
      },
    ]);
    for (const path of paths as readonly Path[]) {
      const none = await s.send(path, 'GET', '/none');
      t.equal(none.status, 500, `${path}: no backends: 500`);
      t.equal(none.headers['x-shoal-error'], 'no-backend', `${path}: x-shoal-error says why`);
      const got: Record<number, number> = {};
      for (let i = 0; i < 200; i++) {
        const r = await s.send(path, 'GET', '/half');
        got[r.status] = (got[r.status] ?? 0) + 1;
        if (r.status === 500) t.equal(r.headers['x-shoal-error'], 'no-backend', `${path}: unresolved share says why`);
      }
      t.ok(got[500] > 60 && got[200] > 60 && got[500] + got[200] === 200, `${path}: half 500, half 200 (${JSON.stringify(got)})`);
    }
  });

  t.test(`${protocol}: route timeouts fire: the whole request (timeoutMs) and one attempt (backendTimeoutMs)`, async (t) => {
    const s = await routeSetup(t, ['a'], { protocol });
    await s.setRoutes([
      { ...route(s.cluster.a), path: { type: 'PathPrefix', value: '/whole' }, timeoutMs: 150 },
      {
        ...route(s.cluster.a),
        path: { type: 'PathPrefix', value: '/attempt' },
        backendTimeoutMs: 150,
        retry: { codes: [503], attempts: 1, backoffMs: 0 },
      },
      { ...route(s.cluster.a), path: { type: 'PathPrefix', value: '/unbounded' }, timeoutMs: 0 },
    ]);
    for (const path of paths as readonly Path[]) {
      let at = performance.now();
      const whole = await s.send(path, 'GET', '/whole', { 'x-delay-ms': '1000' });
      let ms = performance.now() - at;
      t.equal(whole.status, 504, `${path}: timeoutMs: 504`);
      t.equal(whole.headers['x-shoal-error'], 'request-timeout', `${path}: request-timeout`);
      t.ok(ms >= 140 && ms < 800, `${path}: after about 150 ms (${Math.round(ms)})`);
      // The first attempt is slow: cut at 150 ms and retried, the second answers.
      at = performance.now();
      const attempt = await s.send(path, 'GET', '/attempt', {
        'x-fail-key': `${path}-slow`,
        'x-fail-times': '1',
        'x-fail-delay-ms': '1000',
      });
      ms = performance.now() - at;
      t.equal(attempt.status, 200, `${path}: backendTimeoutMs cut the slow attempt, the retry answered`);
      t.ok(ms >= 140 && ms < 800, `${path}: after one attempt's bound (${Math.round(ms)})`);
      const slow = await s.send(path, 'GET', '/unbounded', { 'x-delay-ms': '300' });
      t.equal(slow.status, 200, `${path}: timeoutMs 0: no timeout`);
    }
  });

  t.test(`${protocol}: retry codes are retried, with backoff; others are not`, async (t) => {
    const s = await routeSetup(t, ['a'], { protocol });
    await s.setRoutes([
      { ...route(s.cluster.a), path: { type: 'PathPrefix', value: '/retry' }, retry: { codes: [500, 429], attempts: 2, backoffMs: 100 } },
      { ...route(s.cluster.a), path: { type: 'PathPrefix', value: '/noretry' }, retry: { codes: [429], attempts: 2, backoffMs: 0 } },
      {
        ...route(s.cluster.a),
        path: { type: 'PathPrefix', value: '/slowretry' },
        timeoutMs: 150,
        retry: { codes: [500], attempts: 2, backoffMs: 300 },
      },
    ]);
    for (const path of paths as readonly Path[]) {
      const before = s.backends.a.requests;
      const at = performance.now();
      const r = await s.send(path, 'GET', '/retry', { 'x-fail-key': `${path}-r`, 'x-fail-times': '2', 'x-fail-code': '500' });
      const ms = performance.now() - at;
      t.equal(r.status, 200, `${path}: two 500s retried, the third attempt answered`);
      t.equal(s.backends.a.requests - before, 3, `${path}: three attempts`);
      t.ok(ms >= 190, `${path}: two backoffs of 100 ms (${Math.round(ms)})`);
      const over = await s.send(path, 'GET', '/retry', { 'x-fail-key': `${path}-o`, 'x-fail-times': '5', 'x-fail-code': '429' });
      t.equal(over.status, 429, `${path}: attempts spent: the last answer goes to the client`);
      // The whole request's bound passes while waiting to retry: 504 request-timeout, no further attempt.
      const b = s.backends.a.requests;
      const cut = await s.send(path, 'GET', '/slowretry', { 'x-fail-key': `${path}-s`, 'x-fail-times': '3', 'x-fail-code': '500' });
      t.equal(cut.status, 504, `${path}: timeoutMs passed during the backoff: 504`);
      t.equal(cut.headers['x-shoal-error'], 'request-timeout', `${path}: request-timeout`);
      await new Promise((resolve) => setTimeout(resolve, 400));
      t.equal(s.backends.a.requests - b, 1, `${path}: no attempt after the deadline`);
      const n = s.backends.a.requests;
      const no = await s.send(path, 'GET', '/noretry', { 'x-fail-key': `${path}-n`, 'x-fail-times': '1', 'x-fail-code': '503' });
      t.equal(no.status, 503, `${path}: a code the route does not name is not retried`);
      t.equal(s.backends.a.requests - n, 1, `${path}: one attempt`);
    }
  });
}

t.test('upgrade requests (node:http path): redirects, no-backend 500s and rewrites apply to them too', async (t) => {
  const s = await routeSetup(t, ['a']);
  let upgradedUrl = '';
  s.backends.a.server.on('upgrade', (req, socket) => {
    upgradedUrl = req.url ?? '';
    socket.end('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
  });
  await s.setRoutes([
    {
      ...route(s.cluster.a),
      backends: [],
      path: { type: 'PathPrefix', value: '/old' },
      redirect: { path: { type: 'ReplacePrefixMatch', value: '/new' }, statusCode: 301 },
    },
    { ...route(s.cluster.a), backends: [], path: { type: 'PathPrefix', value: '/none' } },
    {
      ...route(s.cluster.a),
      path: { type: 'PathPrefix', value: '/ws' },
      rewrite: { path: { type: 'ReplacePrefixMatch', value: '/socket' } },
    },
  ]);
  const { connect } = await import('node:net');
  const [host, port] = s.authority.split(':');
  const raw = (target: string) =>
    new Promise<string>((resolve) => {
      const c = connect(Number(port), host);
      let out = '';
      c.on('data', (d) => {
        out += d.toString('latin1');
        if (out.includes('\r\n\r\n')) c.destroy();
      });
      c.on('close', () => resolve(out));
      c.on('error', () => resolve(out));
      c.write(`GET ${target} HTTP/1.1\r\nhost: echo\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n`);
    });
  const rd = await raw('/old/chat');
  t.match(rd, /^HTTP\/1\.1 301 /, 'redirect status');
  t.match(rd, /\r\nlocation: http:\/\/echo\/new\/chat\r\n/i, 'redirect Location');
  const none = await raw('/none');
  t.match(none, /^HTTP\/1\.1 500 /, 'no backend: 500');
  t.match(none, /\r\nx-shoal-error: no-backend\r\n/i, 'x-shoal-error no-backend');
  const up = await raw('/ws/chat');
  t.match(up, /^HTTP\/1\.1 101 /, 'upgraded');
  t.equal(upgradedUrl, '/socket/chat', 'the upstream saw the rewritten path');
});

t.test('a rule whose filters would break the head (a CR LF in a header value) answers 500 and sends nothing', async (t) => {
  const s = await routeSetup(t, ['a']);
  await s.setRoutes([{ ...route(s.cluster.a), requestHeaders: { set: [{ name: 'x-a', value: 'v\r\nx-smuggled: 1' }] } }]);
  for (const path of ['fast', 'node'] as const) {
    const r = await s.send(path, 'GET', '/x');
    t.equal(r.status, 500, `${path}: 500`);
    t.equal(r.headers['x-shoal-error'], 'no-backend', `${path}: x-shoal-error no-backend`);
    t.match(r.body, /filters refused: requestHeaders: the value of x-a/, `${path}: the body says why`);
  }
  t.equal(s.backends.a.requests, 0, 'nothing reached the backend');
});
