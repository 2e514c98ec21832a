// The admin endpoint (port 65533): /ready and /metrics for anyone (kubelet, Prometheus);
// /config_dump and /drain for loopback clients only.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { nodeHttp } from '../lazyBuiltins.ts';

export interface AdminSource {
  ready(): boolean;
  readiness(): Record<string, unknown>;
  configDump(): unknown;
  drain(): Promise<void>;
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' });
  res.end(body);
}

export function createAdminServer(source: AdminSource, registry: Registry): Server {
  return nodeHttp().createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    const path = (req.url ?? '/').split('?')[0];
    const loopback = isLoopback(req.socket.remoteAddress);
    const method = req.method ?? 'GET';
    if (path === '/ready') {
      const ok = source.ready();
      return send(res, ok ? 200 : 503, 'application/json', `${JSON.stringify({ ready: ok, ...source.readiness() })}\n`);
    }
    if (path === '/metrics' && (method === 'GET' || method === 'HEAD')) {
      registry.metrics().then(
        (text) => send(res, 200, registry.contentType, text),
        (err: Error) => send(res, 500, 'text/plain', `${err.message}\n`),
      );
      return;
    }
    if (path === '/config_dump' || path === '/drain') {
      if (!loopback) return send(res, 403, 'application/json', '{"error":"forbidden","message":"loopback clients only"}\n');
      if (path === '/config_dump') return send(res, 200, 'application/json', `${JSON.stringify(source.configDump(), null, 2)}\n`);
      if (method !== 'POST') return send(res, 405, 'application/json', '{"error":"method_not_allowed","message":"POST /drain"}\n');
      void source.drain();
      return send(res, 202, 'application/json', '{"draining":true}\n');
    }
    send(res, 404, 'application/json', '{"error":"not_found","message":"try /ready, /metrics, /config_dump"}\n');
  });
}
