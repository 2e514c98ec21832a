// The span exporter against real HTTP servers on loopback: batches, the bounded queue that drops and
// counts, failed exports counted and never thrown, recovery, and the last spans sent at close.
import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../../shared/log.ts';
import { Counter, Registry } from '../../../shared/metricsRegistry.ts';
import { SpanExporter } from '../../../proxy/tracing/spanExporter.ts';
import type { OtlpSpan } from '../../../proxy/tracing/otlpJson.ts';
import { freePort } from '../fixtures.ts';

function span(i: number): OtlpSpan {
  return {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: i.toString(16).padStart(16, '0'),
    parentSpanId: '',
    traceState: '',
    name: `s${i}`,
    kind: 2,
    startMs: 1.7e12,
    endMs: 1.7e12 + 1,
    attributes: ['i', i],
    statusCode: 0,
    statusMessage: '',
    flags: 0x101,
  };
}

async function collectorStub(
  t: Test,
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<{ url: URL; bodies: string[] }> {
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req
      .setEncoding('utf8')
      .on('data', (d) => {
        body += d;
      })
      .on('end', () => {
        bodies.push(body);
        handler(req, res, body);
      });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`), bodies };
}

function exporter(t: Test, url: URL, o: { maxQueue?: number; batchSize?: number; intervalMs?: number; timeoutMs?: number } = {}) {
  const registry = new Registry();
  const exported = new Counter({ name: 'exported', help: 'x', registers: [registry] });
  const dropped = new Counter({ name: 'dropped', help: 'x', labelNames: ['reason'], registers: [registry] });
  const e = new SpanExporter({
    url,
    log: createLogger('test', 'silent'),
    exported: exported as Counter<never>,
    dropped,
    resource: { attributes: ['service.name', 'web'], scopeName: 's', scopeVersion: '1' },
    intervalMs: 60_000,
    ...o,
  });
  t.teardown(() => e.close());
  const count = async (name: string, reason?: string) => {
    const m = await registry.getSingleMetric(name)!.get();
    return m.values.filter((v) => reason === undefined || v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
  };
  return { e, count };
}

t.test('spans go in batches of batchSize as OTLP JSON', async (t) => {
  const c = await collectorStub(t, (req, res) => {
    t.equal(req.headers['content-type'], 'application/json');
    res.end('{}');
  });
  const { e, count } = exporter(t, c.url, { batchSize: 4 });
  for (let i = 0; i < 10; i++) e.add(span(i));
  await e.flush();
  const sizes = c.bodies.map(
    (b) => (JSON.parse(b) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] }).resourceSpans[0].scopeSpans[0].spans.length,
  );
  t.same(sizes, [4, 4, 2], 'full batches sent as they fill, the rest on flush');
  t.equal(await count('exported'), 10);
  t.equal(await count('dropped'), 0);
});

t.test('a full queue drops new spans and counts them; it never grows past its bound', async (t) => {
  let release: () => void = () => {};
  const hold = new Promise<void>((r) => {
    release = r;
  });
  const c = await collectorStub(t, (_req, res) => {
    void hold.then(() => res.end('{}'));
  });
  const { e, count } = exporter(t, c.url, { maxQueue: 50, batchSize: 10 });
  for (let i = 0; i < 500; i++) e.add(span(i));
  t.ok(e.queued <= 50, `queue held at most 50 (${e.queued})`);
  const droppedFull = await count('dropped', 'queue_full');
  t.equal(
    droppedFull + e.queued + 10,
    500,
    `every span is sent (10 in flight), queued (${e.queued}) or counted as dropped (${droppedFull})`,
  );
  release();
  await e.flush();
  await e.flush();
  t.equal(await count('exported'), 500 - droppedFull, 'what was kept is sent once the collector answers');
});

t.test('failed exports count their spans as dropped, throw nothing, and the exporter recovers', async (t) => {
  let fail = true;
  const c = await collectorStub(t, (_req, res) => {
    res.statusCode = fail ? 503 : 200;
    res.end('{}');
  });
  const { e, count } = exporter(t, c.url, { batchSize: 5 });
  for (let i = 0; i < 5; i++) e.add(span(i));
  await e.flush();
  t.equal(await count('dropped', 'export_failed'), 5, 'a 503 from the collector: the batch is dropped and counted');
  fail = false;
  for (let i = 0; i < 5; i++) e.add(span(i));
  await e.flush();
  t.equal(await count('exported'), 5, 'the next batch goes through');

  const nothing = exporter(t, new URL(`http://127.0.0.1:${await freePort()}/v1/traces`), { batchSize: 5 });
  for (let i = 0; i < 7; i++) nothing.e.add(span(i));
  await nothing.e.flush();
  t.equal(await nothing.count('dropped', 'export_failed'), 5, 'nothing listening: connection refused, counted');

  const silent = await collectorStub(t, () => {
    /* never answers */
  });
  const slow = exporter(t, silent.url, { batchSize: 3, timeoutMs: 200 });
  for (let i = 0; i < 3; i++) slow.e.add(span(i));
  const started = Date.now();
  await slow.e.flush();
  t.ok(Date.now() - started < 2000, 'a collector that never answers is given up after the export timeout');
  t.equal(await slow.count('dropped', 'export_failed'), 3);
});

t.test('close sends what is queued; spans after close are dropped as shutdown', async (t) => {
  const c = await collectorStub(t, (_req, res) => res.end('{}'));
  const { e, count } = exporter(t, c.url, { batchSize: 100 });
  for (let i = 0; i < 3; i++) e.add(span(i));
  await e.close();
  t.equal(await count('exported'), 3);
  e.add(span(9));
  t.equal(await count('dropped', 'shutdown'), 1);
});
