// A small mesh on loopback for the identity tests: one mesh CA shared by two discover instances (so
// two caller sidecars can each bind their own outbound address), the `api` app behind its sidecar
// (inbound on a sidecar listen port), `web` and `other` calling it through theirs. Optionally a
// byte-recording TCP relay sits on the wire between the callers and api's sidecar. The api app
// speaks HTTP/1.1, TCP (echo), h2c (http2) or gRPC (a @grpc/grpc-js Echo server) as asked.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2cServer } from 'node:http2';
import { connect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import type { Test } from 'tap';
import { request } from 'undici';
import { startDiscover, type Discover } from '../../discover/main.ts';
import { CertificateAuthority } from '../../discover/identity/certificateAuthority.ts';
import { startProxy, type Proxy } from '../../proxy/main.ts';
import { createCsr } from '../../proxy/tls/csr.ts';
import { createLogger } from '../../shared/log.ts';
import { freePort, randomLoopback } from '../proxy/fixtures.ts';
import { Echo, grpc, type Msg } from '../proxy/h2/grpcFixtures.ts';

export const TRUST_DOMAIN = 'mesh.test';

export interface MeshOptions {
  /** api's MTLS_MODE. */
  mode?: 'STRICT' | 'PERMISSIVE';
  /** api's ALLOW option. */
  allow?: string;
  /** api's protocol: http (L7), tcp (L4: the app echoes), http2 (an h2c app) or grpc (a gRPC Echo app). */
  protocol?: 'http' | 'tcp' | 'http2' | 'grpc';
  certTtlMs?: number;
  /** Put a byte-recording relay between the callers and api's sidecar. */
  relay?: boolean;
  /** Start the `other` caller too. */
  other?: boolean;
  /** Options of the callers' dependency on api (YAML flow map body, e.g. `RetryAttempts: 0`). */
  dependencyOptions?: string;
}

export interface Mesh {
  ca: CertificateAuthority;
  discovers: Discover[];
  api: Proxy;
  web: Proxy;
  other: Proxy | null;
  /** api's sidecar inbound (TLS or plaintext). */
  apiInbound: { host: string; port: number };
  /** Where web's app dials api (web's sidecar outbound). */
  webUrl: string;
  otherUrl: string;
  webOutbound: { host: string; port: number };
  otherOutbound: { host: string; port: number };
  /** Requests the api app saw (headers; gRPC: the call's metadata). */
  seen: IncomingMessage['headers'][];
  /** Bytes the relay carried, caller to api and back. */
  wire: { up: Buffer[]; down: Buffer[] };
  tokensFile: string;
  dir: string;
}

/** A certificate for `serviceAccount` in namespace default from the fixture's CA (key PEM in memory). */
export async function workloadCert(
  ca: CertificateAuthority,
  serviceAccount: string,
  ttlMs = 3_600_000,
): Promise<{ key: string; cert: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const uri = `spiffe://${ca.trustDomain}/ns/default/sa/${serviceAccount}`;
  const issued = await ca.sign(createCsr(privateKey, publicKey, uri), { namespace: 'default', serviceAccount }, ttlMs);
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certificate };
}

async function listen(server: Server, host: string, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** A listen port in the sidecar range not in use on this address. */
async function freeListenPort(host: string): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 65301 + Math.floor(Math.random() * 100);
    const s = createNetServer();
    try {
      await listen(s, host, port);
      await new Promise<void>((resolve) => s.close(() => resolve()));
      return port;
    } catch {
      // taken: try another
    }
  }
  throw new Error('no free listen port in 65301-65400');
}

export async function startMesh(t: Test, o: MeshOptions = {}): Promise<Mesh> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-mesh-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = createLogger('test', process.env.SHOAL_TEST_LOG ?? 'silent');
  const protocol = o.protocol ?? 'http';
  const seen: IncomingMessage['headers'][] = [];

  // The api app on 127.0.0.1 (where its sidecar forwards inbound traffic).
  const appPort = await freePort();
  if (protocol === 'grpc') {
    const server = new grpc.Server();
    server.addService(Echo.service, {
      Unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
        seen.push(call.metadata.getMap() as IncomingMessage['headers']);
        cb(null, { server: 'api', data: call.request.data, delayMs: 0 });
      },
      Bidi: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
        seen.push(call.metadata.getMap() as IncomingMessage['headers']);
        call.on('data', (m: Msg) => call.write({ server: 'api', data: m.data, delayMs: 0 }));
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
    } as grpc.UntypedServiceImplementation);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${appPort}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    t.teardown(() => server.forceShutdown());
  } else if (protocol === 'http2') {
    const h2 = createH2cServer();
    h2.on('stream', (stream, headers) => {
      seen.push(headers);
      stream.on('error', () => {});
      stream.resume();
      stream.on('end', () => {
        const body = `api-ok ${headers[':method']} ${headers[':path']}`;
        stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
        stream.end(body);
      });
    });
    const sessions = new Set<import('node:http2').ServerHttp2Session>();
    h2.on('session', (s) => {
      sessions.add(s);
      s.once('close', () => sessions.delete(s));
    });
    await listen(h2 as unknown as Server, '127.0.0.1', appPort);
    t.teardown(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sessions) s.destroy();
          h2.close(() => resolve());
        }),
    );
  } else {
    let app: Server;
    if (protocol === 'http') {
      app = createServer((req: IncomingMessage, res: ServerResponse) => {
        seen.push(req.headers);
        req.resume();
        req.on('end', () => {
          const body = `api-ok ${req.method} ${req.url}`;
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
      });
    } else {
      app = createNetServer((s: Socket) => s.pipe(s));
    }
    await listen(app, '127.0.0.1', appPort);
    t.teardown(
      () =>
        new Promise<void>((resolve) => {
          (app as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
          app.close(() => resolve());
        }),
    );
  }

  const apiInboundHost = randomLoopback();
  const listenPort = await freeListenPort(apiInboundHost);
  const wire = { up: [] as Buffer[], down: [] as Buffer[] };
  let endpointHost = apiInboundHost;
  if (o.relay) {
    // Same listen port number on its own address, so the endpoint still looks like a sidecar's.
    endpointHost = randomLoopback();
    const relay = createNetServer((client: Socket) => {
      const up = connect(listenPort, apiInboundHost);
      client.on('data', (b: Buffer) => wire.up.push(Buffer.from(b)));
      up.on('data', (b: Buffer) => wire.down.push(Buffer.from(b)));
      client.pipe(up).pipe(client);
      client.on('error', () => up.destroy());
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
      up.on('close', () => client.destroy());
    });
    await listen(relay, endpointHost, listenPort);
    t.teardown(() => new Promise<void>((resolve) => relay.close(() => resolve())));
  }

  const svcPort = await freePort();
  const webAddr = randomLoopback();
  const otherAddr = randomLoopback();
  const tokensFile = join(dir, 'tokens.yaml');
  writeFileSync(
    tokensFile,
    `tokens:
  - { token: api-token, namespace: default, serviceAccount: api }
  - { token: web-token, namespace: default, serviceAccount: web }
  - { token: other-token, namespace: default, serviceAccount: other }
`,
  );
  const apiOptions = o.allow ? `, options: { ALLOW: ${JSON.stringify(o.allow)} }` : '';
  const apiApp = `
  - name: api
    config:
      base_ports: [{ port: ${appPort}, listen_port: ${listenPort}, protocol: ${protocol}${apiOptions} }]
      base_normal: { options: { MTLS_MODE: ${o.mode ?? 'STRICT'} } }`;
  const topology = (address: string, caller: string) => `
services:
  - name: api
    address: ${address}
    ports: [{ port: ${svcPort}, protocol: ${protocol} }]
    endpoints: [${endpointHost}:${listenPort}]
apps:${apiApp}
  - name: ${caller}
    config:
      base_services: [{ depend_service_alias: api, port: ${svcPort}, protocol: ${protocol}, options: { ${o.dependencyOptions ?? ''} } }]
`;
  const { ca } = await CertificateAuthority.generate(TRUST_DOMAIN);
  const discovers: Discover[] = [];
  for (const [i, caller] of (o.other ? ['web', 'other'] : ['web']).entries()) {
    const file = join(dir, `topology-${caller}.yaml`);
    writeFileSync(file, topology(i === 0 ? webAddr : otherAddr, caller));
    const d = await startDiscover({
      staticFile: file,
      host: '127.0.0.1',
      port: 0,
      log,
      identity: { trustDomain: TRUST_DOMAIN, ca, tokensFile, certTtlMs: o.certTtlMs ?? 3_600_000 },
    });
    t.teardown(() => d.close());
    discovers.push(d);
  }

  const sidecar = async (d: Discover, app: string, inbound: string) => {
    const tokenFile = join(dir, `${app}.token`);
    writeFileSync(tokenFile, `${app}-token\n`);
    const p = await startProxy({
      discoverUrl: `${d.url}/v1/resources/default/${app}/mesh`,
      stateFile: join(dir, `${app}.state.json`),
      tokenFile,
      adminHost: '127.0.0.1',
      adminPort: 0,
      inboundAddress: inbound,
      drainTimeoutMs: 1000,
      log,
    });
    t.teardown(() => p.close());
    await p.whenReady();
    return p;
  };
  const api = await sidecar(discovers[0], 'api', apiInboundHost);
  const web = await sidecar(discovers[0], 'web', randomLoopback());
  const other = o.other ? await sidecar(discovers[1], 'other', randomLoopback()) : null;
  return {
    ca,
    discovers,
    api,
    web,
    other,
    seen,
    wire,
    tokensFile,
    dir,
    apiInbound: { host: apiInboundHost, port: listenPort },
    webOutbound: { host: webAddr, port: svcPort },
    otherOutbound: { host: otherAddr, port: svcPort },
    webUrl: `http://${webAddr}:${svcPort}`,
    otherUrl: `http://${otherAddr}:${svcPort}`,
  };
}

/** GET through a sidecar; never throws for HTTP errors. */
export async function get(url: string, path = '/'): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const res = await request(`${url}${path}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

export async function metric(p: Proxy, name: string): Promise<string[]> {
  const res = await request(`http://127.0.0.1:${p.adminPort}/metrics`);
  return (await res.body.text()).split('\n').filter((l) => l.startsWith(name));
}
