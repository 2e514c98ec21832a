// shoal get's ROUTES section: each route's match, what it does, and where it came from.
import t from 'tap';
import { actionText, matchText, routesSection } from '../../cli/get.ts';
import type { Route, Snapshot } from '../../shared/snapshot.ts';

const base: Route = { domains: ['*'], prefix: '/', headers: [], backends: [{ cluster: 'a.default:80', weight: 1 }] };

t.test('matches', async (t) => {
  t.equal(matchText({ ...base, prefix: '/v1', headers: [{ name: 'x', value: '1' }] }), '*/v1 [x=1]', 'a mesh-config route as before');
  t.equal(
    matchText({
      ...base,
      path: { type: 'Exact', value: '/a' },
      method: 'GET',
      headers: [{ name: 'x', value: '^a', type: 'RegularExpression' }],
      query: [{ name: 'q', value: '1' }],
    }),
    'GET path = /a [x~^a] ?q=1',
  );
  t.equal(matchText({ ...base, path: { type: 'PathPrefix', value: '/a' } }), 'path /a*');
  t.equal(matchText({ ...base, path: { type: 'RegularExpression', value: '/a/.*' } }), 'path ~ /a/.*');
});

t.test('actions', async (t) => {
  t.equal(
    actionText({
      ...base,
      backends: [
        { cluster: 'a.default:80', weight: 3 },
        { cluster: 'b.default:80', weight: 1, unresolved: true },
      ],
    }),
    'a.default:80 75%, b.default:80 (unresolved: 500) 25%',
  );
  t.equal(actionText({ ...base, backends: [] }), '500 (no backend)');
  t.equal(
    actionText({
      ...base,
      backends: [],
      redirect: { statusCode: 301, scheme: 'https', hostname: 'x.example', port: 8443, path: { type: 'ReplaceFullPath', value: '/n' } },
    }),
    'redirect 301 https://x.example:8443/n',
  );
  t.equal(
    actionText({
      ...base,
      backends: [
        {
          cluster: 'a.default:80',
          weight: 1,
          requestHeaders: { set: [{ name: 'v', value: '2' }] },
          mirrors: [{ cluster: 's.default:80', percent: 10 }],
        },
      ],
      rewrite: { path: { type: 'ReplacePrefixMatch', value: '/' } },
      requestHeaders: { add: [{ name: 'a', value: 'b' }], remove: ['c'] },
      responseHeaders: { set: [{ name: 'd', value: 'e' }] },
      mirrors: [{ cluster: 's.default:80' }],
      timeoutMs: 0,
      backendTimeoutMs: 500,
      retry: { codes: [503], attempts: 2, backoffMs: 100 },
    }),
    'a.default:80 {request set v: 2; mirror s.default:80 10%}; rewrite path /(+rest); request add a: b; request remove c; response set d: e; mirror s.default:80; timeout none; per-try timeout 500ms; retry 2x on 503 backoff 100ms',
  );
});

t.test("the section: L7 listeners, not their 127.0.0.1 aliases, with each route's source", async (t) => {
  const snap = {
    outbound: [
      { name: '127.0.0.1:80', address: '127.0.0.1', port: 80, protocol: 'http', mode: 'l7', routes: [base] },
      {
        name: 'a:80',
        address: '127.0.0.9',
        port: 80,
        protocol: 'http',
        mode: 'l7',
        routes: [{ ...base, path: { type: 'PathPrefix', value: '/' }, source: 'HTTPRoute default/r rule 0 match 0' }, base],
      },
      { name: 'db:5432', address: '127.0.0.8', port: 5432, protocol: 'tcp', mode: 'l4', routes: [base] },
    ],
  } as unknown as Snapshot;
  t.same(routesSection(snap), [
    '  a:80 (127.0.0.9:80)',
    '    1. path /* -> a.default:80',
    '       from HTTPRoute default/r rule 0 match 0',
    '    2. */ -> a.default:80',
    '       from mesh config',
  ]);
});
