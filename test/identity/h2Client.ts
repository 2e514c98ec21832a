// Clients for the identity tests on HTTP/2 ports: one node:http2 request on a fresh connection (h2c
// or TLS, never throwing), curl, and the addresses of a mesh's h2 listeners.
import { execFile } from 'node:child_process';
import { connect as h2Connect, type IncomingHttpHeaders } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Mesh } from './meshFixture.ts';

export interface H2Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  error: string;
  /** TLS only: the negotiated protocol version, ALPN and the server's URI SANs. */
  tlsVersion: string | null;
  alpn: string | null;
  serverSans: string;
}

export type TlsOptions = { key?: string; cert?: string; ca: string[]; ALPNProtocols?: string[] };

/** One request on a fresh HTTP/2 connection: h2c with prior knowledge, or TLS when tls is given. Never throws. */
export function h2Get(
  target: string,
  path: string,
  headers: Record<string, string> = {},
  tls: TlsOptions | null = null,
  timeoutMs = 10_000,
): Promise<H2Answer> {
  return new Promise((resolve) => {
    const out: H2Answer = { status: 0, headers: {}, body: '', error: '', tlsVersion: null, alpn: null, serverSans: '' };
    const session = tls
      ? h2Connect(`https://${target}`, {
          key: tls.key,
          cert: tls.cert,
          ca: tls.ca,
          minVersion: 'TLSv1.3',
          ALPNProtocols: tls.ALPNProtocols ?? ['h2'],
          // The sidecar's certificate names a SPIFFE ID, no host: the chain is checked against the bundle, the name here.
          checkServerIdentity: () => undefined,
        })
      : h2Connect(`http://${target}`);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      resolve(out);
    };
    const timer = setTimeout(() => {
      out.error ||= 'timeout';
      finish();
    }, timeoutMs);
    session.on('error', (e) => {
      out.error ||= e.message;
      finish();
    });
    session.on('close', finish);
    session.once('connect', () => {
      if (!tls) return;
      const s = session.socket as unknown as TLSSocket;
      out.tlsVersion = s.getProtocol();
      out.alpn = session.alpnProtocol ?? null;
      out.serverSans = s.getPeerX509Certificate()?.subjectAltName ?? '';
    });
    const st = session.request({ ':path': path, ...headers });
    st.on('response', (h) => {
      out.status = Number(h[':status']);
      out.headers = h;
    });
    st.on('data', (d: Buffer) => {
      out.body += d.toString();
    });
    st.on('error', (e) => {
      out.error ||= e.message;
    });
    st.on('close', finish);
    st.end();
  });
}

/** Runs a command to its end (stdin: `input`, then closed); stdout and stderr together. */
export function run(cmd: string, args: string[], input = ''): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
    });
    child.stdin?.end(input);
  });
}

/** api's inbound listen port, as host:port. */
export const target = (m: Mesh) => `${m.apiInbound.host}:${m.apiInbound.port}`;
/** A caller's outbound h2 listener for api, as host:port. */
export const outbound = (m: Mesh, who: 'web' | 'other' = 'web') =>
  who === 'web' ? `${m.webOutbound.host}:${m.webOutbound.port}` : `${m.otherOutbound.host}:${m.otherOutbound.port}`;
