// Tracing in a running sidecar without a real collector: off by default (headers untouched), requests
// unharmed and drops counted when --otlp-endpoint points at nothing, and gRPC calls on the HTTP/2 path
// recorded with RPC attributes (read from what the sidecar posts to a loopback stand-in). The two-sidecar
// test against a real OpenTelemetry Collector is collector.test.ts.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'node:net';
import { request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from '../fixtures.ts';
import { echoClient, echoServer, grpc, unary } from '../h2/grpcFixtures.ts';
import { tracer } from '../../../proxy/tracing/tracer.ts';

const topology = (
  name: string,
  address: string,
  port: number,
  endpoints: string[],
  protocol = 'http',
) => `services:\n${service(name, address, port, endpoints, protocol)}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: ${name}, port: ${port}, protocol: ${protocol} }
`;

async function metric(adminPort: number, re: RegExp): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

t.test('tracing off: of proxy/tracing/, the sidecar loads only the null tracer and the flags', async (t) => {
  const root = join(import.meta.dirname, '..', '..', '..');
  // Every project module under proxy/tracing/ that a process resolves, printed at exit.
  const hook = `import { registerHooks } from 'node:module';
const seen = new Set();
registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); const m = /\\/proxy\\/tracing\\/([^/]+)$/.exec(r.url); if (m) seen.add(m[1]); return r; } });
process.on('exit', () => process.stderr.write('TRACING ' + JSON.stringify([...seen].sort()) + '\\n'));`;
  const { stderr } = await promisify(execFile)(
    process.execPath,
    [
      '--import',
      `data:text/javascript,${encodeURIComponent(hook)}`,
      '--input-type=module',
      '-e',
      `await import(${JSON.stringify(join(root, 'proxy', 'main.ts'))});`,
    ],
    { cwd: root },
  );
  t.same(
    JSON.parse(/^TRACING (.*)$/m.exec(stderr)![1]),
    ['tracer.ts', 'tracingFlags.ts'],
    'sidecarTracer, spanExporter, otlpJson and traceContext stay unloaded',
  );
});

t.test('tracing off (the default): no tracer, trace headers pass as they came, none added', async (t) => {
  const api = await httpBackend(t, 'api-1');
  const address = randomLoopback();
  const port = await freePort();
  const s = await startSidecar(t, topology('api', address, port, [api.endpoint]));
  t.equal(tracer, null, 'no tracer');
  const url = `http://${address}:${port}`;
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const seen = JSON.parse(await (await request(`${url}/headers`, { headers: { traceparent: tp, b3: '1' } })).body.text()) as {
    headers: Record<string, string>;
  };
  t.equal(seen.headers.traceparent, tp, 'traceparent untouched');
  t.equal(seen.headers.b3, '1', 'b3 untouched');
  const none = JSON.parse(await (await request(`${url}/headers`)).body.text()) as { headers: Record<string, string> };
  t.notOk(none.headers.traceparent, 'no traceparent made up');
  t.notMatch(
    await (await request(`http://127.0.0.1:${s.proxy.adminPort}/metrics`)).body.text(),
    /shoal_proxy_trace_spans/,
    'no tracing metrics',
  );
});

t.test('--otlp-endpoint pointing at nothing: every request succeeds and the drops are counted', async (t) => {
  const api = await httpBackend(t, 'api-1');
  const nothing = `http://127.0.0.1:${await freePort()}`;
  const address = randomLoopback();
  const port = await freePort();
  const s = await startSidecar(t, topology('api', address, port, [api.endpoint]), { otlpEndpoint: nothing, traceSampleRatio: 1 });
  t.ok(tracer, 'tracer on');
  const url = `http://${address}:${port}`;
  let ok = 0;
  for (let i = 0; i < 200; i++) {
    const r = await request(`${url}/x${i}`, { method: i % 2 ? 'POST' : 'GET', body: i % 2 ? 'body' : undefined });
    if (r.statusCode === 200) ok++;
    await r.body.dump();
  }
  t.equal(ok, 200, 'all 200 requests answered 200 (fast path and node:http path)');
  // The exporter sends every second; the first failed batch is counted.
  const until = Date.now() + 10_000;
  let dropped = 0;
  while (Date.now() < until && dropped === 0) {
    await new Promise((r) => setTimeout(r, 200));
    dropped = await metric(s.proxy.adminPort, /shoal_proxy_trace_spans_dropped_total\{reason="export_failed"[^}]*\} (\d+)/);
  }
  t.ok(dropped > 0 && dropped <= 400, `spans dropped as export_failed are counted (${dropped} of 400)`);
  t.equal(await metric(s.proxy.adminPort, /shoal_proxy_trace_spans_exported_total(?:\{[^}]*\})? (\d+)/), 0, 'none exported');
});

t.test('gRPC on the HTTP/2 path: server and client spans with RPC attributes and gRPC status', async (t) => {
  const posted: {
    resourceSpans: {
      scopeSpans: {
        spans: {
          name: string;
          kind: number;
          traceId: string;
          parentSpanId?: string;
          spanId: string;
          status: { code?: number };
          attributes: { key: string; value: Record<string, unknown> }[];
        }[];
      }[];
    }[];
  }[] = [];
  const stand = createServer((req, res) => {
    let body = '';
    req
      .setEncoding('utf8')
      .on('data', (d) => {
        body += d;
      })
      .on('end', () => {
        posted.push(JSON.parse(body));
        res.end('{}');
      });
  });
  await new Promise<void>((r) => stand.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    stand.closeAllConnections();
    stand.close();
  });
  const echo = await echoServer(t, 'echo-1');
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(t, topology('echo', address, port, [echo.endpoint], 'grpc'), {
    otlpEndpoint: `http://127.0.0.1:${(stand.address() as AddressInfo).port}`,
    traceSampleRatio: 1,
  });
  const c = echoClient(t, `${address}:${port}`);
  const ok = await unary(c, { data: Buffer.from('hi') });
  t.notOk(ok.err, 'the call succeeds');
  echo.fail = grpc.status.NOT_FOUND;
  const nf = await unary(c, { data: Buffer.from('hi') });
  t.equal(nf.err?.code, grpc.status.NOT_FOUND);
  const spans = () => posted.flatMap((p) => p.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)));
  const until = Date.now() + 10_000;
  while (spans().length < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  const all = spans();
  t.equal(all.length, 4, 'two calls, two spans each');
  const attrs = (s: (typeof all)[number]) => Object.fromEntries(s.attributes.map((a) => [a.key, Object.values(a.value)[0]]));
  for (const s of all) {
    t.equal(s.name, 'shoal.test.Echo/Unary', 'named service/method');
    t.match(attrs(s), { 'rpc.system': 'grpc', 'rpc.service': 'shoal.test.Echo', 'rpc.method': 'Unary', 'http.request.method': 'POST' });
  }
  const byTrace = Object.groupBy(all, (s) => s.traceId);
  t.equal(Object.keys(byTrace).length, 2, 'one trace per call');
  for (const pair of Object.values(byTrace)) {
    const server = pair!.find((s) => s.kind === 2)!;
    const client = pair!.find((s) => s.kind === 3)!;
    t.equal(client.parentSpanId, server.spanId, 'client span under the server span');
    const code = attrs(server)['rpc.grpc.status_code'];
    if (code === 0) {
      t.notOk(client.status.code, 'OK: no error');
    } else {
      t.equal(code, 5, 'NOT_FOUND recorded');
      t.equal(client.status.code, 2, 'client span: a non-OK status is an error');
      t.notOk(server.status.code, "server span: NOT_FOUND is not the server's fault");
    }
  }
});

t.test('an upgrade (WebSocket) is traced through its handshake; its traceparent reaches the upstream', async (t) => {
  const posted: {
    resourceSpans: {
      scopeSpans: {
        spans: {
          kind: number;
          traceId: string;
          parentSpanId?: string;
          spanId: string;
          attributes: { key: string; value: Record<string, unknown> }[];
        }[];
      }[];
    }[];
  }[] = [];
  const stand = createServer((req, res) => {
    let body = '';
    req
      .setEncoding('utf8')
      .on('data', (d) => {
        body += d;
      })
      .on('end', () => {
        posted.push(JSON.parse(body));
        res.end('{}');
      });
  });
  await new Promise<void>((r) => stand.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    stand.closeAllConnections();
    stand.close();
  });
  let upstreamTraceparent = '';
  const ws = await httpBackend(t, 'ws-1');
  ws.server.on('upgrade', (req, socket) => {
    upstreamTraceparent = String(req.headers.traceparent ?? '');
    socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(d));
    socket.on('end', () => socket.end());
    upgraded.push(socket);
  });
  // Upgraded sockets leave node's connection tracking: the server's close would wait for them.
  const upgraded: import('node:stream').Duplex[] = [];
  t.teardown(() => {
    for (const s of upgraded) s.destroy();
  });
  const address = randomLoopback();
  const port = await freePort();
  await startSidecar(t, topology('ws', address, port, [ws.endpoint]), {
    otlpEndpoint: `http://127.0.0.1:${(stand.address() as AddressInfo).port}`,
    traceSampleRatio: 1,
  });
  const traceId = '6af7651916cd43dd8448eb211c80319c';
  const echoed = await new Promise<string>((resolve, reject) => {
    const c = connect(port, address, () =>
      c.write(
        `GET /chat HTTP/1.1\r\nhost: ${address}:${port}\r\nconnection: upgrade\r\nupgrade: websocket\r\ntraceparent: 00-${traceId}-b7ad6b7169203331-01\r\n\r\n`,
      ),
    );
    let got = '';
    c.on('data', (d) => {
      got += d;
      if (got.includes('\r\n\r\n') && !got.includes('ping')) c.write('ping');
      if (got.endsWith('ping')) {
        c.destroy();
        resolve(got);
      }
    });
    c.on('error', reject);
    c.on('close', () => reject(new Error(`closed before the echo, after: ${JSON.stringify(got)}`)));
  });
  t.match(echoed, /^HTTP\/1.1 101/, 'the upgrade goes through');
  const spans = () =>
    posted.flatMap((p) => p.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans))).filter((s) => s.traceId === traceId);
  const until = Date.now() + 10_000;
  while (spans().length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  const all = spans();
  t.equal(all.length, 2, 'a server and a client span');
  const client = all.find((s) => s.kind === 3);
  t.equal(upstreamTraceparent, `00-${traceId}-${client?.spanId}-01`, 'the upstream gets the client span as parent');
  t.equal(client?.attributes.find((a) => a.key === 'http.response.status_code')?.value.intValue, 101);
});
