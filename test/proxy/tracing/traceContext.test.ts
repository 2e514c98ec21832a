// Trace context as it arrives: W3C traceparent (valid, malformed, future versions), B3 single and
// multi, which wins, and the sampling decision the sidecar takes from each (parent-based).
import t from 'tap';
import {
  parentOf,
  parseB3Single,
  parseTraceparent,
  traceHeadersOf,
  traceHeadersOfRaw,
  newSpanId,
  newTraceId,
  type TraceHeaders,
} from '../../../proxy/tracing/traceContext.ts';
import { SidecarTracer } from '../../../proxy/tracing/sidecarTracer.ts';
import type { SpanExporter } from '../../../proxy/tracing/spanExporter.ts';
import type { OtlpSpan } from '../../../proxy/tracing/otlpJson.ts';
import { parseOtlpEndpoint, parseSampleRatio, parseTracingFlags } from '../../../proxy/tracing/tracingFlags.ts';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const S = '00f067aa0ba902b7';

t.test('traceparent: valid forms and the malformed ones refused', async (t) => {
  t.same(parseTraceparent(`00-${T}-${S}-01`), { traceId: T, spanId: S, sampled: true, w3c: true });
  t.same(parseTraceparent(`00-${T}-${S}-00`)?.sampled, false, 'flags 00: not sampled');
  t.same(parseTraceparent(`00-${T}-${S}-03`)?.sampled, true, 'other flag bits beside sampled');
  t.same(
    parseTraceparent(`cc-${T}-${S}-01-what-the-future-holds`)?.traceId,
    T,
    'a later version is read as 00 (extra fields after a dash)',
  );
  for (const bad of [
    '',
    'garbage',
    `00-${T}-${S}-1`,
    `00-${T.toUpperCase()}-${S}-01`,
    `00-${'0'.repeat(32)}-${S}-01`,
    `00-${T}-${'0'.repeat(16)}-01`,
    `ff-${T}-${S}-01`,
    `00-${T}-${S}-01-extra`,
    `00_${T}-${S}-01`,
    `0x-${T}-${S}-01`,
    `cc-${T}-${S}-01x`,
    `00-${T.slice(1)}g-${S}-01`,
  ])
    t.equal(parseTraceparent(bad), null, `refused: ${JSON.stringify(bad)}`);
});

t.test('B3: single header and multi headers; a 64-bit trace id widened', async (t) => {
  t.same(parseB3Single(`${T}-${S}-1`), { traceId: T, spanId: S, sampled: true, w3c: false });
  t.same(parseB3Single(`${T}-${S}-0-${S}`)?.sampled, false, 'with a parent span id');
  t.same(parseB3Single(`${T}-${S}`)?.sampled, null, 'no decision: deferred to the sidecar');
  t.equal(
    parseB3Single(`a3ce929d0e0e4736-${S}-d`)?.traceId,
    '0000000000000000a3ce929d0e0e4736',
    '64-bit id with leading zeros; d (debug) samples',
  );
  for (const bad of ['0', '1', 'd', `${T}-${S}-x`, `${T}-short-1`, `${T}`])
    t.equal(parseB3Single(bad), null, `no parent from ${JSON.stringify(bad)}`);
  const h = traceHeadersOfRaw(['X-B3-TraceId', T, 'X-B3-SpanId', S, 'X-B3-Sampled', '1', 'Host', 'x'], {} as TraceHeaders);
  t.same(parentOf(h), { traceId: T, spanId: S, sampled: true, w3c: false }, 'X-B3-* headers, any case');
  t.equal(
    parentOf(traceHeadersOfRaw(['x-b3-traceid', T, 'x-b3-spanid', S, 'x-b3-flags', '1'], {} as TraceHeaders))?.sampled,
    true,
    'X-B3-Flags: 1 (debug) samples',
  );
});

t.test('traceparent wins over b3, a malformed traceparent falls back to b3', async (t) => {
  const other = 'aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb';
  t.equal(parentOf(traceHeadersOfRaw(['traceparent', `00-${T}-${S}-01`, 'b3', `${other}-${S}-1`], {} as TraceHeaders))?.traceId, T);
  t.equal(parentOf(traceHeadersOfRaw(['traceparent', 'nonsense', 'b3', `${other}-${S}-1`], {} as TraceHeaders))?.traceId, other);
  t.equal(parentOf(traceHeadersOf({ traceparent: `00-${T}-${S}-01` }, {} as TraceHeaders))?.traceId, T, 'from an HTTP/2 header object');
  t.equal(parentOf(traceHeadersOfRaw(['Host', 'x'], {} as TraceHeaders)), null, 'no trace headers: a new trace');
});

t.test('new ids are hex of the right length and differ', async (t) => {
  const ids = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const a = newTraceId();
    const b = newSpanId();
    if (!/^[0-9a-f]{32}$/.test(a) || !/^[0-9a-f]{16}$/.test(b)) t.fail(`bad id ${a} ${b}`);
    ids.add(a);
    ids.add(b);
  }
  t.equal(ids.size, 4000, '4000 ids, no repeats (the random pool is refilled, not reused)');
});

function recordingTracer(ratio: number): { tracer: SidecarTracer; spans: OtlpSpan[] } {
  const spans: OtlpSpan[] = [];
  return { tracer: new SidecarTracer(ratio, { add: (s: OtlpSpan) => spans.push(s) } as unknown as SpanExporter), spans };
}

const site = { name: 'api', direction: 'outbound' as const };
const endpoint = { key: '127.0.0.9:8080', address: '127.0.0.9', port: 8080 };

t.test('sampling is parent-based; the ratio decides new traces only', async (t) => {
  const never = recordingTracer(0);
  const sampledParent = never.tracer.beginRaw(['traceparent', `00-${T}-${S}-01`], performance.now(), site, false);
  t.ok(sampledParent, 'a sampled parent is recorded even at ratio 0');
  t.match(sampledParent!.traceparent, new RegExp(`^00-${T}-[0-9a-f]{16}-01$`), 'same trace, a new parent id (the client span) sent on');
  t.not(sampledParent!.traceparent.slice(36, 52), S);
  t.equal(
    never.tracer.beginRaw(['traceparent', `00-${T}-${S}-00`], 0, site, false),
    null,
    'an unsampled W3C parent: its headers pass on untouched',
  );
  const fresh = never.tracer.beginRaw(['host', 'x'], 0, site, false);
  t.match(
    fresh!.traceparent,
    /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/,
    'a new trace not sampled still gets a traceparent (flags 00), so the next sidecar does not draw again',
  );
  fresh!.end('GET', '/', 'x', '127.0.0.1', 200, '', 'api', endpoint, 0, -1);
  t.equal(never.spans.length, 0, 'nothing recorded for it');
  const b3Deferred = never.tracer.beginRaw(['b3', `${T}-${S}`], 0, site, false);
  t.match(
    b3Deferred!.traceparent,
    new RegExp(`^00-${T}-${S}-00$`),
    'B3 without a decision: the ratio decides (0 here), the B3 trace goes on',
  );

  const always = recordingTracer(1);
  let sampled = 0;
  for (let i = 0; i < 100; i++) if (always.tracer.beginRaw([], 0, site, false)?.traceparent.endsWith('-01')) sampled++;
  t.equal(sampled, 100, 'ratio 1 samples every new trace');
  const some = recordingTracer(0.25);
  sampled = 0;
  for (let i = 0; i < 4000; i++) if (some.tracer.beginRaw([], 0, site, false)?.traceparent.endsWith('-01')) sampled++;
  t.ok(sampled > 800 && sampled < 1200, `ratio 0.25 samples about a quarter of 4000 new traces (${sampled})`);
});

t.test('spans: kinds, links, semantic-convention attributes and status', async (t) => {
  const { tracer, spans } = recordingTracer(0);
  const trace = tracer.beginRaw(['traceparent', `00-${T}-${S}-01`, 'tracestate', 'a=1'], performance.now(), site, false)!;
  trace.end('GET', '/items/7?q=1', 'api.example:8080', '127.0.0.5', 503, '', 'api', endpoint, 2, -1);
  t.equal(spans.length, 2);
  const [server, client] = spans;
  t.equal(server.kind, 2, 'server span');
  t.equal(client.kind, 3, 'client span');
  t.equal(server.parentSpanId, S, "the server span's parent is the caller's span");
  t.equal(client.parentSpanId, server.spanId, "the client span is the server span's child");
  t.equal(trace.traceparent, `00-${T}-${client.spanId}-01`, 'the traceparent sent on names the client span');
  t.equal(server.traceState, 'a=1', 'tracestate recorded');
  t.equal(server.flags, 0x301, 'server span: sampled, parent remote');
  t.equal(client.flags, 0x101, 'client span: sampled, parent local');
  const attrs = (s: OtlpSpan) =>
    Object.fromEntries(Array.from({ length: s.attributes.length / 2 }, (_, i) => [s.attributes[2 * i], s.attributes[2 * i + 1]]));
  t.match(attrs(server), {
    'http.request.method': 'GET',
    'url.path': '/items/7',
    'server.address': 'api.example',
    'server.port': 8080,
    'client.address': '127.0.0.5',
    'http.response.status_code': 503,
    'error.type': '503',
    'shoal.listener': 'api',
    'shoal.direction': 'outbound',
  });
  t.match(attrs(client), {
    'server.address': '127.0.0.9',
    'server.port': 8080,
    'network.peer.address': '127.0.0.9',
    'http.response.status_code': 503,
    'shoal.cluster': 'api',
    'shoal.endpoint': '127.0.0.9:8080',
    'shoal.retry_count': 2,
    'error.type': '503',
  });
  t.equal(server.statusCode, 2, 'server: 5xx is an error');
  t.equal(client.statusCode, 2, 'client: 5xx is an error');

  spans.length = 0;
  tracer.beginRaw(['traceparent', `00-${T}-${S}-01`], 0, site, false)!.end('GET', '/', '', '', 404, '', 'api', endpoint, 0, -1);
  t.equal(spans[0].statusCode, 0, 'server: 404 leaves the status unset');
  t.equal(spans[1].statusCode, 2, 'client: 404 is an error');

  spans.length = 0;
  tracer
    .beginRaw(['traceparent', `00-${T}-${S}-01`], 0, site, false)!
    .end('GET', '/', '', '', 503, 'upstream-reset', 'api', endpoint, 1, -1);
  t.notOk(attrs(spans[1])['http.response.status_code'], "a 503 the sidecar made up is not the upstream's status");
  t.equal(attrs(spans[1])['error.type'], 'upstream-reset');
  t.equal(spans[1].statusMessage, 'upstream-reset');

  spans.length = 0;
  tracer
    .beginRaw(['traceparent', `00-${T}-${S}-01`], 0, site, true)!
    .end('POST', '/shop.Cart/Add', '', '', 200, '', 'cart', endpoint, 0, 5);
  t.equal(spans[0].name, 'shop.Cart/Add', 'gRPC span name: service/method');
  t.match(attrs(spans[0]), { 'rpc.system': 'grpc', 'rpc.service': 'shop.Cart', 'rpc.method': 'Add', 'rpc.grpc.status_code': 5 });
  t.equal(spans[0].statusCode, 0, 'server: NOT_FOUND is not a server error');
  t.equal(spans[1].statusCode, 2, 'client: any non-OK gRPC status is an error');

  spans.length = 0;
  tracer.beginRaw(['traceparent', `00-${T}-${S}-01`], 0, site, false)!.end('BREW', '/', '', '', 200, '', 'api', endpoint, 0, -1);
  t.match(
    attrs(spans[0]),
    { 'http.request.method': '_OTHER', 'http.request.method_original': 'BREW' },
    'an unknown method as semantic conventions say',
  );
  t.equal(spans[0].name, 'HTTP');
});

t.test('flags: strict validation with a clear error', async (t) => {
  t.equal(parseSampleRatio('0.01'), 0.01);
  t.equal(parseSampleRatio('1'), 1);
  t.equal(parseSampleRatio('0'), 0);
  for (const bad of ['', ' ', '1.5', '-0.1', 'abc', 'NaN', 'Infinity', '1%'])
    t.throws(() => parseSampleRatio(bad), /--trace-sample-ratio must be a number from 0 to 1/, `refused: ${JSON.stringify(bad)}`);
  t.equal(parseOtlpEndpoint('http://otel:4318').href, 'http://otel:4318/v1/traces', 'a base URL gets /v1/traces');
  t.equal(parseOtlpEndpoint('https://otel:4318/custom/traces').href, 'https://otel:4318/custom/traces', 'a full URL is kept');
  for (const bad of ['otel:4318', 'ftp://otel/', 'http://', 'not a url', 'http://u:p@otel:4318'])
    t.throws(() => parseOtlpEndpoint(bad), /--otlp-endpoint must/, `refused: ${bad}`);
  t.same(parseTracingFlags({}), { otlpEndpoint: undefined, traceSampleRatio: undefined }, 'no flags: tracing off');
});
