// Mutual TLS on HTTP/2 ports: the caller's h2 listener originates TLS 1.3 with ALPN h2 and its
// certificate to a meshed endpoint, checking the peer's SPIFFE ID (a wrong one: 502 naming both,
// nothing sent); the inbound gate of an h2 port refuses plaintext, no certificate and another CA's
// certificate in strict mode and serves them without an identity in permissive mode. Real clients:
// node:http2 (h2c and TLS) and curl.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import { createServer as createNetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { CertificateAuthority } from '../../discover/identity/certificateAuthority.ts';
import { h2Get, outbound, run, target } from './h2Client.ts';
import { metric, startMesh, workloadCert, TRUST_DOMAIN } from './meshFixture.ts';

const WEB_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/web`;
const API_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/api`;

t.test(
  "strict http2 port: the caller's h2 listener speaks TLS 1.3 with ALPN h2; nothing readable on the wire; others refused",
  async (t) => {
    const mesh = await startMesh(t, { mode: 'STRICT', protocol: 'http2', relay: true });

    // node:http2 (h2c, prior knowledge) to web's outbound h2 listener; a forged identity header is dropped.
    const r = await h2Get(outbound(mesh), '/hello?secret=plaintext-marker', {
      'x-forwarded-client-cert': 'URI=spiffe://mesh.test/ns/default/sa/admin',
    });
    t.equal(r.status, 200, r.error || r.body);
    t.equal(r.body, 'api-ok GET /hello?secret=plaintext-marker');
    t.equal(
      mesh.seen.at(-1)?.['x-forwarded-client-cert'],
      `By=${API_ID};URI=${WEB_ID}`,
      'the app sees the verified caller, not the forged header',
    );
    // curl with prior knowledge through the same listener, and HTTP/1.1 translated to an h2 stream.
    const curl = await run('curl', ['-sS', '-i', '--http2-prior-knowledge', `http://${outbound(mesh)}/curl`]);
    t.match(curl.out, /^HTTP\/2 200/, 'curl --http2-prior-knowledge through the mTLS path');
    t.match(curl.out, /api-ok GET \/curl/);
    const h1 = await run('curl', ['-sS', '-i', '--http1.1', `http://${outbound(mesh)}/h1`]);
    t.match(h1.out, /^HTTP\/1\.1 200/);
    t.match(h1.out, /api-ok GET \/h1/);

    // The relay saw TLS only: a ClientHello offering ALPN h2 (and nothing else), no HTTP/2 preface or text in clear.
    const up = Buffer.concat(mesh.wire.up);
    const down = Buffer.concat(mesh.wire.down);
    t.equal(up[0], 0x16, 'the caller opens with a TLS handshake record');
    t.equal(down[0], 0x16, "api's sidecar answers with a TLS handshake record");
    t.ok(up.includes(Buffer.from('0010000500030268 32'.replace(' ', ''), 'hex')), "the ClientHello's ALPN extension lists exactly h2");
    t.notOk(up.includes('http/1.1'), 'no http/1.1 offered by the h2 path');
    for (const [name, bytes] of [
      ['up', up],
      ['down', down],
    ] as const) {
      t.notOk(bytes.includes('PRI * HTTP/2.0'), `${name}: no HTTP/2 preface in clear`);
      t.notOk(bytes.includes('plaintext-marker'), `${name}: the path is not on the wire in clear`);
      t.notOk(bytes.includes('api-ok'), `${name}: the body is not on the wire in clear`);
    }
    // The three requests went over HTTP/2 sessions with both certificates checked (one handshake per session).
    t.match(
      (await metric(mesh.web, 'shoal_proxy_outbound_mtls_total')).join('\n'),
      /result="ok"[^}]*\} [1-9]/,
      'web counted successful mTLS handshakes',
    );

    // Straight to api's inbound h2 port with a mesh certificate: TLS 1.3, ALPN h2, api's certificate
    // verifies against the bundle and names api.
    const web = await workloadCert(mesh.ca, 'web');
    const direct = await h2Get(target(mesh), '/direct', {}, { ...web, ca: mesh.ca.trustBundle });
    t.equal(direct.status, 200, direct.error);
    t.equal(direct.tlsVersion, 'TLSv1.3');
    t.equal(direct.alpn, 'h2');
    t.equal(direct.serverSans, `URI:${API_ID}`, "api's sidecar presents api's SPIFFE ID");
    t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], `By=${API_ID};URI=${WEB_ID}`);
    // Prior knowledge over TLS (no ALPN at all) and HTTP/1.1 over TLS (ALPN http/1.1) reach the same port.
    const noAlpn = await h2Get(target(mesh), '/no-alpn', {}, { ...web, ca: mesh.ca.trustBundle, ALPNProtocols: [] });
    t.equal(noAlpn.status, 200, `h2 without ALPN: ${noAlpn.error}`);
    writeFileSync(join(mesh.dir, 'web.key'), web.key);
    writeFileSync(join(mesh.dir, 'web.crt'), web.cert);
    // openssl s_client offering only h2: TLS 1.3, ALPN h2, api's certificate verifies against the bundle.
    writeFileSync(join(mesh.dir, 'bundle.pem'), mesh.ca.trustBundle.join(''));
    const s = await run('openssl', [
      's_client',
      '-connect',
      target(mesh),
      '-tls1_3',
      '-alpn',
      'h2',
      '-CAfile',
      join(mesh.dir, 'bundle.pem'),
      '-cert',
      join(mesh.dir, 'web.crt'),
      '-key',
      join(mesh.dir, 'web.key'),
      '-verify_return_error',
    ]);
    t.match(s.out, /New, TLSv1\.3, Cipher/, 'openssl: TLS 1.3');
    t.match(s.out, /ALPN protocol: h2/, 'openssl: ALPN h2 negotiated');
    t.match(s.out, /Verify return code: 0 \(ok\)/, "openssl: api's certificate verifies against the trust bundle");
    // curl cannot check a URI SAN (-k); the chain is checked by node:http2 and openssl above.
    const curlTls = await run('curl', [
      '-sS',
      '-k',
      '--http2',
      '--cert',
      join(mesh.dir, 'web.crt'),
      '--key',
      join(mesh.dir, 'web.key'),
      '-w',
      '\nversion=%{http_version}',
      `https://${target(mesh)}/curl-tls`,
    ]);
    t.match(curlTls.out, /api-ok GET \/curl-tls\nversion=2/, 'curl --http2 with the mesh certificate: served over h2 (ALPN)');
    const curlH1 = await run('curl', [
      '-sS',
      '-k',
      '--http1.1',
      '--cert',
      join(mesh.dir, 'web.crt'),
      '--key',
      join(mesh.dir, 'web.key'),
      '-w',
      '\nversion=%{http_version}',
      `https://${target(mesh)}/curl-h1`,
    ]);
    t.match(curlH1.out, /api-ok GET \/curl-h1\nversion=1\.1/, 'HTTP/1.1 over mTLS on the h2 port');

    // Strict refuses what proves no identity from this CA; the app sees none of it.
    const seenBefore = mesh.seen.length;
    const plain = await h2Get(target(mesh), '/plain');
    t.equal(plain.status, 0, `plaintext h2c: no answer (${plain.error})`);
    const curlPlain = await run('curl', ['-sS', '--http2-prior-knowledge', `http://${target(mesh)}/curl-plain`]);
    t.not(curlPlain.code, 0, `curl h2c: refused (${curlPlain.out.trim()})`);
    const noCert = await h2Get(target(mesh), '/no-cert', {}, { ca: mesh.ca.trustBundle });
    t.equal(noCert.status, 0, `TLS without a client certificate: no answer (${noCert.error})`);
    const foreign = await CertificateAuthority.generate(TRUST_DOMAIN);
    const otherCa = await h2Get(target(mesh), '/other-ca', {}, { ...(await workloadCert(foreign.ca, 'web')), ca: mesh.ca.trustBundle });
    t.equal(otherCa.status, 0, `a certificate from another CA (same SPIFFE ID): no answer (${otherCa.error})`);
    t.equal(mesh.seen.length, seenBefore, 'nothing refused reached the app');
    t.match(
      (await metric(mesh.api, 'shoal_proxy_inbound_connections_by_security_total')).join('\n'),
      /result="refused"[^}]*\} 4/,
      'four refusals counted',
    );
  },
);

t.test(
  'permissive http2 port: mTLS callers keep their identity; plaintext, no certificate and another CA are served without one',
  async (t) => {
    const mesh = await startMesh(t, { mode: 'PERMISSIVE', protocol: 'http2' });
    const via = await h2Get(outbound(mesh), '/via-web');
    t.equal(via.status, 200, via.error);
    t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], `By=${API_ID};URI=${WEB_ID}`);

    const plain = await h2Get(target(mesh), '/plain', { 'x-forwarded-client-cert': `URI=${WEB_ID}` });
    t.equal(plain.status, 200, `plaintext h2c served: ${plain.error}`);
    t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], undefined, 'no identity for plaintext, and a forged header is dropped');
    const curlPlain = await run('curl', ['-sS', '--http2-prior-knowledge', `http://${target(mesh)}/curl-plain`]);
    t.equal(curlPlain.out, 'api-ok GET /curl-plain', 'curl h2c served');
    const noCert = await h2Get(target(mesh), '/no-cert', {}, { ca: mesh.ca.trustBundle });
    t.equal(noCert.status, 200, `TLS without a certificate served: ${noCert.error}`);
    t.equal(noCert.alpn, 'h2');
    t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], undefined);
    const foreign = await CertificateAuthority.generate(TRUST_DOMAIN);
    const otherCa = await h2Get(target(mesh), '/other-ca', {}, { ...(await workloadCert(foreign.ca, 'web')), ca: mesh.ca.trustBundle });
    t.equal(otherCa.status, 200, `another CA's certificate served: ${otherCa.error}`);
    t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], undefined, 'but without an identity');
    const m = (await metric(mesh.api, 'shoal_proxy_inbound_connections_by_security_total')).join('\n');
    t.match(m, /result="plaintext"[^}]*\} [4-9]/, 'plaintext, no-certificate and foreign callers counted as plaintext');
    t.match(m, /result="mtls"[^}]*\} [1-9]/);
  },
);

t.test('the h2 caller checks the peer: an endpoint presenting another identity gets no request; 502 names both', async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT', protocol: 'http2' });
  t.equal((await h2Get(outbound(mesh), '/first')).status, 200);
  // Swap api's sidecar for an HTTP/2 TLS server holding a valid mesh certificate of another identity.
  await mesh.api.close();
  const impostor = await workloadCert(mesh.ca, 'other');
  let sessions = 0;
  let streams = 0;
  const srv = createSecureServer({
    key: impostor.key,
    cert: impostor.cert,
    ca: mesh.ca.trustBundle,
    requestCert: true,
    minVersion: 'TLSv1.3',
  });
  srv.on('session', () => sessions++);
  srv.on('stream', (s) => {
    streams++;
    s.respond({ ':status': 200 });
    s.end('impostor');
  });
  srv.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => srv.listen(mesh.apiInbound.port, mesh.apiInbound.host, resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  t.equal(new X509Certificate(impostor.cert).subjectAltName, `URI:spiffe://${TRUST_DOMAIN}/ns/default/sa/other`);

  const r = await h2Get(outbound(mesh), '/second');
  t.equal(r.status, 502, r.error || r.body);
  t.equal(r.headers['x-shoal-error'], 'upstream-reset');
  t.match(
    r.body,
    `presented spiffe://${TRUST_DOMAIN}/ns/default/sa/other, expected ${API_ID}`,
    'the answer names what was presented and what was expected',
  );
  t.notMatch(r.body, /impostor/);
  const h1 = await run('curl', ['-sS', '-i', '--http1.1', `http://${outbound(mesh)}/third`]);
  t.match(h1.out, /^HTTP\/1\.1 502/, 'an HTTP/1.1 caller on the h2 listener too');
  t.match(h1.out, /expected spiffe:\/\/mesh\.test\/ns\/default\/sa\/api/);
  const call = await h2Get(outbound(mesh), '/shoal.test.Echo/Unary', {
    ':method': 'POST',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  t.equal(call.status, 200, 'a gRPC call gets a gRPC status');
  t.equal(call.headers['grpc-status'], '14', 'UNAVAILABLE');
  t.match(
    decodeURIComponent(String(call.headers['grpc-message'])),
    `presented spiffe://${TRUST_DOMAIN}/ns/default/sa/other, expected ${API_ID}`,
  );
  t.equal(streams, 0, 'no request reached the impostor');
  t.equal(sessions, 0, 'not even an HTTP/2 session: the handshake failed first');
  t.match((await metric(mesh.web, 'shoal_proxy_outbound_mtls_total')).join('\n'), /result="failed"[^}]*\} [1-9]/);
});

t.test('a peer that stalls mid-handshake fails its session after the handshake bound instead of holding every stream', async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT', protocol: 'http2', dependencyOptions: 'RetryAttempts: 0, RequestTimeoutMS: 30000' });
  await mesh.api.close();
  // Accepts TCP, reads the ClientHello, never answers.
  const sockets: Socket[] = [];
  let closedByCaller = 0;
  const stall = createNetServer((s) => {
    sockets.push(s);
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => closedByCaller++);
  });
  await new Promise<void>((resolve) => stall.listen(mesh.apiInbound.port, mesh.apiInbound.host, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        stall.close(() => resolve());
      }),
  );
  const started = performance.now();
  const r = await h2Get(outbound(mesh), '/stalled', {}, null, 25_000);
  const ms = performance.now() - started;
  t.equal(r.status, 502, r.error || r.body);
  t.equal(r.headers['x-shoal-error'], 'upstream-reset');
  t.match(r.body, /TLS handshake with [\d.]+:\d+ not finished within 10000 ms/);
  t.ok(ms >= 9000 && ms < 25_000, `failed after the handshake bound, well before RequestTimeoutMS (${ms.toFixed(0)} ms)`);
  t.equal(sockets.length, 1, 'one connection tried');
  t.equal(closedByCaller, 1, 'and given up by the caller');
});
