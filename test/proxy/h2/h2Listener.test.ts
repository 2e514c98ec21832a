// The h2 listener with curl and node:http2: h2c (prior knowledge) and HTTP/1.1 on one http2 port,
// both sent upstream over HTTP/2; made-up errors as gRPC statuses; the sidecar's own deadline
// (grpc-timeout, capped by RequestTimeoutMS); inbound h2c to the app.
import { execFile } from 'node:child_process';
import { connect, createServer, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { freePort, randomLoopback, service, startSidecar } from '../fixtures.ts';

const run = promisify(execFile);

interface H2Backend {
  name: string;
  endpoint: string;
  server: Http2Server;
  streams: number;
}

/** An h2c-only server: /slow waits 2 s; otherwise answers its name, the path and the request body length, with a trailer. */
async function h2Backend(t: Test, name: string, address = randomLoopback(), port = 0): Promise<H2Backend> {
  const b = { name, endpoint: '', streams: 0 } as H2Backend;
  b.server = createServer();
  b.server.on('stream', (stream, headers) => {
    b.streams++;
    let len = 0;
    stream.on('data', (d: Buffer) => {
      len += d.length;
    });
    stream.on('error', () => {});
    stream.on('end', () => {
      const reply = () => {
        if (stream.destroyed) return;
        const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
        stream.respond(
          {
            ':status': 200,
            'content-type': grpc ? 'application/grpc' : 'text/plain',
            'x-backend': name,
            'x-proto-seen': String(headers[':scheme']),
          },
          { waitForTrailers: true },
        );
        stream.once('wantTrailers', () => stream.sendTrailers(grpc ? { 'grpc-status': '0' } : { 'x-trailer': 'yes' }));
        stream.end(grpc ? Buffer.alloc(5) : `${name} ${headers[':path']} ${len}`);
      };
      if (headers[':path'] === '/slow') setTimeout(reply, 2000);
      else reply();
    });
  });
  await new Promise<void>((resolve) => b.server.listen(port, address, resolve));
  b.endpoint = `${address}:${(b.server.address() as AddressInfo).port}`;
  t.teardown(() => new Promise<void>((resolve) => b.server.close(() => resolve())));
  return b;
}

async function sidecarFor(t: Test, endpoints: string[], options = '', protocol = 'http2') {
  const port = await freePort();
  const address = randomLoopback();
  const topo = `services:\n${service('api', address, port, endpoints, protocol)}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: ${protocol}, options: { ${options} } }
`;
  const s = await startSidecar(t, topo);
  return { url: `http://${address}:${port}`, sidecar: s };
}

interface H2Result {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders;
  body: string;
  ms: number;
}

/** One request over a fresh h2c connection, without any client-side deadline. */
function h2Request(url: string, headers: Record<string, string>, body: Buffer | null = null): Promise<H2Result> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const s = connect(url);
    s.on('error', reject);
    const st = s.request({ ':method': 'POST', ':path': '/shoal.test.Echo/Unary', ...headers }, { endStream: body === null });
    let resHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    let text = '';
    st.on('response', (h) => {
      resHeaders = h;
    });
    st.on('trailers', (h) => {
      trailers = h;
    });
    st.on('data', (d: Buffer) => {
      text += d.toString();
    });
    st.on('error', reject);
    st.on('close', () => {
      s.close();
      resolve({ headers: resHeaders, trailers, body: text, ms: performance.now() - start });
    });
    if (body !== null) st.end(body);
  });
}

t.test('curl --http2-prior-knowledge and plain HTTP/1.1 curl both go through an http2 listener', async (t) => {
  const { stdout: version } = await run('curl', ['--version']);
  t.match(version, /Features:.*HTTP2/, 'this curl speaks HTTP/2');
  const bs = await Promise.all([1, 2].map((i) => h2Backend(t, `h2-${i}`)));
  const { url } = await sidecarFor(
    t,
    bs.map((b) => b.endpoint),
    'LBPolicy: round_robin',
  );

  const h2 = await run('curl', ['-sS', '-i', '--http2-prior-knowledge', `${url}/a`]);
  t.match(h2.stdout, /^HTTP\/2 200/, 'answered over HTTP/2');
  t.match(h2.stdout, /h2-[12] \/a 0/, 'by an upstream h2c server');

  const h1 = await run('curl', ['-sS', '-i', '--http1.1', `${url}/b`]);
  t.match(h1.stdout, /^HTTP\/1\.1 200/, 'answered over HTTP/1.1 on the same port');
  t.match(h1.stdout, /x-backend: h2-[12]/i);
  t.match(h1.stdout, /h2-[12] \/b 0/, 'the HTTP/1.1 request went upstream over HTTP/2');

  const upgrade = await run('curl', ['-sS', '-i', '--http2', `${url}/u`]);
  t.match(upgrade.stdout, /^HTTP\/1\.1 200/, 'an h2c Upgrade offer is declined: answered over HTTP/1.1');
  t.match(upgrade.stdout, /h2-[12] \/u 0/);

  const post = await run('curl', ['-sS', '--http1.1', '--data-binary', 'x'.repeat(1000), `${url}/form`]);
  t.match(post.stdout, /\/form 1000$/, 'an HTTP/1.1 request body goes upstream in an HTTP/2 stream');
  const body = Buffer.alloc(300_000, 1);
  const up = await h2Request(url, { ':path': '/upload', 'content-type': 'application/octet-stream' }, body);
  t.match(up.body, /\/upload 300000$/, 'an h2c request body streams through whole');
  t.equal(up.trailers['x-trailer'], 'yes', 'trailers pass through');

  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await run('curl', ['-sS', '--http2-prior-knowledge', `${url}/`])).stdout.split(' ')[0]);
  t.same([...seen].sort(), ['h2-1', 'h2-2'], 'requests of separate connections are balanced over both');
});

t.test('errors the sidecar makes up are gRPC statuses for gRPC calls, HTTP statuses otherwise', async (t) => {
  const { url, sidecar } = await sidecarFor(t, [], '', 'grpc');
  const r = await h2Request(url, { 'content-type': 'application/grpc', te: 'trailers' }, Buffer.alloc(5));
  t.equal(r.headers[':status'], 200, 'HTTP 200, as gRPC requires');
  t.equal(r.headers['grpc-status'], '14', 'UNAVAILABLE');
  t.match(String(r.headers['grpc-message']), /no-endpoints: api\.default:\d+ has no endpoints/);
  t.equal(r.headers['x-shoal-error'], 'no-endpoints', 'x-shoal-error in the trailers (a trailers-only response)');
  const plain = await run('curl', ['-sS', '-i', '--http2-prior-knowledge', `${url}/`]);
  t.match(plain.stdout, /^HTTP\/2 503/);
  t.match(plain.stdout, /x-shoal-error: no-endpoints/);
  const m = await (await fetch(`http://127.0.0.1:${sidecar.proxy.adminPort}/metrics`)).text();
  t.match(m, /shoal_proxy_grpc_responses_total\{[^}]*grpc_status="14"[^}]*\} 1/, 'the made-up status is counted');
});

t.test('the sidecar enforces grpc-timeout, capped by RequestTimeoutMS', async (t) => {
  const b = await h2Backend(t, 'slow');
  const { url } = await sidecarFor(t, [b.endpoint], 'RequestTimeoutMS: 400', 'grpc');
  const r = await h2Request(
    url,
    { ':path': '/slow', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '100m' },
    Buffer.alloc(5),
  );
  t.equal(r.headers['grpc-status'], '4', 'DEADLINE_EXCEEDED');
  t.equal(r.headers['x-shoal-error'], 'request-timeout');
  // Bounds for a crowded machine: the slow path answers after 2 s, so anything well below that is the deadline.
  t.ok(r.ms >= 90 && r.ms < 1500, `after ${r.ms.toFixed(0)} ms (grpc-timeout 100m)`);
  const capped = await h2Request(
    url,
    { ':path': '/slow', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '10S' },
    Buffer.alloc(5),
  );
  t.equal(capped.headers['grpc-status'], '4');
  t.ok(capped.ms >= 380 && capped.ms < 1700, `a 10 s grpc-timeout ended at RequestTimeoutMS: ${capped.ms.toFixed(0)} ms`);
  const ok = await h2Request(
    url,
    { ':path': '/fast', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '5S' },
    Buffer.alloc(5),
  );
  t.equal(ok.trailers['grpc-status'], '0', 'a call within its deadline completes with its trailers');
});

t.test('inbound: an http2 port is reached over h2c on its listen port', async (t) => {
  const appPort = await freePort();
  await h2Backend(t, 'app', '127.0.0.1', appPort);
  const topo = `services: []\napps:
  - name: web
    config:
      base_ports:
        - { port: ${appPort}, listen_port: 65377, protocol: http2 }
`;
  const inboundAddress = randomLoopback();
  await startSidecar(t, topo, { inboundAddress });
  const r = await run('curl', ['-sS', '--http2-prior-knowledge', `http://${inboundAddress}:65377/in`]);
  t.equal(r.stdout, 'app /in 0');
});

t.test('a response stream has backpressure: a client that stops reading stops the upstream', async (t) => {
  let written = 0;
  let finished = false;
  const server = createServer();
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    const chunk = Buffer.alloc(64 * 1024, 3);
    const pump = () => {
      while (written < 16 * 1024 * 1024) {
        written += chunk.length;
        if (!stream.write(chunk)) {
          stream.once('drain', pump);
          return;
        }
      }
      finished = true;
      stream.end();
    };
    stream.on('error', () => {});
    pump();
  });
  const address = randomLoopback();
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { url } = await sidecarFor(t, [`${address}:${(server.address() as AddressInfo).port}`]);
  const s = connect(url);
  t.teardown(() => s.destroy());
  const st = s.request({ ':path': '/big' });
  let received = 0;
  st.on('data', (d: Buffer) => {
    received += d.length;
  });
  st.pause();
  await new Promise((r) => setTimeout(r, 1500));
  t.ok(written < 8 * 1024 * 1024, `with the client not reading, the upstream wrote only ${(written / 1048576).toFixed(1)} MB of 16`);
  t.notOk(finished, 'the upstream is still waiting to write');
  const ended = new Promise((resolve) => st.on('end', resolve));
  st.resume();
  await ended;
  t.equal(received, 16 * 1024 * 1024, 'every byte arrives once the client reads again');
});
