// OTLP/HTTP JSON (opentelemetry-proto's ExportTraceServiceRequest in its JSON mapping) written as a
// string: hex trace and span ids, nanosecond times as decimal strings, the same fields in the same shape
// as the OpenTelemetry JS SDK's JsonTraceSerializer writes them (test/proxy/tracing/otlpJson.test.ts
// compares the two). Chosen over the SDK by measurement: docs/performance.md, "Tracing".

/** Attribute values the sidecar records: strings, integers and booleans. */
export type AttributeValue = string | number | boolean;

/** A finished span. attributes: [key, value, key, value, ...]. Times are epoch milliseconds (fractional). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  /** '' for none. */
  traceState: string;
  name: string;
  /** 1 internal, 2 server, 3 client (SpanKind in the proto). */
  kind: number;
  startMs: number;
  endMs: number;
  attributes: AttributeValue[];
  /** 0 unset, 1 ok, 2 error. */
  statusCode: number;
  /** '' for none. */
  statusMessage: string;
  /** W3C trace flags in the low byte, with the proto's context-has-is-remote (0x100) and is-remote (0x200) bits. */
  flags: number;
}

export interface OtlpResource {
  attributes: AttributeValue[];
  scopeName: string;
  scopeVersion: string;
}

/**
 * Epoch milliseconds as an integer count of nanoseconds, in decimal, to the microsecond: a double near
 * 1.7e12 ms holds about a quarter of a microsecond, so finer digits would be noise.
 */
export function nanos(ms: number): string {
  let whole = Math.floor(ms);
  let micros = Math.round((ms - whole) * 1000);
  if (micros >= 1000) {
    whole += 1;
    micros -= 1000;
  }
  return `${whole}${String(micros).padStart(3, '0')}000`;
}

function value(v: AttributeValue): string {
  switch (typeof v) {
    case 'string':
      return `{"stringValue":${JSON.stringify(v)}}`;
    case 'boolean':
      return `{"boolValue":${v}}`;
    default:
      return Number.isInteger(v) ? `{"intValue":${v}}` : `{"doubleValue":${v}}`;
  }
}

// `{"key":"<name>","value":` per attribute name: the sidecar uses a few dozen names, escaped once each.
const KEY_PREFIX = new Map<AttributeValue, string>();
const KEY_PREFIX_MAX = 1024;

function keyPrefix(k: AttributeValue): string {
  let p = KEY_PREFIX.get(k);
  if (p === undefined) {
    p = `{"key":${JSON.stringify(String(k))},"value":`;
    if (KEY_PREFIX.size < KEY_PREFIX_MAX) KEY_PREFIX.set(k, p);
  }
  return p;
}

function attributes(a: AttributeValue[]): string {
  let s = '[';
  for (let i = 0; i < a.length; i += 2) {
    if (i > 0) s += ',';
    s += `${keyPrefix(a[i])}${value(a[i + 1])}}`;
  }
  return `${s}]`;
}

function span(sp: OtlpSpan): string {
  let s = `{"traceId":"${sp.traceId}","spanId":"${sp.spanId}"`;
  if (sp.parentSpanId !== '') s += `,"parentSpanId":"${sp.parentSpanId}"`;
  if (sp.traceState !== '') s += `,"traceState":${JSON.stringify(sp.traceState)}`;
  s += `,"name":${JSON.stringify(sp.name)},"kind":${sp.kind},"startTimeUnixNano":"${nanos(sp.startMs)}","endTimeUnixNano":"${nanos(sp.endMs)}"`;
  s += `,"attributes":${attributes(sp.attributes)},"droppedAttributesCount":0,"events":[],"droppedEventsCount":0`;
  s +=
    sp.statusMessage === ''
      ? `,"status":{"code":${sp.statusCode}}`
      : `,"status":{"code":${sp.statusCode},"message":${JSON.stringify(sp.statusMessage)}}`;
  return `${s},"links":[],"droppedLinksCount":0,"flags":${sp.flags}}`;
}

/** One export request body for spans[from..to). */
export function encodeTraces(resource: OtlpResource, spans: readonly OtlpSpan[], from = 0, to = spans.length): string {
  let s = `{"resourceSpans":[{"resource":{"attributes":${attributes(resource.attributes)},"droppedAttributesCount":0},"scopeSpans":[{"scope":{"name":${JSON.stringify(resource.scopeName)},"version":${JSON.stringify(resource.scopeVersion)}},"spans":[`;
  for (let i = from; i < to; i++) {
    if (i > from) s += ',';
    s += span(spans[i]);
  }
  return `${s}]}]}]}`;
}
