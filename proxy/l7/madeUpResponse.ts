// Responses the sidecar makes up itself: explicit status, x-shoal-error naming why, a one-line body.
// Never a hung or silently reset socket while the client can still be told.
import type { ServerResponse } from 'node:http';

export type ShoalError =
  | 'no-endpoints'
  | 'circuit-open'
  | 'overloaded'
  | 'connect-timeout'
  | 'request-timeout'
  | 'upstream-reset'
  | 'rate-limited'
  | 'no-route'
  | 'denied'
  | 'bad-request'
  | 'no-backend';

export const ERROR_STATUS: Record<ShoalError, number> = {
  'no-endpoints': 503,
  'circuit-open': 503,
  overloaded: 503,
  'connect-timeout': 504,
  'request-timeout': 504,
  'upstream-reset': 502,
  'rate-limited': 429,
  'no-route': 404,
  denied: 403, // mesh authorization policy (proxy/tls)
  'bad-request': 400, // a request the sidecar will not forward: the client's error, never an endpoint's
  'no-backend': 500, // Gateway API: the route's backendRef does not resolve, or the rule has no backend (docs/proxy.md)
};

/**
 * Writes the made-up response if the head is not out yet; otherwise the only honest signal left is a
 * reset. status: when the same error is the client's fault (408 request-timeout for a body too slow).
 */
export function sendMadeUp(
  res: ServerResponse,
  error: ShoalError,
  detail: string,
  closeConnection: boolean,
  status = ERROR_STATUS[error],
): number {
  if (res.headersSent) {
    res.destroy();
    return status;
  }
  const body = `${status} ${error}: ${detail}\n`;
  if (closeConnection) res.shouldKeepAlive = false;
  res.writeHead(status, [
    'content-type',
    'text/plain; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    'x-shoal-error',
    error,
  ]);
  res.end(body);
  return status;
}

/** Maps an undici failure to the made-up response it deserves. */
export function upstreamError(err: Error & { code?: string }): ShoalError {
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect-timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'request-timeout';
    default:
      return 'upstream-reset';
  }
}

const REASONS: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  404: 'Not Found',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A complete made-up HTTP/1.1 response as one string (the fast path, raw sockets); extra: more header lines, each ending in CRLF. */
export function madeUpHead(error: ShoalError, detail: string, close: boolean, extra = ''): string {
  const status = ERROR_STATUS[error];
  const body = `${status} ${error}: ${detail}\n`;
  return `HTTP/1.1 ${status} ${REASONS[status] ?? error}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-shoal-error: ${error}\r\n${extra}${close ? 'connection: close\r\n' : ''}\r\n${body}`;
}
