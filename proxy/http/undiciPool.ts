// The undici pool to one endpoint, for the node:http path (undiciExchange.ts), upgrades (upgrade.ts)
// and HTTP/1.1 mirrors (l7/mirror.ts). undici carries the slow path only (bodies, upgrades): it is
// loaded on first use, so a sidecar that never needs it pays no memory for it (about 28 MB of RSS).
import { createRequire } from 'node:module';
import type { Pool } from 'undici';
import type { Endpoint, EndpointPool } from '../cluster/endpoint.ts';
import { meshUndiciConnector } from '../tls/meshTls.ts';

const require = createRequire(import.meta.url);
let PoolClass: typeof Pool | null = null;
function undiciPool(): typeof Pool {
  return (PoolClass ??= (require('undici') as typeof import('undici')).Pool);
}

const UNDICI = Symbol('shoal.pool.undici');

class UndiciEndpointPool implements EndpointPool {
  readonly pool: Pool;

  constructor(e: Endpoint) {
    const p = e.policy;
    this.pool = new (undiciPool())(`http://${e.key}`, {
      connections: p.maxConnections,
      pipelining: 1,
      connectTimeout: p.connectTimeoutMs,
      connect: meshUndiciConnector(p, p.connectTimeoutMs), // mTLS to meshed endpoints (proxy/tls)
      // Basic request deadline: the upstream must start answering, and keep sending, within it.
      headersTimeout: p.requestTimeoutMs,
      bodyTimeout: p.requestTimeoutMs,
      keepAliveTimeout: 4000,
      keepAliveMaxTimeout: 60_000,
      maxRequestsPerClient: p.maxRequestsPerConnection > 0 ? p.maxRequestsPerConnection : undefined,
      strictContentLength: false,
    });
  }

  retire(): Promise<void> {
    return this.pool.close().catch(() => {});
  }

  destroy(): Promise<void> {
    return this.pool.destroy().catch(() => {});
  }
}

function make(e: Endpoint): UndiciEndpointPool {
  return new UndiciEndpointPool(e);
}

/** The endpoint's undici pool (keep-alive, up to MaxConnections), made on first use. */
export function undiciPoolOf(e: Endpoint): Pool {
  return e.pool(UNDICI, make).pool;
}
