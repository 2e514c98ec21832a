// Tracing against a real OpenTelemetry Collector (OTLP receiver, file exporter; built from its Go modules
// by scripts/otel.ts): client app → sidecar A (web, outbound) → sidecar B (api, inbound) → server app,
// each sidecar its own process exporting to the collector. The collector's output must hold one trace of
// four spans (server and client span on each sidecar) linked parent to child from the app's own
// traceparent, with the attributes and status codes semantic conventions ask for.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { request } from 'undici';
import { goMissing, root, startCollector, type CollectedSpan, type Collector } from '../../../scripts/otel.ts';
import { withDiscover } from '../../lib/discover.ts';
import { freePort, randomLoopback } from '../fixtures.ts';

const why = goMissing();
if (why) {
  const line = `OpenTelemetry Collector tests of ${relative(root, import.meta.filename)} skipped: ${why}`;
  process.stderr.write(`\n*** ${line} ***\n\n`);
  if (process.env.SHOAL_OTEL_SKIPPED) appendFileSync(process.env.SHOAL_OTEL_SKIPPED, `${line}\n`);
  t.plan(0, line);
} else {
  await run();
}

/** A sidecar as its own process (test/proxy/sidecarProcess.ts): tracing's tracer is per process. */
async function sidecar(t: Test, name: string, discoverUrl: string, opts: Record<string, unknown>): Promise<{ adminPort: number }> {
  const dir = mkdtempSync(join(tmpdir(), `shoal-trace-${name}-`));
  const child = spawn(
    process.execPath,
    [
      join(root, 'test', 'proxy', 'sidecarProcess.ts'),
      JSON.stringify({
        discoverUrl,
        stateFile: join(dir, 'state.json'),
        adminHost: '127.0.0.1',
        adminPort: 0,
        drainTimeoutMs: 500,
        ...opts,
      }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.teardown(async () => {
    child.kill('SIGTERM');
    const k = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(k);
    rmSync(dir, { recursive: true, force: true });
  });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as { adminPort: number });
    });
    child.once('exit', (code) => reject(new Error(`sidecar ${name} exited (${code}) before it was ready`)));
  });
}

async function spansOf(c: Collector, traceId: string, n: number, waitMs = 20_000): Promise<CollectedSpan[]> {
  const until = Date.now() + waitMs;
  while (Date.now() < until) {
    const spans = c.spans().filter((s) => s.traceId === traceId);
    if (spans.length >= n) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // Anything more than n would show within a flush or two.
  await new Promise((r) => setTimeout(r, 1500));
  return c.spans().filter((s) => s.traceId === traceId);
}

/** The four spans by role: A's server and client spans (service web), B's (service api). */
function roles(spans: CollectedSpan[]): Record<'aServer' | 'aClient' | 'bServer' | 'bClient', CollectedSpan | undefined> {
  const find = (service: string, kind: number) => spans.find((s) => s.resource['service.name'] === service && s.kind === kind);
  return { aServer: find('web', 2), aClient: find('web', 3), bServer: find('api', 2), bClient: find('api', 3) };
}

async function run(): Promise<void> {
  const collectorDir = mkdtempSync(join(tmpdir(), 'shoal-otelcol-'));
  t.teardown(() => rmSync(collectorDir, { recursive: true, force: true }));
  const started = Date.now();
  const collector = await startCollector(collectorDir, (m) => t.comment(m));
  t.teardown(() => collector.stop());
  t.comment(`collector ready in ${Date.now() - started} ms (build included when it had to be built)`);

  // The server app: records the trace headers it got, answers by path.
  const seen: IncomingHttpHeaders[] = [];
  const app = createServer((req, res) => {
    let body = '';
    req
      .setEncoding('utf8')
      .on('data', (d) => {
        body += d;
      })
      .on('end', () => {
        seen.push(req.headers);
        const status = req.url === '/fail' ? 500 : req.url === '/missing' ? 404 : 200;
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(`app ${req.method} ${req.url} ${body.length}`);
      });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    app.closeAllConnections();
    app.close();
  });
  const appPort = (app.address() as AddressInfo).port;
  const apiAddress = randomLoopback();
  const apiPort = await freePort();
  const bInbound = randomLoopback();
  const listenPort = 65311;
  const d = await withDiscover(
    t,
    `services:
  - { name: api, address: ${apiAddress}, ports: [{ port: ${apiPort}, protocol: http }], endpoints: ["${bInbound}:${listenPort}"] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${apiPort}, protocol: http }
  - name: api
    config:
      base_ports:
        - { port: ${appPort}, listen_port: ${listenPort}, protocol: http }
`,
  );
  // A samples no new trace (ratio 0): what it records, it records because the app's traceparent says so.
  const a = await sidecar(t, 'a', `${d.url}/v1/resources/default/web/mesh`, {
    otlpEndpoint: collector.url,
    traceSampleRatio: 0,
    inboundAddress: randomLoopback(),
  });
  await sidecar(t, 'b', `${d.url}/v1/resources/default/api/mesh`, {
    otlpEndpoint: collector.url,
    traceSampleRatio: 1,
    inboundAddress: bInbound,
  });
  const url = `http://${apiAddress}:${apiPort}`;

  await t.test("one trace, four spans, linked from the app's own traceparent (GET on the fast path)", async (t) => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const appSpan = 'b7ad6b7169203331';
    seen.length = 0;
    const r = await request(`${url}/hello?x=1`, { headers: { traceparent: `00-${traceId}-${appSpan}-01`, tracestate: 'vendor=abc' } });
    t.equal(r.statusCode, 200);
    t.equal(await r.body.text(), 'app GET /hello?x=1 0');
    const spans = await spansOf(collector, traceId, 4);
    t.equal(spans.length, 4, `four spans in the trace (${spans.map((s) => `${s.resource['service.name']}/${s.kind}`).join(' ')})`);
    const { aServer, aClient, bServer, bClient } = roles(spans);
    if (!aServer || !aClient || !bServer || !bClient) {
      t.fail('a server and a client span from each sidecar');
      return;
    }
    t.equal(aServer.parentSpanId, appSpan, "A's server span continues the app's span");
    t.equal(aClient.parentSpanId, aServer.spanId, "A's client span is its server span's child");
    t.equal(bServer.parentSpanId, aClient.spanId, "B's server span is A's client span's child (the traceparent A sent)");
    t.equal(bClient.parentSpanId, bServer.spanId, "B's client span is its server span's child");
    t.equal(seen[0].traceparent, `00-${traceId}-${bClient.spanId}-01`, "the server app gets the trace with B's client span as parent");
    t.equal(seen[0].tracestate, 'vendor=abc', 'tracestate passes on');
    t.equal(aServer.traceState, 'vendor=abc', 'and is recorded');
    for (const s of spans) {
      t.equal(s.name, 'GET', `${s.resource['service.name']}/${s.kind}: span name is the method`);
      t.match(
        s.attrs,
        { 'http.request.method': 'GET', 'url.path': '/hello', 'http.response.status_code': 200 },
        'method, path (no query) and status',
      );
      t.notOk(s.status?.code, 'status unset for a 200');
      t.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano), 'ends after it starts');
    }
    t.match(aServer.attrs, {
      'server.address': apiAddress,
      'server.port': apiPort,
      'client.address': '127.0.0.1',
      'shoal.direction': 'outbound',
      'shoal.listener': String,
    });
    t.match(aClient.attrs, {
      'server.address': bInbound,
      'server.port': listenPort,
      'network.peer.address': bInbound,
      'shoal.cluster': String,
      'shoal.endpoint': `${bInbound}:${listenPort}`,
      'shoal.retry_count': 0,
    });
    t.match(
      bServer.attrs,
      { 'shoal.direction': 'inbound', 'server.address': apiAddress, 'server.port': apiPort },
      "B's server span: the Host the app asked for",
    );
    t.match(bClient.attrs, { 'server.address': '127.0.0.1', 'server.port': appPort, 'shoal.endpoint': `127.0.0.1:${appPort}` });
    t.same(
      [aServer.resource['service.name'], bServer.resource['service.name']],
      ['web', 'api'],
      'each sidecar names its app as the service',
    );
    t.ok(
      BigInt(aServer.startTimeUnixNano) <= BigInt(bServer.startTimeUnixNano) &&
        BigInt(bServer.endTimeUnixNano) <= BigInt(aServer.endTimeUnixNano),
      "B's server span lies within A's",
    );
  });

  await t.test('status codes: a 500 is an error on every span; a 404 only on the client spans', async (t) => {
    const t500 = '1af7651916cd43dd8448eb211c80319c';
    const r = await request(`${url}/fail`, { headers: { traceparent: `00-${t500}-b7ad6b7169203331-01` } });
    t.equal(r.statusCode, 500);
    await r.body.dump();
    const t404 = '2af7651916cd43dd8448eb211c80319c';
    const r2 = await request(`${url}/missing`, { headers: { traceparent: `00-${t404}-b7ad6b7169203331-01` } });
    t.equal(r2.statusCode, 404);
    await r2.body.dump();
    const s500 = await spansOf(collector, t500, 4);
    t.equal(s500.length, 4);
    for (const s of s500) {
      t.equal(s.status?.code, 2, `500: ${s.resource['service.name']}/${s.kind} has status ERROR`);
      t.match(s.attrs, { 'http.response.status_code': 500, 'error.type': '500' });
    }
    const s404 = await spansOf(collector, t404, 4);
    t.equal(s404.length, 4);
    for (const s of s404)
      t.equal(
        s.status?.code ?? 0,
        s.kind === 3 ? 2 : 0,
        `404: ${s.resource['service.name']}/${s.kind === 3 ? 'client: ERROR' : 'server: unset'}`,
      );
  });

  await t.test('a request with a body (node:http and undici path) is traced the same way', async (t) => {
    const traceId = '3af7651916cd43dd8448eb211c80319c';
    seen.length = 0;
    const r = await request(`${url}/upload`, {
      method: 'POST',
      body: 'x'.repeat(10_000),
      headers: { traceparent: `00-${traceId}-b7ad6b7169203331-01` },
    });
    t.equal(await r.body.text(), 'app POST /upload 10000');
    const spans = await spansOf(collector, traceId, 4);
    t.equal(spans.length, 4);
    const { aServer, aClient, bServer, bClient } = roles(spans);
    t.equal(aClient?.parentSpanId, aServer?.spanId);
    t.equal(bServer?.parentSpanId, aClient?.spanId);
    t.equal(bClient?.parentSpanId, bServer?.spanId);
    t.equal(seen[0].traceparent, `00-${traceId}-${bClient?.spanId}-01`, "one traceparent reaches the app, naming B's client span");
    t.match(aServer?.attrs, { 'http.request.method': 'POST', 'url.path': '/upload' });
  });

  await t.test('B3 from the app: the trace goes on under its id, the b3 header reaches the server app', async (t) => {
    const traceId = '4af7651916cd43dd8448eb211c80319c';
    seen.length = 0;
    const r = await request(`${url}/b3`, { headers: { b3: `${traceId}-b7ad6b7169203331-1` } });
    await r.body.dump();
    const spans = await spansOf(collector, traceId, 4);
    t.equal(spans.length, 4, 'four spans under the B3 trace id');
    t.equal(roles(spans).aServer?.parentSpanId, 'b7ad6b7169203331', 'A continues the B3 span');
    t.equal(seen[0].b3, `${traceId}-b7ad6b7169203331-1`, 'the b3 header is kept');
    t.match(seen[0].traceparent, new RegExp(`^00-${traceId}-${roles(spans).bClient?.spanId}-01$`), 'and a traceparent is added');
  });

  await t.test('an unsampled traceparent from the app: no spans, the header passes untouched', async (t) => {
    const traceId = '5af7651916cd43dd8448eb211c80319c';
    seen.length = 0;
    const tp = `00-${traceId}-b7ad6b7169203331-00`;
    const r = await request(`${url}/quiet`, { headers: { traceparent: tp } });
    await r.body.dump();
    t.equal(seen[0].traceparent, tp);
    t.equal((await spansOf(collector, traceId, 1, 2000)).length, 0, 'nothing recorded');
  });

  await t.test("no trace from the app: A draws at its ratio (0), B follows A's decision", async (t) => {
    seen.length = 0;
    const before = collector.spans().length;
    const r = await request(`${url}/fresh`);
    await r.body.dump();
    t.match(seen[0].traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, 'a new unsampled trace, decided by A');
    await new Promise((r) => setTimeout(r, 2000));
    t.equal(collector.spans().length, before, 'B (ratio 1) did not record it: the decision is parent-based');
  });

  await t.test('the exporter counts what the collector accepted', async (t) => {
    const metrics = await (await request(`http://127.0.0.1:${a.adminPort}/metrics`)).body.text();
    t.match(metrics, /shoal_proxy_trace_spans_exported_total(?:\{[^}]*\})? [1-9]\d*/);
    t.notMatch(metrics, /^shoal_proxy_trace_spans_dropped_total\{/m, 'nothing dropped');
  });
}
