// gRPC over HTTP/2 as the sidecar sees it: which requests are gRPC, their deadline (grpc-timeout),
// status codes, and how a made-up error becomes a gRPC status instead of an HTTP one.
import type { ShoalError } from '../l7/madeUpResponse.ts';

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** The gRPC status of each made-up error (HTTP-to-gRPC mapping of the gRPC spec; timeouts are deadlines). */
const GRPC_STATUS_OF: Record<string, number> = {
  'no-endpoints': GrpcStatus.UNAVAILABLE,
  'circuit-open': GrpcStatus.UNAVAILABLE,
  overloaded: GrpcStatus.UNAVAILABLE,
  'connect-timeout': GrpcStatus.UNAVAILABLE,
  'request-timeout': GrpcStatus.DEADLINE_EXCEEDED,
  'upstream-reset': GrpcStatus.UNAVAILABLE,
  'rate-limited': GrpcStatus.UNAVAILABLE,
  'no-route': GrpcStatus.UNIMPLEMENTED,
  'bad-request': 3, // INVALID_ARGUMENT
  'no-backend': 13, // INTERNAL: HTTP 500, as the Gateway API asks for an unresolved backendRef
  denied: 7, // PERMISSION_DENIED: the mesh authorization policy (proxy/tls, docs/identity.md)
};

/** The gRPC status a made-up error is reported as; UNAVAILABLE for one this table does not know yet. */
export function grpcStatusOf(error: ShoalError): number {
  return GRPC_STATUS_OF[error] ?? GrpcStatus.UNAVAILABLE;
}

/** application/grpc, application/grpc+proto, application/grpc-web is not gRPC over HTTP/2. */
export function isGrpc(contentType: string | string[] | undefined): boolean {
  if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) return false;
  const c = contentType.charCodeAt(16);
  return Number.isNaN(c) || c === 0x2b /* + */ || c === 0x3b; /* ; */
}

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout ("100m", "5S", up to 8 digits and a unit) in milliseconds; null when absent or malformed. */
export function parseGrpcTimeout(v: string | string[] | undefined): number | null {
  if (typeof v !== 'string') return null;
  const m = /^([0-9]{1,8})([HMSmun])$/.exec(v);
  if (m === null) return null;
  return Number(m[1]) * UNIT_MS[m[2]];
}

/** Milliseconds as a grpc-timeout value (whole milliseconds, at most 8 digits). */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms));
  if (whole <= 99_999_999) return `${whole}m`;
  return `${Math.min(99_999_999, Math.ceil(whole / 1000))}S`;
}

/** grpc-message is percent-encoded outside printable ASCII (and '%' itself). */
export function encodeGrpcMessage(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
