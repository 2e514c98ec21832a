// The mesh CA on discover: CSRs signed for the identity a token proves; bad CSRs, expired tokens and
// tokens for another namespace refused with a clear error and nothing signed.
import t from 'tap';
import { generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startDiscover } from '../../discover/main.ts';
import { CertificateAuthority } from '../../discover/identity/certificateAuthority.ts';
import { createLogger } from '../../shared/log.ts';
import { createCsr } from '../../proxy/tls/csr.ts';
import { kubeForFile } from '../lib/kube.ts';
import { Api, serviceAccountToken } from '../discover/kubernetes/realKube.ts';
import { renderSnapshot } from '../../cli/get.ts';

const TOPOLOGY = `
services:
  - name: api
    ports: [{ port: 8080, protocol: http }]
    endpoints: [127.0.0.1:65301, 10.0.0.9:8080]
apps:
  - name: web
    config:
      base_ports: [{ port: 8080, protocol: http }]
      base_services: [{ depend_service_alias: api, port: 8080, protocol: http }]
  - name: api
    config:
      base_ports: [{ port: 8080, protocol: http, options: { ALLOW: "ns/default/sa/web GET /v1/" } }]
      base_normal: { options: { MTLS_MODE: STRICT } }
`;

async function csrFor(uri: string): Promise<string> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsr(privateKey, publicKey, uri);
}

async function post(url: string, token: string | null, body: unknown) {
  const res = await request(`${url}/v1/identity/csr`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, string & string[]> };
}

t.test('static mode: tokens file, signing, refusals', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-ca-'));
  writeFileSync(join(dir, 'topology.yaml'), TOPOLOGY);
  writeFileSync(
    join(dir, 'tokens.yaml'),
    `tokens:
  - { token: web-token, namespace: default, serviceAccount: web }
  - { token: old-token, namespace: default, serviceAccount: web, expires: "2020-01-01T00:00:00Z" }
  - { token: other-ns, namespace: other, serviceAccount: web }
`,
  );
  const { ca } = await CertificateAuthority.generate('mesh.test');
  const d = await startDiscover({
    staticFile: join(dir, 'topology.yaml'),
    host: '127.0.0.1',
    port: 0,
    log: createLogger('discover', 'silent'),
    identity: { trustDomain: 'mesh.test', ca, tokensFile: join(dir, 'tokens.yaml'), certTtlMs: 3_600_000 },
  });
  t.teardown(() => d.close());

  const good = await post(d.url, 'web-token', { csr: await csrFor('spiffe://mesh.test/ns/default/sa/web') });
  t.equal(good.status, 200, JSON.stringify(good.body));
  t.equal(good.body.spiffeId, 'spiffe://mesh.test/ns/default/sa/web');
  const cert = new X509Certificate(good.body.certificate);
  t.equal(cert.subjectAltName, 'URI:spiffe://mesh.test/ns/default/sa/web');
  t.ok(cert.verify(new X509Certificate(ca.certPem).publicKey), 'signed by the CA');
  t.ok(Date.parse(cert.validTo) - Date.now() <= 3_600_000 + 1000, 'short-lived as asked');
  t.same(good.body.trustBundle, [ca.certPem]);
  t.equal(ca.issued, 1);

  const bad = await post(d.url, 'web-token', { csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' });
  t.equal(bad.status, 400);
  t.match(bad.body.message, /bad CSR: not a PEM PKCS#10 certificate request.*nothing signed/);
  const notPem = await post(d.url, 'web-token', { csr: 'hello' });
  t.equal(notPem.status, 400);
  t.match(notPem.body.message, /no PEM block "CERTIFICATE REQUEST"/);
  // A CSR whose signature does not match its key: proof of possession fails.
  const forged = (await csrFor('spiffe://mesh.test/ns/default/sa/web')).split('\n');
  const der = Buffer.from(forged.slice(1, -2).join(''), 'base64');
  der[der.length - 5] ^= 0xff;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  const pop = await post(d.url, 'web-token', { csr: tampered });
  t.equal(pop.status, 400);
  t.match(pop.body.message, /bad CSR/);

  const expired = await post(d.url, 'old-token', { csr: await csrFor('spiffe://mesh.test/ns/default/sa/web') });
  t.equal(expired.status, 401);
  t.match(expired.body.message, /token refused: the token expired at 2020-01-01T00:00:00Z; nothing signed/);
  const unknown = await post(d.url, 'nope', { csr: await csrFor('spiffe://mesh.test/ns/default/sa/web') });
  t.equal(unknown.status, 401);
  const none = await post(d.url, null, { csr: await csrFor('spiffe://mesh.test/ns/default/sa/web') });
  t.equal(none.status, 401);
  t.match(none.body.message, /bearer token/);

  const otherNs = await post(d.url, 'other-ns', { csr: await csrFor('spiffe://mesh.test/ns/default/sa/web') });
  t.equal(otherNs.status, 403);
  t.equal(
    otherNs.body.message,
    'CSR asks for spiffe://mesh.test/ns/default/sa/web, but the token is for spiffe://mesh.test/ns/other/sa/web: refused; nothing signed',
  );
  const dnsName = await post(d.url, 'web-token', { csr: await csrFor('spiffe://mesh.test/ns/default/sa/api') });
  t.equal(dnsName.status, 403);
  t.equal(ca.issued, 1, 'nothing signed by any refusal');
  const metrics = await (await request(`${d.url}/metrics`)).body.text();
  t.match(metrics, /shoal_discover_certificate_requests_total\{result="signed"[^}]*\} 1/);
  t.match(metrics, /shoal_discover_certificate_requests_total\{result="forbidden"[^}]*\} 2/);
  t.match(metrics, /shoal_discover_certificate_requests_total\{result="bad-csr"[^}]*\} 3/);

  // The snapshots carry identity.
  const api = (await (await request(`${d.url}/v2/snapshot/default/api`)).body.json()) as import('../../shared/snapshot.ts').Snapshot;
  t.equal(api.identity?.spiffeId, 'spiffe://mesh.test/ns/default/sa/api');
  t.equal(api.identity?.mtlsMode, 'strict');
  t.same(api.identity?.trustBundle, [ca.certPem]);
  t.same(api.inbound[0].authz, { rules: [{ namespace: 'default', serviceAccount: 'web', methods: ['GET'], prefixes: ['/v1/'] }] });
  const web = (await (await request(`${d.url}/v2/snapshot/default/web`)).body.json()) as import('../../shared/snapshot.ts').Snapshot;
  t.equal(web.identity?.mtlsMode, 'permissive');
  const cluster = web.clusters.find((c) => c.service === 'api')!;
  t.same(cluster.peerIdentities, ['spiffe://mesh.test/ns/default/sa/api']);
  t.same(
    cluster.endpoints.map((e) => [e.port, e.meshed ?? false]),
    [
      [8080, false],
      [65301, true],
    ],
    'sidecar listen ports are meshed, others not',
  );
  // shoal get shows identity, mode and policy.
  const shown = renderSnapshot(api);
  t.match(shown, /IDENTITY\n  spiffe:\/\/mesh\.test\/ns\/default\/sa\/api   MTLS strict   TRUST DOMAIN mesh\.test   ROOTS 1/);
  t.match(shown, /policy inbound:\d+ \(listen \d+\): ns\/default\/sa\/web GET \/v1\//);
  const shownWeb = renderSnapshot(web);
  t.match(shownWeb, /MTLS permissive/);
  t.match(shownWeb, /policy inbound:8080 \(listen \d+\): allow all/);
  t.match(shownWeb, /peer api\.default:8080: mtls, expects spiffe:\/\/mesh\.test\/ns\/default\/sa\/api/);
  t.match(shownWeb, /127\.0\.0\.1:65301 \(mtls\)/);
  const bundle = (await (await request(`${d.url}/v1/identity/bundle`)).body.json()) as { trustBundle: string[] };
  t.same(bundle.trustBundle, [ca.certPem]);
});

t.test('CA from a Secret-like directory; a mismatched key is refused', async (t) => {
  const { ca, keyPem } = await CertificateAuthority.generate('mesh.test');
  const other = await CertificateAuthority.generate('mesh.test');
  const loaded = CertificateAuthority.load('mesh.test', ca.certPem, keyPem, other.ca.certPem);
  t.same(loaded.trustBundle, [ca.certPem, other.ca.certPem], 'old roots stay trusted during a rotation');
  t.throws(() => CertificateAuthority.load('mesh.test', ca.certPem, other.keyPem), /CA key does not match the CA certificate/);
  t.throws(() => CertificateAuthority.load('Bad Domain', ca.certPem, keyPem), /invalid trust domain/);
});

// The Kubernetes test starts a control plane: 20-60 s on a loaded 2-core machine, with tap's 120 s for the whole file.
t.setTimeout(240_000);

t.test('kubernetes mode: the real TokenReview decides; expired and foreign tokens refused', async (t) => {
  // A control plane of its own, for this test only (the file's other tests need none, and run without Go).
  const kube = kubeForFile(t, import.meta.filename);
  if (!kube) return;
  const k = await kube.up();
  const api = new Api(k);
  await api.namespace('ops');
  // Service-account tokens from the API server's TokenRequest, audience shoal.
  const webSa = await serviceAccountToken(api, 'default', 'web');
  const opsSa = await serviceAccountToken(api, 'ops', 'web');
  // TokenRequest gives at least 10 minutes: an expired token is web's own, its times moved an hour back and
  // signed again with the cluster's service-account key, as the API server would have signed it then.
  const saKey = readFileSync(join(k.cluster.dir, 'sa.key'), 'utf8');
  const expiredSa = resigned(webSa, saKey, 7200);
  const { ca } = await CertificateAuthority.generate('cluster.local');
  const d = await startDiscover({
    kubernetes: { kubeconfigFile: k.kubeconfig, tokenAudience: 'shoal' },
    host: '127.0.0.1',
    port: 0,
    log: createLogger('discover', 'silent'),
    identity: { trustDomain: 'cluster.local', ca, tokenAudience: 'shoal' },
  });
  t.teardown(() => d.close());
  await d.ready;
  const want = 'spiffe://cluster.local/ns/default/sa/web';
  const ok = await post(d.url, webSa, { csr: await csrFor(want) });
  t.equal(ok.status, 200, `web's TokenRequest token gets a certificate${ok.status === 200 ? '' : `: ${JSON.stringify(ok.body)}`}`);
  t.equal(ok.body.spiffeId, want);
  // The same token signed again without moving its times is taken: the refusal below is the expiry's.
  const control = await post(d.url, resigned(webSa, saKey, 0), { csr: await csrFor(want) });
  t.equal(
    control.status,
    200,
    `a token signed again by the test is accepted when current${control.status === 200 ? '' : `: ${JSON.stringify(control.body)}`}`,
  );
  const expired = await post(d.url, expiredSa, { csr: await csrFor(want) });
  t.equal(expired.status, 401);
  t.match(expired.body.message, /token refused: TokenReview did not authenticate the token/);
  const foreign = await post(d.url, opsSa, { csr: await csrFor(want) });
  t.equal(foreign.status, 403);
  t.match(foreign.body.message, /but the token is for spiffe:\/\/cluster.local\/ns\/ops\/sa\/web: refused; nothing signed/);
  t.equal(ca.issued, 2, 'only the two current tokens got certificates');
});

/** TOKEN (an ES256 JWT) with iat, nbf and exp moved SHIFTS seconds back, signed again with KEY. */
function resigned(token: string, key: string, shiftS: number): string {
  const [head, body] = token.split('.');
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
  for (const c of ['iat', 'nbf', 'exp']) if (typeof claims[c] === 'number') claims[c] -= shiftS;
  const input = `${head}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}
