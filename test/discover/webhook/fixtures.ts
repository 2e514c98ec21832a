// Shared pieces of the webhook tests: a throwaway CA and server certificate made with the openssl CLI,
// a real HTTPS client trusting that CA, and AdmissionReview v1 requests shaped like the API server's.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import fastJsonPatch from 'fast-json-patch';
import { pino } from 'pino';
import { startWebhook, type Webhook, type WebhookOptions } from '../../../discover/webhook/webhookServer.ts';
import type { InjectorConfig } from '../../../discover/webhook/podInjector.ts';

export interface Certs {
  dir: string;
  ca: Buffer;
  certFile: string;
  keyFile: string;
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA and a server certificate for localhost/127.0.0.1 signed by it, in a temp dir. */
export function makeCerts(): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-webhook-'));
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '1',
      '-subj',
      '/CN=shoal-test-ca',
    ],
    dir,
  );
  issueServerCert(dir, 'tls');
  return {
    dir,
    ca: readFileSync(join(dir, 'ca.crt')),
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Issues <name>.crt/<name>.key for localhost, signed by the dir's CA. */
export function issueServerCert(dir: string, name: string): void {
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      '/CN=shoal-discover.shoal.svc',
    ],
    dir,
  );
  const ext = `${name}.ext`;
  execFileSync('sh', ['-c', `printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ${ext}`], { cwd: dir });
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '1',
      '-extfile',
      ext,
    ],
    dir,
  );
}

export const injectorConfig: InjectorConfig = {
  sidecarImage: 'ghcr.io/shoal-mesh/shoal:0.1.0',
  discoverUrl: 'http://shoal-discover.shoal.svc:6100',
  dnsUpstream: '10.96.0.10',
  clusterDomain: 'cluster.local',
  proxyCpu: '100m',
  proxyMemory: '64Mi',
  proxyMemoryLimit: '128Mi',
  tokenAudience: 'shoal',
  tokenExpirationSeconds: 3600,
  legacySidecar: false,
};

export interface Started {
  webhook: Webhook;
  certs: Certs;
  events: Array<{ namespace: string; podName: string; reason: string; message: string }>;
  close(): Promise<void>;
}

export async function startTestWebhook(overrides: Partial<WebhookOptions> = {}, injector: Partial<InjectorConfig> = {}): Promise<Started> {
  const certs = makeCerts();
  const events: Started['events'] = [];
  const webhook = await startWebhook({
    host: '127.0.0.1',
    port: 0,
    certFile: certs.certFile,
    keyFile: certs.keyFile,
    injector: { ...injectorConfig, ...injector },
    recordEvent: (namespace, podName, reason, message) => events.push({ namespace, podName, reason, message }),
    log: pino({ level: 'silent' }),
    ...overrides,
  });
  return {
    webhook,
    certs,
    events,
    async close() {
      await webhook.close();
      certs.cleanup();
    },
  };
}

export interface HttpsResult {
  status: number;
  body: any;
  text: string;
  peerFingerprint: string;
}

/** POSTs (or sends `method`) over HTTPS, trusting only the test CA. */
export function send(
  port: number,
  ca: Buffer,
  body: unknown,
  opts: { method?: string; path?: string; raw?: string | Buffer } = {},
): Promise<HttpsResult> {
  const payload = opts.raw ?? (body === undefined ? '' : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        ca,
        servername: 'localhost',
        method: opts.method ?? 'POST',
        path: opts.path ?? '/inject',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: any;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text, peerFingerprint: peer.fingerprint256 });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** An AdmissionReview v1 request for a CREATE of `object`, as the API server sends it. */
export function review(
  object: any,
  opts: { kind?: string; namespace?: string; operation?: string; resource?: string; dryRun?: boolean; name?: string } = {},
): any {
  const kind = opts.kind ?? object.kind ?? 'Pod';
  const resource = opts.resource ?? (kind === 'Pod' ? 'pods' : 'services');
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind },
      resource: { group: '', version: 'v1', resource },
      requestKind: { group: '', version: 'v1', kind },
      requestResource: { group: '', version: 'v1', resource },
      ...(opts.name ? { name: opts.name } : {}),
      namespace: opts.namespace ?? object.metadata?.namespace ?? 'shop',
      operation: opts.operation ?? 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: randomUUID(),
        groups: ['system:serviceaccounts', 'system:authenticated'],
      },
      object,
      oldObject: null,
      dryRun: opts.dryRun ?? false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

/** The response's JSONPatch applied to a copy of `object` (fast-json-patch validates every operation). */
export function patched(object: any, response: any): any {
  if (!response.patch) return structuredClone(object);
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
  return fastJsonPatch.applyPatch(structuredClone(object), ops, true, false).newDocument;
}

export function decodePatch(response: any): any[] {
  return response.patch ? JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) : [];
}
