// Authorization policy (ALLOW) on HTTP/2 and gRPC ports, decided per request behind the mTLS gate:
// only ns/default/sa/web reaches api; another sidecar's identity gets PERMISSION_DENIED (gRPC, a
// @grpc/grpc-js client through its sidecar's outbound h2 listener) or 403 x-shoal-error: denied
// (HTTP/2 and HTTP/1.1 on the h2 port), and nothing of it reaches the app.
import t from 'tap';
import { parseMeshConfig } from '../../shared/meshConfig.ts';
import { echoClient, grpc, unary, type Msg } from '../proxy/h2/grpcFixtures.ts';
import { h2Get, outbound, run, target } from './h2Client.ts';
import { metric, startMesh, TRUST_DOMAIN } from './meshFixture.ts';

const WEB_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/web`;
const OTHER_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/other`;

t.test('ALLOW on http2 and grpc ports takes methods and paths (decided per request); tcp ports sources only', async (t) => {
  for (const protocol of ['http2', 'grpc']) {
    const cfg = parseMeshConfig(
      { base_ports: [{ port: 9090, protocol, options: { ALLOW: 'ns/web/sa/web POST /shoal.test.Echo/' } }] },
      'default',
      'api',
    );
    t.same(
      cfg.ports[0].authz?.rules[0],
      { namespace: 'web', serviceAccount: 'web', methods: ['POST'], prefixes: ['/shoal.test.Echo/'] },
      protocol,
    );
  }
  t.throws(
    () => parseMeshConfig({ base_ports: [{ port: 9090, protocol: 'tcp', options: { ALLOW: 'ns/web/sa/web POST' } }] }, 'default', 'api'),
    /a tcp port can only allow sources/,
  );
});

t.test("gRPC over mTLS: web's calls reach api with its identity; other's end PERMISSION_DENIED", async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT', protocol: 'grpc', allow: 'ns/default/sa/web', other: true });
  const web = echoClient(t, outbound(mesh, 'web'));
  const ok = await unary(web, { data: Buffer.from('hi') });
  t.equal(ok.err, null, ok.err?.message ?? 'the call succeeds');
  t.equal(ok.msg?.server, 'api');
  t.equal(ok.msg?.data.toString(), 'hi');
  t.same(
    mesh.seen.at(-1)?.['x-forwarded-client-cert'],
    `By=spiffe://${TRUST_DOMAIN}/ns/default/sa/api;URI=${WEB_ID}`,
    "the app sees web's verified identity in the call metadata",
  );

  // A bidirectional stream through both sidecars over mTLS.
  const bidi = web.Bidi();
  const echoed: string[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    bidi.on('data', (m: Msg) => echoed.push(m.data.toString()));
    bidi.on('end', resolve);
    bidi.on('error', reject);
  });
  for (const word of ['one', 'two', 'three']) bidi.write({ data: Buffer.from(word) });
  bidi.end();
  await ended;
  t.same(echoed, ['one', 'two', 'three'], 'a bidirectional stream echoes every message');

  const seenBefore = mesh.seen.length;
  const other = echoClient(t, outbound(mesh, 'other'));
  const denied = await unary(other, { data: Buffer.from('let me in') });
  t.equal(denied.err?.code, grpc.status.PERMISSION_DENIED, `PERMISSION_DENIED: ${denied.err?.message}`);
  t.match(denied.err?.details, `denied: ${OTHER_ID} may not POST /shoal.test.Echo/Unary`, 'the status names the caller and the call');
  t.same(denied.err?.metadata.get('x-shoal-error'), ['denied']);
  const deniedStream = other.Bidi();
  const streamErr = await new Promise<grpc.ServiceError>((resolve) => {
    deniedStream.on('error', resolve);
    deniedStream.on('data', () => {});
    deniedStream.write({ data: Buffer.from('x') });
    deniedStream.end();
  });
  t.equal(streamErr.code, grpc.status.PERMISSION_DENIED, 'a stream is refused the same way');
  t.equal(mesh.seen.length, seenBefore, 'nothing from other reached the app');
  t.match((await metric(mesh.api, 'shoal_proxy_errors_total')).join('\n'), /error="denied"[^}]*\} 2/, 'denials counted');
  t.match(
    (await metric(mesh.api, 'shoal_proxy_inbound_connections_by_security_total')).join('\n'),
    /result="mtls"[^}]*\} [2-9]/,
    "both callers came over mTLS: the denial is the policy's, per request",
  );
});

t.test('HTTP/2 port with methods and prefixes: 403 denied for other identities, other methods and paths, and plaintext', async (t) => {
  const mesh = await startMesh(t, { mode: 'PERMISSIVE', protocol: 'http2', allow: 'ns/default/sa/web GET,HEAD /v1/', other: true });
  const ok = await h2Get(outbound(mesh, 'web'), '/v1/items');
  t.equal(ok.status, 200, ok.error || ok.body);
  t.equal(ok.body, 'api-ok GET /v1/items');

  const seenBefore = mesh.seen.length;
  const wrongPath = await h2Get(outbound(mesh, 'web'), '/admin');
  t.equal(wrongPath.status, 403, 'web, but a path the rule does not list');
  t.equal(wrongPath.headers['x-shoal-error'], 'denied');
  t.match(wrongPath.body, `${WEB_ID} may not GET /admin`);
  const wrongMethod = await h2Get(outbound(mesh, 'web'), '/v1/items', { ':method': 'DELETE' });
  t.equal(wrongMethod.status, 403, 'a method the rule does not list');
  const other = await run('curl', ['-sS', '-i', '--http2-prior-knowledge', `http://${outbound(mesh, 'other')}/v1/items`]);
  t.match(other.out, /^HTTP\/2 403/, 'another identity (curl through its sidecar)');
  t.match(other.out, /x-shoal-error: denied/);
  t.match(other.out, `${OTHER_ID} may not GET /v1/items`);
  const otherH1 = await run('curl', ['-sS', '-i', '--http1.1', `http://${outbound(mesh, 'other')}/v1/items`]);
  t.match(otherH1.out, /^HTTP\/1\.1 403/, 'HTTP/1.1 translated to h2 upstream is denied too');
  // Permissive serves plaintext, without an identity, and a policy denies that.
  const plain = await h2Get(target(mesh), '/v1/items');
  t.equal(plain.status, 403);
  t.match(plain.body, 'a caller without a mesh identity may not GET /v1/items');
  const plainH1 = await run('curl', ['-sS', '-i', '--http1.1', `http://${target(mesh)}/v1/items`]);
  t.match(plainH1.out, /^HTTP\/1\.1 403/, 'plaintext HTTP/1.1 on the h2 port');
  t.equal(mesh.seen.length, seenBefore, 'nothing denied reached the app');
  t.match((await metric(mesh.api, 'shoal_proxy_errors_total')).join('\n'), /error="denied"[^}]*\} 6/, 'six denials counted');
});
