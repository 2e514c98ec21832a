// The sidecar's side of workload identity: its key (made here, kept in memory, never logged), its
// certificate from the mesh CA (renewed at half-life: new connections take the new one, open ones
// keep theirs), TLS 1.3 origination to meshed endpoints with the peer's SPIFFE ID checked, and
// mutual-TLS termination on inbound listen ports in permissive or strict mode with the port's policy.
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect as netConnect, Socket, type NetConnectOpts, type Server } from 'node:net';
import type { ConnectionOptions, PeerCertificate, SecureContext, TLSSocket } from 'node:tls';
import { nodeHttp, nodeTls } from '../lazyBuiltins.ts';
import { Counter, type Registry } from '../../shared/metricsRegistry.ts';
import type { buildConnector } from 'undici';
import { authzAllows, type AuthzPolicy } from '../../shared/authzPolicy.ts';
import { parseSpiffeId, uriSans, type MtlsMode, type WorkloadId } from '../../shared/identity.ts';
import type { Logger } from '../../shared/log.ts';
import type { ClusterPolicy, Snapshot } from '../../shared/snapshot.ts';
import { createCsr } from './csr.ts';

/** Set on a cluster's policy object: the sidecar whose cluster it is (one process may host several in tests). */
export const MESH = Symbol('shoal.meshTls');
type TaggedPolicy = ClusterPolicy & { [MESH]?: MeshTls };

const PEER = Symbol('shoal.peer');
const HANDSHAKE_TIMEOUT_MS = 10_000;
const TLS_RECORD_HANDSHAKE = 0x16;
// What inbound listen ports offer in ALPN: HTTP/1.1 ports only http/1.1 (an h2 caller fails the
// handshake instead of sending a preface to an HTTP/1.1 listener); h2 ports and L4 ports both.
const ALPN_H1 = ['http/1.1'];
const ALPN_ANY = ['h2', 'http/1.1'];

/** One inbound port's current settings; replaced in place per snapshot, read at accept and per request. */
export interface InboundGate {
  name: string;
  mode: MtlsMode;
  /** Policy decided per request (HTTP/1.1, HTTP/2, gRPC ports), else per connection (L4). */
  l7: boolean;
  /** ALPN protocols the TLS side offers. */
  alpn: string[];
  authz: AuthzPolicy | undefined;
}

/** What an inbound connection proved. */
export interface Peer {
  identity: WorkloadId | null;
  spiffeId: string;
  gate: InboundGate;
  /** x-forwarded-client-cert value, '' for a caller without a verified identity. */
  xfcc: string;
}

type TaggedSocket = Socket & { [PEER]?: Peer };

/** For L7 inbound requests: why the caller is denied, or null. Untagged sockets (identity off) pass. */
export function inboundDenied(socket: Socket, method: string | undefined, path: string | undefined): string | null {
  return peerDenied((socket as TaggedSocket)[PEER], method, path);
}

/** What an inbound connection proved (undefined: identity off, or not an inbound socket). Read once per connection. */
export function peerOf(socket: Socket): Peer | undefined {
  return (socket as TaggedSocket)[PEER];
}

/** Why this peer may not make this request, or null (also when there is no peer or no policy). */
export function peerDenied(p: Peer | undefined, method: string | undefined, path: string | undefined): string | null {
  if (p === undefined || p.gate.authz === undefined) return null;
  if (authzAllows(p.gate.authz, p.identity, method, path)) return null;
  return `${p.identity ? p.spiffeId : 'a caller without a mesh identity'} may not ${method ?? ''} ${path ?? ''} on ${p.gate.name}`;
}

/** The x-forwarded-client-cert value for requests read from this socket; '' when none. */
export function forwardedClientCert(socket: Socket): string {
  return (socket as TaggedSocket)[PEER]?.xfcc ?? '';
}

/** Outbound connect for the sidecar's pools: mutual TLS to meshed endpoints, plain TCP otherwise. */
export function meshConnect(policy: ClusterPolicy, options: NetConnectOpts & { host: string; port: number; onread?: unknown }): Socket {
  const m = (policy as TaggedPolicy)[MESH];
  return m === undefined ? netConnect(options) : m.connect(options);
}

/**
 * node:http2's createConnection for an endpoint's upstream sessions: mutual TLS with ALPN h2 when
 * the endpoint is meshed, undefined otherwise (node dials h2c itself). Called per new session, so a
 * rotated certificate applies to the sessions opened after it.
 */
export function meshH2Connection(policy: ClusterPolicy, host: string, port: number): { connect: () => Socket; mesh: MeshTls } | undefined {
  const m = (policy as TaggedPolicy)[MESH];
  if (m === undefined || !m.isMeshed(host, port)) return undefined;
  return { connect: () => m.connect({ host, port, noDelay: true }, 'h2'), mesh: m };
}

/** undici's `connect` option for an endpoint's pool (bodies, upgrades), or undefined when identity is off. */
export function meshUndiciConnector(policy: ClusterPolicy, connectTimeoutMs: number): buildConnector.connector | undefined {
  const m = (policy as TaggedPolicy)[MESH];
  if (m === undefined) return undefined;
  return (opts: buildConnector.Options, callback: buildConnector.Callback) => {
    const s = m.connect({ host: opts.hostname, port: Number(opts.port), noDelay: true });
    let done = false;
    const timer = setTimeout(
      () => s.destroy(Object.assign(new Error(`connect timeout after ${connectTimeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' })),
      connectTimeoutMs,
    );
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.off('error', finish);
      if (err) callback(err, null);
      else callback(null, s);
    };
    s.once((s as Partial<TLSSocket>).encrypted === true ? 'secureConnect' : 'connect', () => finish(null));
    s.once('error', finish);
    return s;
  };
}

interface Credentials {
  context: SecureContext;
  spiffeId: string;
  notAfter: number;
  issuedAt: number;
}

export interface MeshTlsOptions {
  log: Logger;
  registry: Registry;
  /** discover's base URL (the CA's routes live there). */
  caUrl: string;
  /** The projected service-account token presented with the CSR. */
  tokenFile?: string;
}

export class MeshTls {
  private readonly log: Logger;
  private readonly caUrl: string;
  private readonly tokenFile: string | undefined;
  private creds: Credentials | null = null;
  private bundle: string[] = [];
  private roots: X509Certificate[] = [];
  private trustDomain = '';
  private ownId = '';
  /** endpoint address:port -> SPIFFE IDs it may present. */
  private expected = new Map<string, string[]>();
  private readonly sessions = new Map<string, Buffer>();
  /** inbound listen port -> its gate. */
  private readonly gates = new Map<number, InboundGate>();
  private renewTimer: NodeJS.Timeout | null = null;
  /** Bumped at every installed certificate: long-lived sessions (HTTP/2) opened before it are retired. */
  generation = 0;
  private fetching: Promise<void> | null = null;
  private closed = false;
  private readonly inboundResults: Counter<'listener' | 'result'>;
  private readonly outboundResults: Counter<'result'>;
  readonly rotations: Counter;

  constructor(opts: MeshTlsOptions) {
    this.log = opts.log;
    this.caUrl = opts.caUrl.replace(/\/+$/, '');
    this.tokenFile = opts.tokenFile;
    const registers = [opts.registry];
    this.inboundResults = new Counter({
      name: 'shoal_proxy_inbound_connections_by_security_total',
      help: 'Inbound connections by what they proved: mtls, plaintext, refused (strict mode or bad certificate), denied (policy, L4)',
      labelNames: ['listener', 'result'],
      registers,
    });
    this.outboundResults = new Counter({
      name: 'shoal_proxy_outbound_mtls_total',
      help: 'Outbound mTLS handshakes: ok, or failed (peer certificate or identity rejected, no workload certificate)',
      labelNames: ['result'],
      registers,
    });
    this.rotations = new Counter({
      name: 'shoal_proxy_certificate_renewals_total',
      help: 'Workload certificates obtained from the mesh CA',
      registers,
    });
  }

  /** True once the snapshot says the mesh CA runs. */
  get enabled(): boolean {
    return this.trustDomain !== '';
  }

  get certificate(): { spiffeId: string; notAfter: string; issuedAt: string } | null {
    const c = this.creds;
    return c ? { spiffeId: c.spiffeId, notAfter: new Date(c.notAfter).toISOString(), issuedAt: new Date(c.issuedAt).toISOString() } : null;
  }

  /**
   * Takes a snapshot's identity settings before its clusters and listeners are applied: tags the
   * policies of clusters with meshed endpoints, refreshes inbound gates, and gets a certificate if
   * there is none yet (waiting up to waitMs for it).
   */
  async apply(snap: Snapshot, waitMs = 5000): Promise<void> {
    const id = snap.identity;
    if (!id) {
      this.trustDomain = '';
      this.expected = new Map();
      for (const g of this.gates.values()) g.authz = undefined;
      return;
    }
    const bundleChanged = id.trustBundle.join('') !== this.bundle.join('');
    this.trustDomain = id.trustDomain;
    this.bundle = id.trustBundle;
    if (bundleChanged) this.roots = id.trustBundle.map((pem) => new X509Certificate(pem));
    this.ownId = id.spiffeId;
    const expected = new Map<string, string[]>();
    for (const c of snap.clusters) {
      if (!c.peerIdentities) continue;
      let meshed = false;
      for (const e of c.endpoints) {
        if (!e.meshed) continue;
        meshed = true;
        expected.set(`${e.address}:${e.port}`, c.peerIdentities);
      }
      if (meshed) (c.policy as TaggedPolicy)[MESH] = this;
    }
    this.expected = expected;
    for (const i of snap.inbound) {
      // HTTP/2 and gRPC ports (h2 listeners) decide per request too: 403 / PERMISSION_DENIED.
      const l7 = i.mode === 'l7';
      const alpn = l7 && i.protocol === 'http' ? ALPN_H1 : ALPN_ANY;
      const g = this.gates.get(i.listenPort);
      if (g) {
        g.mode = id.mtlsMode;
        g.authz = i.authz;
        g.l7 = l7;
        g.alpn = alpn;
        g.name = i.name;
      } else this.gates.set(i.listenPort, { name: i.name, mode: id.mtlsMode, l7, alpn, authz: i.authz });
    }
    if (this.creds === null || bundleChanged) {
      const got = this.renew();
      await Promise.race([got, new Promise((resolve) => setTimeout(resolve, waitMs).unref())]);
    }
  }

  /** Gets a new key and certificate; retries with backoff until it has one. */
  renew(): Promise<void> {
    this.fetching ??= this.fetchLoop().finally(() => {
      this.fetching = null;
    });
    return this.fetching;
  }

  private async fetchLoop(): Promise<void> {
    let delay = 500;
    while (!this.closed && this.enabled) {
      try {
        await this.fetchOnce();
        return;
      } catch (err) {
        this.log.error({ error: (err as Error).message, retryMs: delay }, 'cannot get a workload certificate from the mesh CA');
        await new Promise((resolve) => setTimeout(resolve, delay * (0.75 + Math.random() * 0.5)).unref());
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  private async fetchOnce(): Promise<void> {
    if (!this.tokenFile)
      throw new Error('no --token-file: the sidecar needs its projected service-account token to ask the mesh CA for a certificate');
    const token = (await readFile(this.tokenFile, 'utf8')).trim();
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = createCsr(privateKey, publicKey, this.ownId);
    const body = await postJson(`${this.caUrl}/v1/identity/csr`, token, { csr });
    const { certificate, trustBundle, spiffeId } = body as { certificate: string; trustBundle: string[]; spiffeId: string };
    const leaf = new X509Certificate(certificate);
    if (!uriSans(leaf.subjectAltName).includes(spiffeId)) throw new Error(`the CA returned a certificate without ${spiffeId}`);
    if (!leaf.checkPrivateKey(privateKey)) throw new Error('the CA returned a certificate for another key');
    this.install(privateKey, certificate, spiffeId, Date.parse(leaf.validTo), trustBundle);
  }

  private install(key: KeyObject, certificate: string, spiffeId: string, notAfter: number, trustBundle: string[]): void {
    // The bundle of the snapshot and the one the CA just sent: trusting both covers a root rotation.
    const ca = [...new Set([...this.bundle, ...trustBundle])];
    // The PEM stays in this process's memory: handed to OpenSSL, never written or logged.
    // sessionIdContext: OpenSSL resumes sessions of a server that verifies clients only with one set.
    const context = nodeTls().createSecureContext({
      key: key.export({ type: 'pkcs8', format: 'pem' }) as string,
      cert: certificate,
      ca,
      minVersion: 'TLSv1.3',
      sessionIdContext: 'shoal-mesh',
    });
    const issuedAt = Date.now();
    this.creds = { context, spiffeId, notAfter, issuedAt };
    this.generation++;
    this.sessions.clear();
    this.rotations.inc();
    // Renew at half of the remaining life: a 24 h certificate is replaced after 12 h.
    const renewIn = Math.max(1000, (notAfter - issuedAt) / 2);
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => void this.renew(), renewIn);
    this.renewTimer.unref();
    this.log.info(
      { spiffeId, notAfter: new Date(notAfter).toISOString(), renewInMs: Math.round(renewIn) },
      'workload certificate installed',
    );
  }

  /** Whether the applied snapshot marks this endpoint meshed (reached over mTLS). */
  isMeshed(host: string, port: number): boolean {
    return this.expected.has(`${host}:${port}`);
  }

  /** Outbound: mTLS to a meshed endpoint (peer identity checked), plain TCP to the others. ALPN says what the caller speaks on it. */
  connect(options: NetConnectOpts & { host: string; port: number; onread?: unknown }, alpn: 'http/1.1' | 'h2' = 'http/1.1'): Socket {
    const key = `${options.host}:${options.port}`;
    const want = this.expected.get(key);
    if (want === undefined) return netConnect(options);
    const creds = this.creds;
    if (creds === null) {
      this.outboundResults.labels('failed').inc();
      const s = new Socket();
      process.nextTick(() => s.destroy(new Error(`no workload certificate yet: cannot open mTLS to ${key}`)));
      return s;
    }
    // Session tickets per endpoint and protocol (an h2 and an HTTP/1.1 connection to one address are different callers).
    const ticketKey = alpn === 'h2' ? `${key} h2` : key;
    const s = nodeTls().connect({
      ...(options as object),
      secureContext: creds.context,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      ALPNProtocols: [alpn],
      session: this.sessions.get(ticketKey),
      // The peer proves a SPIFFE ID the snapshot expects for this endpoint; DNS names play no part.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const ids = uriSans(cert.subjectaltname);
        if (ids.some((id) => want.includes(id))) return undefined;
        return Object.assign(new Error(`peer ${key} presented ${ids.join(', ') || 'no SPIFFE ID'}, expected ${want.join(' or ')}`), {
          code: 'ERR_SHOAL_PEER_IDENTITY',
        });
      },
    } as unknown as ConnectionOptions);
    // tls.connect ignores the noDelay option (net's would honour it): without this, Nagle holds
    // each small request and response for the peer's delayed ACK.
    s.setNoDelay(true);
    s.on('session', (session: Buffer) => this.sessions.set(ticketKey, session));
    s.once('secureConnect', () => this.outboundResults.labels('ok').inc());
    s.once('error', () => {
      this.sessions.delete(ticketKey);
      this.outboundResults.labels('failed').inc();
    });
    return s;
  }

  /**
   * Inbound: puts the mTLS gate in front of a listener's own connection handler. Identity off:
   * connections pass untouched. On: TLS is told from plaintext by the first byte; strict refuses
   * plaintext and unverified certificates; L4 policy closes denied connections at once.
   */
  guardInbound(server: Server, port: number): void {
    const handlers = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    const deliver = (socket: Socket) => {
      for (const h of handlers) h.call(server, socket);
    };
    server.on('connection', (socket: Socket) => {
      const gate = this.gates.get(port);
      if (!this.enabled || gate === undefined) {
        deliver(socket);
        return;
      }
      this.accept(socket, gate, deliver);
    });
  }

  private accept(raw: Socket, gate: InboundGate, deliver: (s: Socket) => void): void {
    raw.setTimeout(HANDSHAKE_TIMEOUT_MS, () => raw.destroy());
    raw.once('error', () => raw.destroy());
    raw.once('data', (first: Buffer) => {
      raw.pause();
      raw.unshift(first);
      raw.setTimeout(0);
      if (first[0] !== TLS_RECORD_HANDSHAKE) {
        if (gate.mode === 'strict') {
          this.inboundResults.labels(gate.name, 'refused').inc();
          raw.destroy();
          return;
        }
        this.admit(raw, gate, null, deliver);
        return;
      }
      const creds = this.creds;
      if (creds === null) {
        this.inboundResults.labels(gate.name, 'refused').inc();
        raw.destroy();
        return;
      }
      raw.setNoDelay(true);
      const tls = new (nodeTls().TLSSocket)(raw, {
        isServer: true,
        secureContext: creds.context,
        requestCert: true,
        rejectUnauthorized: false,
        ALPNProtocols: gate.alpn,
      });
      tls.setTimeout(HANDSHAKE_TIMEOUT_MS, () => tls.destroy());
      tls.once('error', () => tls.destroy());
      tls.once('secure', () => {
        tls.setTimeout(0);
        // Only a tls.Server clears this on its sockets; node:http2 waits for a 'secureConnect' that a
        // server-side socket never emits while it is set (and then fails on the bytes already read).
        (tls as TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
        let identity: WorkloadId | null = null;
        const peer = tls.getPeerX509Certificate();
        if (peer !== undefined && this.trusted(peer)) {
          const ids = uriSans(peer.subjectAltName)
            .map(parseSpiffeId)
            .filter((x) => x !== null);
          identity = ids.find((x) => x.trustDomain === this.trustDomain) ?? null;
        }
        if (identity === null && gate.mode === 'strict') {
          this.inboundResults.labels(gate.name, 'refused').inc();
          tls.destroy();
          return;
        }
        this.admit(tls, gate, identity, deliver);
      });
    });
  }

  /**
   * A client certificate counts when one of the bundle's roots issued and signed it and both are
   * valid now (the CA signs workload certificates directly: no intermediates). A TLSSocket made
   * without a tls.Server never sets `authorized`, so the check is done here, explicitly.
   */
  private trusted(leaf: X509Certificate): boolean {
    const now = Date.now();
    if (leaf.ca || Date.parse(leaf.validFrom) > now || Date.parse(leaf.validTo) < now) return false;
    for (const root of this.roots) {
      if (Date.parse(root.validTo) < now) continue;
      if (leaf.checkIssued(root) && leaf.verify(root.publicKey)) return true;
    }
    return false;
  }

  private admit(socket: Socket, gate: InboundGate, identity: WorkloadId | null, deliver: (s: Socket) => void): void {
    // L4: the policy decides now, per connection. L7: per request (403), so the caller is told why.
    if (!gate.l7 && !authzAllows(gate.authz, identity)) {
      this.inboundResults.labels(gate.name, 'denied').inc();
      socket.destroy();
      return;
    }
    this.inboundResults.labels(gate.name, identity ? 'mtls' : 'plaintext').inc();
    const spiffeId = identity ? `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}` : '';
    (socket as TaggedSocket)[PEER] = { identity, spiffeId, gate, xfcc: identity ? `By=${this.ownId};URI=${spiffeId}` : '' };
    deliver(socket);
    socket.resume();
  }

  close(): void {
    this.closed = true;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = null;
  }
}

function postJson(url: string, token: string, body: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = nodeHttp().request(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': data.length, authorization: `Bearer ${token}` },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = null;
          }
          if (res.statusCode === 200 && parsed) resolve(parsed);
          else
            reject(
              new Error(
                `the mesh CA answered ${res.statusCode}: ${(parsed as { message?: string } | null)?.message ?? text.slice(0, 200)}`,
              ),
            );
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('the mesh CA did not answer within 10 s')));
    req.on('error', reject);
    req.end(data);
  });
}
