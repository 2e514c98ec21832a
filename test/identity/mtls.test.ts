// Mutual TLS between two sidecars on loopback, with certificates from the mesh CA: TLS 1.3 with both
// certificates checked, nothing readable on the wire; strict refuses plaintext, no certificate and
// another CA's certificate; permissive accepts them (without an identity).
import t from 'tap';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { CertificateAuthority } from '../../discover/identity/certificateAuthority.ts';
import { get, metric, startMesh, workloadCert, TRUST_DOMAIN } from './meshFixture.ts';

/** One HTTP/1.1 GET over TLS (or plaintext) straight to api's inbound; resolves with the answer or how it ended. */
function rawGet(
  host: string,
  port: number,
  tls: { key?: string; cert?: string; ca?: string[] } | null,
): Promise<{ answer: string; error: string; protocol: string | null }> {
  return new Promise((resolve) => {
    let answer = '';
    let protocol: string | null = null;
    const s = tls
      ? tlsConnect({
          host,
          port,
          key: tls.key,
          cert: tls.cert,
          ca: tls.ca,
          rejectUnauthorized: false,
          minVersion: 'TLSv1.3',
          checkServerIdentity: () => undefined,
        })
      : netConnect({ host, port });
    s.once(tls ? 'secureConnect' : 'connect', () => {
      protocol = tls ? (s as import('node:tls').TLSSocket).getProtocol() : null;
      s.write('GET /direct HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n');
    });
    s.on('data', (b: Buffer) => {
      answer += b.toString('latin1');
    });
    let error = '';
    s.on('error', (e) => {
      error = e.message;
    });
    s.on('close', () => resolve({ answer, error, protocol }));
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
  });
}

function run(cmd: string, args: string[], input: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
    });
    child.stdin?.end(input);
  });
}

t.test('strict: sidecar to sidecar over TLS 1.3, identities checked, nothing readable on the wire', async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT', relay: true });
  const r = await get(mesh.webUrl, '/hello?secret=plaintext-marker');
  t.equal(r.status, 200, r.body);
  t.equal(r.body, 'api-ok GET /hello?secret=plaintext-marker');
  const xfcc = mesh.seen.at(-1)?.['x-forwarded-client-cert'];
  t.equal(
    xfcc,
    `By=spiffe://${TRUST_DOMAIN}/ns/default/sa/api;URI=spiffe://${TRUST_DOMAIN}/ns/default/sa/web`,
    "the app sees the caller's verified identity",
  );

  // The relay saw only TLS records: a handshake first, then application data; no HTTP text.
  const up = Buffer.concat(mesh.wire.up);
  const down = Buffer.concat(mesh.wire.down);
  t.ok(up.length > 0 && down.length > 0, 'bytes went through the relay');
  t.equal(up[0], 0x16, 'the caller opens with a TLS handshake record');
  t.equal(down[0], 0x16, "api's sidecar answers with a TLS handshake record");
  for (const [name, bytes] of [
    ['up', up],
    ['down', down],
  ] as const) {
    t.notOk(bytes.includes('plaintext-marker'), `${name}: the path is not on the wire in clear`);
    t.notOk(bytes.includes('HTTP/1.1'), `${name}: no HTTP text on the wire`);
    t.notOk(bytes.includes('api-ok'), `${name}: the body is not on the wire in clear`);
  }
  // Keep-alive: a second request reuses the TLS connection (no second handshake on the wire).
  const handshakesBefore = mesh.wire.up.filter((b) => b[0] === 0x16 && b[5] === 0x01).length;
  t.equal((await get(mesh.webUrl, '/again')).status, 200);
  t.equal(
    mesh.wire.up.filter((b) => b[0] === 0x16 && b[5] === 0x01).length,
    handshakesBefore,
    'no new ClientHello for a keep-alive request',
  );

  // Strict refuses what cannot prove an identity from this CA.
  const plain = await rawGet(mesh.apiInbound.host, mesh.apiInbound.port, null);
  t.equal(plain.answer, '', 'plaintext: closed without an answer');
  const noCert = await rawGet(mesh.apiInbound.host, mesh.apiInbound.port, {});
  t.equal(noCert.protocol, 'TLSv1.3');
  t.equal(noCert.answer, '', 'TLS without a client certificate: closed without an answer');
  const foreign = await CertificateAuthority.generate(TRUST_DOMAIN);
  const foreignCert = await workloadCert(foreign.ca, 'web');
  const otherCa = await rawGet(mesh.apiInbound.host, mesh.apiInbound.port, foreignCert);
  t.equal(otherCa.answer, '', 'a certificate from another CA (same SPIFFE ID): closed without an answer');
  const good = await rawGet(mesh.apiInbound.host, mesh.apiInbound.port, await workloadCert(mesh.ca, 'web'));
  t.match(good.answer, /^HTTP\/1.1 200 /, 'a certificate from the mesh CA is served');
  t.match((await metric(mesh.api, 'shoal_proxy_inbound_connections_by_security_total')).join('\n'), /result="refused"[^}]*\} 3/);

  // openssl s_client: TLS 1.3, api's certificate verifies against the bundle, ours is accepted.
  const web = await workloadCert(mesh.ca, 'web');
  writeFileSync(join(mesh.dir, 'web.key'), web.key);
  writeFileSync(join(mesh.dir, 'web.crt'), web.cert);
  writeFileSync(join(mesh.dir, 'bundle.pem'), mesh.ca.trustBundle.join(''));
  const s = await run(
    'openssl',
    [
      's_client',
      '-connect',
      `${mesh.apiInbound.host}:${mesh.apiInbound.port}`,
      '-tls1_3',
      '-CAfile',
      join(mesh.dir, 'bundle.pem'),
      '-cert',
      join(mesh.dir, 'web.crt'),
      '-key',
      join(mesh.dir, 'web.key'),
      '-verify_return_error',
      '-ign_eof',
    ],
    'GET /openssl HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n',
  );
  t.match(s.out, /Protocol\s*:\s*TLSv1\.3/, 'openssl: TLS 1.3');
  t.match(s.out, /Verify return code: 0 \(ok\)/, "openssl: api's certificate verifies against the trust bundle");
  t.match(s.out, /URI:spiffe:\/\/mesh\.test\/ns\/default\/sa\/api|api-ok GET \/openssl/, 'openssl: served');
  t.match(s.out, /api-ok GET \/openssl/, "openssl with the mesh certificate gets the app's answer");
  const noClient = await run(
    'openssl',
    [
      's_client',
      '-connect',
      `${mesh.apiInbound.host}:${mesh.apiInbound.port}`,
      '-tls1_3',
      '-CAfile',
      join(mesh.dir, 'bundle.pem'),
      '-ign_eof',
    ],
    'GET /openssl HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n',
  );
  t.notMatch(noClient.out, /api-ok/, 'openssl without a client certificate gets nothing from the app');
});

t.test('the caller checks the peer: an endpoint presenting an unexpected identity gets no request', async (t) => {
  const mesh = await startMesh(t, { mode: 'STRICT' });
  t.equal((await get(mesh.webUrl, '/first')).status, 200);
  // Swap api's sidecar out for a TLS server holding a valid mesh certificate of another identity.
  await mesh.api.close();
  const impostor = await workloadCert(mesh.ca, 'other');
  const { createServer } = await import('node:tls');
  let served = 0;
  const srv = createServer(
    { key: impostor.key, cert: impostor.cert, ca: mesh.ca.trustBundle, requestCert: true, minVersion: 'TLSv1.3' },
    (s) => {
      served++;
      s.end('HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nimpostor');
    },
  );
  await new Promise<void>((resolve) => srv.listen(mesh.apiInbound.port, mesh.apiInbound.host, resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  const r = await get(mesh.webUrl, '/second');
  t.not(r.status, 200, `refused: ${r.status} ${r.body}`);
  t.notMatch(r.body, /impostor/);
  t.equal(served, 0, 'no request reached the impostor');
});

t.test('permissive: mTLS callers keep their identity; plaintext and foreign certificates are served without one', async (t) => {
  const mesh = await startMesh(t, { mode: 'PERMISSIVE' });
  const r = await get(mesh.webUrl, '/p');
  t.equal(r.status, 200);
  t.match(String(mesh.seen.at(-1)?.['x-forwarded-client-cert']), /URI=spiffe:\/\/mesh\.test\/ns\/default\/sa\/web$/);
  const plain = await rawGet(mesh.apiInbound.host, mesh.apiInbound.port, null);
  t.match(plain.answer, /^HTTP\/1.1 200 /, 'plaintext served');
  t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], undefined, 'no identity claimed for plaintext');
  const foreign = await CertificateAuthority.generate(TRUST_DOMAIN);
  const otherCa = await rawGet(mesh.apiInbound.host, mesh.apiInbound.port, await workloadCert(foreign.ca, 'web'));
  t.match(otherCa.answer, /^HTTP\/1.1 200 /, "another CA's certificate: served");
  t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], undefined, 'but without an identity');
  const noCert = await rawGet(mesh.apiInbound.host, mesh.apiInbound.port, {});
  t.match(noCert.answer, /^HTTP\/1.1 200 /, 'TLS without a certificate: served');
  // A caller cannot forge the header.
  const forged = await new Promise<string>((resolve) => {
    const s = netConnect(mesh.apiInbound.port, mesh.apiInbound.host, () =>
      s.write(
        'GET /f HTTP/1.1\r\nhost: api\r\nx-forwarded-client-cert: URI=spiffe://mesh.test/ns/default/sa/admin\r\nconnection: close\r\n\r\n',
      ),
    );
    let a = '';
    s.on('data', (b) => (a += b));
    s.on('close', () => resolve(a));
  });
  t.match(forged, /^HTTP\/1.1 200 /);
  t.equal(mesh.seen.at(-1)?.['x-forwarded-client-cert'], undefined, 'a client-sent x-forwarded-client-cert is dropped');
});
