// The protocol-neutral pieces of Gateway API filters (proxy/l7/routeFilters.ts), on their own.
import t from 'tap';
import { literalStart } from '../../../proxy/l7/routeTable.ts';
import {
  CompiledHeaderModifier,
  modifyPath,
  queryParam,
  redirectLocation,
  replacePrefix,
  rewriteAuthority,
  unsafeFilters,
} from '../../../proxy/l7/routeFilters.ts';

t.test('ReplacePrefixMatch by whole segments, trailing slashes as the spec says', async (t) => {
  const cases: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/prefix/one/two', '/prefix', '/', '/one/two'],
    ['/strip-prefix', '/strip-prefix', '', '/'],
    ['/strip-prefix/three', '/strip-prefix', '', '/three'],
    ['/any', '/', '/base', '/base/any'],
    ['/', '/', '/base', '/base'],
  ];
  for (const [path, prefix, repl, want] of cases) t.equal(replacePrefix(path, prefix, repl), want, `${path} with ${prefix} -> ${repl}`);
  t.equal(modifyPath('/foo/bar?x=1&y', { type: 'ReplacePrefixMatch', value: '/z' }, '/foo'), '/z/bar?x=1&y', 'the query is kept');
  t.equal(modifyPath('/foo/bar?x=1', { type: 'ReplaceFullPath', value: '/full' }, '/'), '/full?x=1', 'full path, query kept');
});

t.test("redirect Location: absent fields keep the request's; ports per the spec", async (t) => {
  const req = (authority: string, target = '/p') => ({ scheme: 'http', authority, target });
  t.equal(redirectLocation({ statusCode: 302 }, req('echo'), '/'), 'http://echo/p');
  t.equal(
    redirectLocation({ statusCode: 302, scheme: 'https' }, req('echo:8080'), '/'),
    'https://echo/p',
    'scheme set, no port: its well-known port, left out',
  );
  t.equal(redirectLocation({ statusCode: 302, scheme: 'http' }, req('echo:8080'), '/'), 'http://echo/p', 'http: port 80, left out');
  t.equal(redirectLocation({ statusCode: 302, scheme: 'https', port: 443 }, req('echo'), '/'), 'https://echo/p');
  t.equal(
    redirectLocation({ statusCode: 302, scheme: 'https', port: 80 }, req('echo'), '/'),
    'https://echo:80/p',
    "a port that is not the scheme's is shown",
  );
  t.equal(redirectLocation({ statusCode: 302, port: 8083 }, req('echo'), '/'), 'http://echo:8083/p');
  t.equal(
    redirectLocation({ statusCode: 302, hostname: 'example.org' }, req('echo:9000'), '/'),
    'http://example.org:9000/p',
    'no scheme: the port the request was sent to',
  );
  t.equal(
    redirectLocation({ statusCode: 302, scheme: 'ftp' }, req('echo:21'), '/'),
    'ftp://echo:21/p',
    "a scheme without a well-known port: the request's",
  );
  t.equal(redirectLocation({ statusCode: 302, hostname: 'h' }, req('[::1]:8080'), '/'), 'http://h:8080/p', 'IPv6 Host');
  t.equal(
    redirectLocation({ statusCode: 301, path: { type: 'ReplacePrefixMatch', value: '/new' } }, req('echo', '/old/x?q'), '/old'),
    'http://echo/new/x?q',
  );
  t.equal(rewriteAuthority({ hostname: 'other' }, 'svc:8080'), 'other:8080');
  t.equal(rewriteAuthority({ hostname: 'other' }, 'svc'), 'other');
});

t.test('query parameters: decoded, first value when repeated, names exact', async (t) => {
  t.equal(queryParam('a=1&b=2', 'b'), '2');
  t.equal(queryParam('b=1&b=2', 'b'), '1');
  t.equal(queryParam('x=a+b%20c', 'x'), 'a b c');
  t.equal(queryParam('flag&x=1', 'flag'), '');
  t.equal(queryParam('B=1', 'b'), null, 'case-sensitive');
  t.equal(queryParam('bb=1', 'b'), null);
  t.equal(queryParam('my%20key=v', 'my key'), 'v', 'encoded names decoded');
  t.equal(queryParam('x=%zz', 'x'), '%zz', 'a bad escape stays as sent');
  t.equal(queryParam('', 'x'), null);
});

t.test('header modifiers: route then backend; protected names untouched', async (t) => {
  const m = new CompiledHeaderModifier([
    { set: [{ name: 'X-A', value: 'route' }], add: [{ name: 'x-b', value: '1' }], remove: ['x-gone'] },
    { set: [{ name: 'x-b', value: 'backend' }], add: [{ name: 'x-c', value: '2' }], remove: ['content-length', 'x-a'] },
  ]);
  t.same(
    m.applyList(['X-A', 'client', 'x-b', '0', 'x-gone', 'y', 'Content-Length', '5', 'x-keep', 'k']),
    ['Content-Length', '5', 'x-keep', 'k', 'x-b', 'backend', 'x-c', '2'],
    'a later set or remove overrides the earlier one; content-length stays',
  );
  const rec: Record<string, unknown> = { ':path': '/', 'x-c': '1' };
  m.applyRecord(rec);
  t.same(rec, { ':path': '/', 'x-c': ['1', '2'], 'x-b': 'backend' }, 'records: add appends a value');
  t.equal(
    m.applyHead('HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n'),
    'HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-b: backend\r\nx-c: 2\r\n\r\n',
    'head blocks',
  );
  t.ok(
    new CompiledHeaderModifier([
      {
        set: [
          { name: ':authority', value: 'x' },
          { name: 'transfer-encoding', value: 'chunked' },
        ],
      },
    ]).empty,
    'pseudo and framing headers are ignored',
  );
});

t.test("a path regex's literal start, checked before the regex runs, is only what every match starts with", async (t) => {
  const cases: [string, string][] = [
    ['/r13/[0-9]+', '/r13/'],
    ['/index\\.(html|htm)', '/index'],
    ['/a|/b', ''],
    ['/ab?c', '/a'],
    ['/ab*', '/a'],
    ['/abc+', '/abc'],
    ['.*', ''],
    ['/x{2}', '/'],
    ['/[|]x', '/'],
    ['^/x', ''],
  ];
  for (const [re, want] of cases) {
    t.equal(literalStart(re), want, re);
    // Whatever the regex matches starts with it.
    for (const sample of ['/r13/7', '/index.html', '/a', '/b', '/ac', '/abc', '/abcc', '/xx', '/|x', '/x']) {
      if (new RegExp(`^(?:${re})$`).test(sample))
        t.ok(sample.startsWith(want), `${re} matches ${sample}, which starts with ${JSON.stringify(want)}`);
    }
  }
});

t.test('filters that would break the head the sidecar writes are refused, saying which', async (t) => {
  const base = { domains: ['*'], prefix: '/', headers: [], backends: [{ cluster: 'c', weight: 1 }] };
  t.equal(unsafeFilters({ ...base, requestHeaders: { set: [{ name: 'x-a', value: 'fine value\there' }] } }), null);
  t.match(
    unsafeFilters({ ...base, requestHeaders: { set: [{ name: 'x-a', value: 'a\r\nx-injected: 1' }] } }),
    /requestHeaders: the value of x-a/,
  );
  t.match(unsafeFilters({ ...base, responseHeaders: { add: [{ name: 'bad name', value: 'v' }] } }), /not a token/);
  t.match(
    unsafeFilters({ ...base, backends: [{ cluster: 'c', weight: 1, requestHeaders: { remove: ['a:b'] } }] }),
    /backend c requestHeaders/,
  );
  t.match(unsafeFilters({ ...base, rewrite: { path: { type: 'ReplaceFullPath', value: '/a b' } } }), /rewrite path/);
  t.match(unsafeFilters({ ...base, redirect: { hostname: 'evil\r\n', statusCode: 302 } }), /redirect hostname/);
  t.match(unsafeFilters({ ...base, redirect: { scheme: 'ht tp', statusCode: 302 } }), /redirect scheme/);
});
