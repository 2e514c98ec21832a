// The trace a request arrives in: W3C Trace Context (traceparent, tracestate) first, then B3 (the single
// `b3` header, then the X-B3-* ones), as Zipkin and older Envoy/Istio clients send it. Ids are lower-case
// hex; a 64-bit B3 trace id is widened to 128 bits with leading zeros (B3's own rule for interop).
import { randomFillSync } from 'node:crypto';

/** A parent context: sampled is null when the caller left the decision to us (B3 without a flag). */
export interface ParentContext {
  traceId: string;
  spanId: string;
  sampled: boolean | null;
  /** Came as W3C traceparent (else B3). */
  w3c: boolean;
}

/** The trace headers of one request, as found (lower-case names). */
export interface TraceHeaders {
  traceparent: string | undefined;
  tracestate: string | undefined;
  b3: string | undefined;
  b3TraceId: string | undefined;
  b3SpanId: string | undefined;
  b3Sampled: string | undefined;
  b3Flags: string | undefined;
}

const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

function isHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** W3C traceparent (version 00, or a later one read as 00 as the spec asks); null when malformed. */
export function parseTraceparent(v: string): ParentContext | null {
  const s = v.trim();
  if (s.length < 55 || s.charCodeAt(2) !== 45 || s.charCodeAt(35) !== 45 || s.charCodeAt(52) !== 45) return null;
  if (!isHex(s, 0, 2) || s.startsWith('ff')) return null;
  if (s.startsWith('00') ? s.length !== 55 : s.length > 55 && s.charCodeAt(55) !== 45) return null;
  if (!isHex(s, 3, 35) || !isHex(s, 36, 52) || !isHex(s, 53, 55)) return null;
  const traceId = s.slice(3, 35);
  const spanId = s.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return null;
  return { traceId, spanId, sampled: (parseInt(s.slice(53, 55), 16) & 1) === 1, w3c: true };
}

function b3TraceId(s: string): string | null {
  const id = s.toLowerCase();
  if ((id.length !== 16 && id.length !== 32) || !isHex(id, 0, id.length)) return null;
  const wide = id.length === 16 ? ZERO_SPAN + id : id;
  return wide === ZERO_TRACE ? null : wide;
}

function b3SpanId(s: string): string | null {
  const id = s.toLowerCase();
  return id.length === 16 && isHex(id, 0, 16) && id !== ZERO_SPAN ? id : null;
}

function b3Decision(s: string | undefined): boolean | null {
  switch (s) {
    case '1':
    case 'd':
    case 'true':
      return true;
    case '0':
    case 'false':
      return false;
    default:
      return null;
  }
}

/** B3 single header: {traceId}-{spanId}[-{sampling}[-{parentSpanId}]]; a lone sampling state carries no parent. */
export function parseB3Single(v: string): ParentContext | null {
  const parts = v.trim().split('-');
  if (parts.length < 2 || parts.length > 4) return null;
  const traceId = b3TraceId(parts[0]);
  const spanId = b3SpanId(parts[1]);
  if (traceId === null || spanId === null) return null;
  const sampled = parts.length > 2 ? b3Decision(parts[2]) : null;
  if (parts.length > 2 && sampled === null) return null;
  return { traceId, spanId, sampled, w3c: false };
}

/** The parent context of a request, or null for a new trace: traceparent wins, then b3, then X-B3-*. */
export function parentOf(h: TraceHeaders): ParentContext | null {
  if (h.traceparent !== undefined) {
    const p = parseTraceparent(h.traceparent);
    if (p !== null) return p;
  }
  if (h.b3 !== undefined) {
    const p = parseB3Single(h.b3);
    if (p !== null) return p;
  }
  if (h.b3TraceId !== undefined && h.b3SpanId !== undefined) {
    const traceId = b3TraceId(h.b3TraceId);
    const spanId = b3SpanId(h.b3SpanId);
    if (traceId !== null && spanId !== null)
      return { traceId, spanId, sampled: h.b3Flags === '1' ? true : b3Decision(h.b3Sampled), w3c: false };
  }
  return null;
}

/** Reads the trace headers from raw HTTP/1 pairs into h (fields reset first). */
export function traceHeadersOfRaw(raw: readonly string[], h: TraceHeaders): TraceHeaders {
  h.traceparent = h.tracestate = h.b3 = h.b3TraceId = h.b3SpanId = h.b3Sampled = h.b3Flags = undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const n = name.length;
    // Cheap length filter first: most headers are none of these.
    if (n !== 11 && n !== 10 && n !== 2 && n !== 12 && n !== 9) continue;
    const lower = name.toLowerCase();
    const v = raw[i + 1];
    switch (lower) {
      case 'traceparent':
        h.traceparent ??= v;
        break;
      case 'tracestate':
        h.tracestate = h.tracestate === undefined ? v : `${h.tracestate},${v}`;
        break;
      case 'b3':
        h.b3 ??= v;
        break;
      case 'x-b3-traceid':
        h.b3TraceId ??= v;
        break;
      case 'x-b3-spanid':
        h.b3SpanId ??= v;
        break;
      case 'x-b3-sampled':
        h.b3Sampled ??= v;
        break;
      case 'x-b3-flags':
        h.b3Flags ??= v;
        break;
      default:
        break;
    }
  }
  return h;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Reads the trace headers from node's lower-case header object (HTTP/2) into h. */
export function traceHeadersOf(headers: Record<string, string | string[] | undefined>, h: TraceHeaders): TraceHeaders {
  h.traceparent = first(headers.traceparent);
  const ts = headers.tracestate;
  h.tracestate = Array.isArray(ts) ? ts.join(',') : ts;
  h.b3 = first(headers.b3);
  h.b3TraceId = first(headers['x-b3-traceid']);
  h.b3SpanId = first(headers['x-b3-spanid']);
  h.b3Sampled = first(headers['x-b3-sampled']);
  h.b3Flags = first(headers['x-b3-flags']);
  return h;
}

// Random ids from a pooled buffer: one getrandom call per 512 ids rather than one per id.
const POOL = Buffer.allocUnsafe(4096);
let poolAt = POOL.length;

function randomHex(bytes: number): string {
  if (poolAt + bytes > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const s = POOL.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return s;
}

/** A new 16-byte trace id (never all zeros). */
export function newTraceId(): string {
  const id = randomHex(16);
  return id === ZERO_TRACE ? newTraceId() : id;
}

/** A new 8-byte span id (never all zeros). */
export function newSpanId(): string {
  const id = randomHex(8);
  return id === ZERO_SPAN ? newSpanId() : id;
}
