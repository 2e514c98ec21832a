// Authorization policy on api's inbound port (ALLOW): only ns/default/sa/web may reach api. Another
// sidecar's identity gets 403 x-shoal-error: denied (L7) or a closed connection (L4).
import t from 'tap';
import { connect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { parseMeshConfig } from '../../shared/meshConfig.ts';
import { authzAllows, parseAuthzPolicy } from '../../shared/authzPolicy.ts';
import { get, metric, startMesh } from './meshFixture.ts';

t.test('ALLOW parsing: clear errors, wildcards, methods and prefixes', async (t) => {
  const p = parseAuthzPolicy('ns/web/sa/web GET,HEAD /api/ /health; ns/ops/sa/* ; ns/team-*/sa/reader GET', 'here', true);
  t.same(p.rules[0], { namespace: 'web', serviceAccount: 'web', methods: ['GET', 'HEAD'], prefixes: ['/api/', '/health'] });
  const id = (namespace: string, serviceAccount: string) => ({ namespace, serviceAccount });
  t.ok(authzAllows(p, id('web', 'web'), 'GET', '/api/x'));
  t.notOk(authzAllows(p, id('web', 'web'), 'POST', '/api/x'), 'method not listed');
  t.notOk(authzAllows(p, id('web', 'web'), 'GET', '/admin'), 'path not listed');
  t.ok(authzAllows(p, id('ops', 'anyone'), 'DELETE', '/x'), 'namespace-wide wildcard');
  t.ok(authzAllows(p, id('team-a', 'reader'), 'GET', '/x'), 'name prefix wildcard');
  t.notOk(authzAllows(p, id('team-a', 'writer'), 'GET', '/x'));
  t.notOk(authzAllows(p, null, 'GET', '/api/x'), 'no identity matches no rule');
  t.ok(authzAllows(undefined, null, 'GET', '/'), 'no policy: everyone');
  const bad = (allow: string, protocol = 'http') => {
    try {
      parseMeshConfig({ base_ports: [{ port: 8080, protocol, options: { ALLOW: allow } }] }, 'default', 'api');
      return 'accepted';
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.equal(
    bad('web'),
    "app default/api, port 8080: invalid option ALLOW: invalid ALLOW source \"web\": expected ns/<namespace>/sa/<service-account> ('*' or a trailing '*' allowed) or '*'",
  );
  t.match(bad('ns/web/sa/web get'), /"get" is neither an upper-case method nor a path starting with \//);
  t.match(bad('ns/web/sa/web GET', 'tcp'), /a tcp port can only allow sources, not methods or paths/);
  t.match(bad(' ; '), /ALLOW is empty/);
  t.match(bad('ns/web/sa/web'), 'accepted');
  t.throws(
    () => parseMeshConfig({ base_normal: { options: { MTLS_MODE: 'sometimes' } } }, 'default', 'api'),
    /invalid option MTLS_MODE="sometimes": expected PERMISSIVE or STRICT/,
  );
});

t.test('L7: only ns/default/sa/web reaches api; another identity gets 403 denied', async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT', allow: 'ns/default/sa/web GET,POST /v1/', other: true });
  const ok = await get(mesh.webUrl, '/v1/items');
  t.equal(ok.status, 200, ok.body);
  const denied = await get(mesh.otherUrl, '/v1/items');
  t.equal(denied.status, 403);
  t.equal(denied.headers['x-shoal-error'], 'denied');
  t.match(denied.body, /spiffe:\/\/mesh\.test\/ns\/default\/sa\/other may not GET \/v1\/items/);
  const wrongPath = await get(mesh.webUrl, '/admin');
  t.equal(wrongPath.status, 403, 'web, but a path the rule does not list');
  // A request with a body takes the other request path (node:http): the policy holds there too.
  const post = async (url: string, path: string) => {
    const r = await request(`${url}${path}`, { method: 'POST', body: 'x'.repeat(10_000) });
    return { status: r.statusCode, error: r.headers['x-shoal-error'], body: await r.body.text() };
  };
  t.equal((await post(mesh.webUrl, '/v1/items')).status, 200, 'web may POST /v1/');
  const otherPost = await post(mesh.otherUrl, '/v1/items');
  t.equal(otherPost.status, 403);
  t.equal(otherPost.error, 'denied');
  const del = await request(`${mesh.webUrl}/v1/items`, { method: 'DELETE' });
  t.equal(del.statusCode, 403, 'a method the rule does not list');
  await del.body.text();
  // An upgrade (WebSocket) takes a third path (node:http's upgrade event): the same admission holds.
  const upgrade = (url: string) =>
    new Promise<{ status: number; error: unknown }>((resolve, reject) => {
      const req = httpRequest(`${url}/v1/items`, {
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          'sec-websocket-version': '13',
        },
      });
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, error: res.headers['x-shoal-error'] });
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, error: res.headers['x-shoal-error'] });
      });
      req.on('error', reject);
      req.end();
    });
  t.same(await upgrade(mesh.otherUrl), { status: 403, error: 'denied' }, "another identity's upgrade request is denied too");
  t.equal(
    mesh.seen.filter((h) => String(h['x-forwarded-client-cert']).endsWith('/sa/other')).length,
    0,
    'nothing from other reached the app',
  );
  t.match((await metric(mesh.api, 'shoal_proxy_errors_total')).join('\n'), /error="denied"[^}]*\} 5/, 'denials counted');
});

t.test("L4: another identity's connection is closed; web's is served", async (t) => {
  const mesh = await startMesh(t, { mode: 'PERMISSIVE', protocol: 'tcp', allow: 'ns/default/sa/web', other: true });
  const talk = (host: string, port: number) =>
    new Promise<{ echoed: string; closed: boolean }>((resolve) => {
      const s = connect(port, host, () => s.write('ping'));
      let echoed = '';
      const timer = setTimeout(() => {
        s.destroy();
        resolve({ echoed, closed: false });
      }, 3000);
      s.on('data', (b) => {
        echoed += b;
        if (echoed === 'ping') {
          clearTimeout(timer);
          s.end();
          resolve({ echoed, closed: false });
        }
      });
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(timer);
        resolve({ echoed, closed: true });
      });
    });
  const web = await talk(mesh.webOutbound.host, mesh.webOutbound.port);
  t.equal(web.echoed, 'ping', "web's bytes reach the app and come back");
  const other = await talk(mesh.otherOutbound.host, mesh.otherOutbound.port);
  t.equal(other.echoed, '', 'nothing from other reaches the app');
  t.ok(other.closed, "other's connection is closed");
  // Plaintext in permissive mode has no identity: a policy denies it too.
  const plain = await talk(mesh.apiInbound.host, mesh.apiInbound.port);
  t.equal(plain.echoed, '');
  t.match((await metric(mesh.api, 'shoal_proxy_inbound_connections_by_security_total')).join('\n'), /result="denied"[^}]*\} 2/);
});
