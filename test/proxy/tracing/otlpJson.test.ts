// The sidecar's hand-written OTLP JSON encoder against the OpenTelemetry JS SDK's own serializer
// (@opentelemetry/otlp-transformer's JsonTraceSerializer, what the SDK's OTLP/HTTP JSON exporter sends):
// the same spans, random and hostile (quotes, control characters, non-ASCII, empty and long strings,
// integers, doubles, booleans, every kind and status), must give the same document.
import t from 'tap';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { encodeTraces, nanos, type AttributeValue, type OtlpResource, type OtlpSpan } from '../../../proxy/tracing/otlpJson.ts';

// A seeded generator: a failure names its seed and can be replayed.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const NASTY = ['', '"', '\\', '\n\r\t', '\u0000\u001f', 'é漢字', '😀', '</script>', 'a'.repeat(300), '\u2028\u2029', 'key with spaces'];

function hex(r: () => number, bytes: number): string {
  let s = '';
  for (let i = 0; i < bytes; i++)
    s += Math.floor(r() * 256)
      .toString(16)
      .padStart(2, '0');
  return s;
}

function str(r: () => number): string {
  if (r() < 0.4) return NASTY[Math.floor(r() * NASTY.length)];
  let s = '';
  const n = Math.floor(r() * 20);
  for (let i = 0; i < n; i++) s += String.fromCharCode(Math.floor(r() * 0x3000));
  return s;
}

function attrValue(r: () => number): AttributeValue {
  const k = r();
  if (k < 0.4) return str(r);
  if (k < 0.6) return Math.floor(r() * 2 ** 40) - 2 ** 39;
  if (k < 0.8) return (r() - 0.5) * 1e6 + 0.25;
  return r() < 0.5;
}

function randomSpan(r: () => number): OtlpSpan {
  const attributes: AttributeValue[] = [];
  const keys = new Set<string>();
  const n = Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const key = `${str(r)}#${i}`;
    if (keys.has(key)) continue;
    keys.add(key);
    attributes.push(key, attrValue(r));
  }
  const startMs = 1.7e12 + Math.floor(r() * 1e9) + Math.floor(r() * 1e3) / 1e3;
  const parentSpanId = r() < 0.3 ? '' : hex(r, 8);
  // Whether the parent was remote is said only of a span with a parent (as the tracer records it).
  const remote = parentSpanId !== '' && r() < 0.5;
  const status = Math.floor(r() * 3);
  return {
    traceId: hex(r, 16),
    spanId: hex(r, 8),
    parentSpanId,
    traceState: r() < 0.7 ? '' : `k=${hex(r, 4)},v@x=1`,
    name: str(r),
    kind: 1 + Math.floor(r() * 5),
    startMs,
    endMs: startMs + Math.floor(r() * 1e6) / 1000,
    attributes,
    statusCode: status,
    statusMessage: status === 2 && r() < 0.7 ? str(r) || 'x' : '',
    flags: 1 | 0x100 | (remote ? 0x200 : 0),
  };
}

function hrTime(ms: number): [number, number] {
  const n = BigInt(nanos(ms));
  return [Number(n / 1_000_000_000n), Number(n % 1_000_000_000n)];
}

/** The same span as the SDK's ReadableSpan. */
function sdkSpan(
  sp: OtlpSpan,
  resource: { attributes: Record<string, AttributeValue> },
  scope: { name: string; version: string },
): unknown {
  const attributes: Record<string, AttributeValue> = {};
  for (let i = 0; i < sp.attributes.length; i += 2) attributes[sp.attributes[i] as string] = sp.attributes[i + 1];
  const remote = (sp.flags & 0x200) !== 0;
  return {
    name: sp.name,
    kind: sp.kind - 1,
    spanContext: () => ({
      traceId: sp.traceId,
      spanId: sp.spanId,
      traceFlags: sp.flags & 0xff,
      traceState: sp.traceState === '' ? undefined : { serialize: () => sp.traceState },
    }),
    parentSpanContext:
      sp.parentSpanId === '' ? undefined : { traceId: sp.traceId, spanId: sp.parentSpanId, traceFlags: 1, isRemote: remote },
    startTime: hrTime(sp.startMs),
    endTime: hrTime(sp.endMs),
    duration: [0, 0],
    ended: true,
    status: sp.statusMessage === '' ? { code: sp.statusCode } : { code: sp.statusCode, message: sp.statusMessage },
    attributes,
    links: [],
    events: [],
    resource,
    instrumentationScope: scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

t.test('nanos writes epoch milliseconds as integer nanoseconds, exact to the microsecond', async (t) => {
  const r = rng(7);
  for (let i = 0; i < 2000; i++) {
    const whole = 1.6e12 + Math.floor(r() * 1e11);
    const micros = Math.floor(r() * 1000);
    const want = (BigInt(whole) * 1_000_000n + BigInt(micros) * 1000n).toString();
    const got = nanos(whole + micros / 1000);
    if (got !== want) {
      t.equal(got, want, `nanos(${whole} + ${micros}/1000)`);
      return;
    }
  }
  t.pass('2000 random microsecond times written exactly');
  t.equal(nanos(1700000000000), '1700000000000000000', 'a whole millisecond');
  // 1700000000000.9999999 is the double 1700000000001 exactly: the largest double below it is .999755859375 ms, 999.76 us.
  t.equal(nanos(1700000000000.999755859375), '1700000000001000000', 'a fraction that rounds up carries into the milliseconds');
});

t.test("the encoder writes what the SDK's JSON serializer writes, span for span", async (t) => {
  let compared = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const r = rng(seed);
    const resAttrs: AttributeValue[] = ['service.name', str(r) || 'web', 'service.namespace', 'default', 'n', 3];
    const resource: OtlpResource = { attributes: resAttrs, scopeName: 'shoal-proxy', scopeVersion: '0.1.0' };
    const spans = Array.from({ length: 1 + Math.floor(r() * 6) }, () => randomSpan(r));
    const sdkResource = {
      attributes: Object.fromEntries([
        [resAttrs[0], resAttrs[1]],
        [resAttrs[2], resAttrs[3]],
        [resAttrs[4], resAttrs[5]],
      ]),
    };
    const scope = { name: 'shoal-proxy', version: '0.1.0' };
    const theirs = JSON.parse(
      new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans.map((s) => sdkSpan(s, sdkResource, scope)) as never)),
    );
    const ours = JSON.parse(encodeTraces(resource, spans));
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) {
      // Key order aside, the documents must be equal.
      t.same(ours, theirs, `seed ${seed}: same document as the SDK`);
      if (!t.passing()) return;
    }
    compared += spans.length;
  }
  t.ok(compared > 600, `${compared} random spans encoded as the SDK encodes them`);
});

t.test('a batch is a part of the queue: from and to select the spans', async (t) => {
  const r = rng(99);
  const spans = [randomSpan(r), randomSpan(r), randomSpan(r)];
  const doc = JSON.parse(encodeTraces({ attributes: [], scopeName: 's', scopeVersion: '1' }, spans, 1, 3)) as {
    resourceSpans: { scopeSpans: { spans: { spanId: string }[] }[] }[];
  };
  t.same(
    doc.resourceSpans[0].scopeSpans[0].spans.map((s) => s.spanId),
    [spans[1].spanId, spans[2].spanId],
  );
});
