// The admission webhook's HTTPS server: POST /inject takes an AdmissionReview v1. The certificate and key
// are files (a mounted Secret) and are reloaded when they change, so a rotation needs no restart.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { isIP, type AddressInfo } from 'node:net';
import type { Logger } from '../../shared/log.ts';
import { createDiscoverLogger } from '../log.ts';
import { admit, MalformedReviewError } from './admission.ts';
import { isQuantity, type InjectorConfig } from './podInjector.ts';

export const INJECT_PATH = '/inject';
/** An AdmissionReview carries the object and the old object; etcd keeps objects under 1.5 MiB each. */
export const DEFAULT_BODY_LIMIT = 4 * 1024 * 1024;

export type RecordEvent = (namespace: string, podName: string, reason: string, message: string) => void;

export interface WebhookOptions {
  /** Address to listen on (default 0.0.0.0). */
  host?: string;
  /** 6443 in a cluster; 0 picks a free port. */
  port: number;
  certFile: string;
  keyFile: string;
  injector: InjectorConfig;
  /** The plugin's own variables for the sidecar (base_normal options); overrides injector.pluginEnv. */
  pluginEnv?: (namespace: string, app: string) => Record<string, string> | undefined;
  /** listen_port choices of the app's mesh config; overrides injector.explicitListenPorts. */
  explicitListenPorts?: (namespace: string, app: string) => ReadonlyMap<number, number> | undefined;
  /** Records a Kubernetes event on a pod whose annotations were bad (wired to the API by the caller). */
  recordEvent?: RecordEvent;
  log?: Logger;
  /** How often the certificate files are checked for changes (default 5000 ms). */
  certPollIntervalMs?: number;
  bodyLimitBytes?: number;
}

export interface Webhook {
  port: number;
  close(): Promise<void>;
}

function readPair(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  const pair = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
  createSecureContext(pair); // throws on a bad or mismatched pair, before it reaches the server
  return pair;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      resolve(null);
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve(null);
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Starts the webhook. Rejects if the certificate or key cannot be read or do not match. */
export async function startWebhook(opts: WebhookOptions): Promise<Webhook> {
  const log = opts.log ?? createDiscoverLogger();
  const limit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const injector: InjectorConfig = {
    ...opts.injector,
    ...(opts.pluginEnv ? { pluginEnv: opts.pluginEnv } : {}),
    ...(opts.explicitListenPorts ? { explicitListenPorts: opts.explicitListenPorts } : {}),
  };
  if (!injector.sidecarImage) throw new Error('the webhook needs a sidecar image (--sidecar-image)');
  if (!injector.dnsUpstream)
    throw new Error("the webhook needs the cluster DNS address (--dns-upstream), the sidecar's upstream and the pods' second nameserver");
  for (const [flag, q] of [
    ['--proxy-cpu', injector.proxyCpu],
    ['--proxy-memory', injector.proxyMemory],
    ['--proxy-memory-limit', injector.proxyMemoryLimit],
    ['--proxy-cpu-limit', injector.proxyCpuLimit],
  ] as const) {
    if (q !== undefined && q !== '' && !isQuantity(q))
      throw new Error(`${flag} ${JSON.stringify(q)} is not a Kubernetes quantity (e.g. 100m, 64Mi)`);
  }
  if (!isIP(injector.dnsUpstream))
    throw new Error(`--dns-upstream ${JSON.stringify(injector.dnsUpstream)} is not an IP address (it becomes a pod nameserver)`);
  if (!/^https?:\/\/[^/]+/.test(injector.discoverUrl))
    throw new Error(`--discover-url ${JSON.stringify(injector.discoverUrl)} is not an http(s) URL`);

  let pair = readPair(opts.certFile, opts.keyFile);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' && req.method === 'GET') return send(res, 200, { status: 'ok' });
    if (path !== INJECT_PATH) return send(res, 404, { error: 'not found', message: `only POST ${INJECT_PATH} is served here` });
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return send(res, 405, { error: 'method not allowed', message: `${INJECT_PATH} takes POST` });
    }
    const raw = await readBody(req, limit);
    if (raw === null) return send(res, 413, { error: 'payload too large', message: `an AdmissionReview may be at most ${limit} bytes` });
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      return send(res, 400, { error: 'bad request', message: `the body is not JSON: ${(err as Error).message}` });
    }
    try {
      const outcome = admit(body, injector);
      const r = outcome.review.response;
      const fields = { uid: r.uid, summary: outcome.summary, ops: outcome.patch.length, warnings: r.warnings };
      if (outcome.summary === 'pod injected' || outcome.summary === 'service rewritten' || (r.warnings?.length ?? 0) > 0)
        log.info(fields, 'admission');
      else log.debug(fields, 'admission');
      for (const e of outcome.events) {
        try {
          opts.recordEvent?.(e.namespace, e.podName, e.reason, e.message);
        } catch (err) {
          log.warn({ error: (err as Error).message }, 'could not record an event');
        }
      }
      return send(res, 200, outcome.review);
    } catch (err) {
      if (err instanceof MalformedReviewError)
        return send(res, 400, { error: 'bad request', message: `not an AdmissionReview v1: ${err.message}` });
      throw err;
    }
  };

  const server: Server = createServer({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res).catch((err: Error) => {
      log.error({ error: err.message }, 'webhook request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error', message: err.message });
      else res.destroy();
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 30_000;

  const reload = () => {
    try {
      const next = readPair(opts.certFile, opts.keyFile);
      if (next.cert.equals(pair.cert) && next.key.equals(pair.key)) return;
      server.setSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.2' });
      pair = next;
      log.info({ certFile: opts.certFile }, 'webhook certificate reloaded');
    } catch (err) {
      // Mid-rotation the new certificate may sit beside the old key: keep serving the old pair.
      log.warn({ error: (err as Error).message }, 'webhook certificate not reloaded; the previous one stays');
    }
  };
  const interval = opts.certPollIntervalMs ?? 5000;
  for (const file of [opts.certFile, opts.keyFile]) watchFile(file, { interval, persistent: false }, reload);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, path: INJECT_PATH }, 'webhook listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const file of [opts.certFile, opts.keyFile]) unwatchFile(file, reload);
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
