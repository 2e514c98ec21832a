// A fake Kubernetes API server for tests and benchmarks, faithful on the wire to what
// @kubernetes/client-node 2.0.1 sends and expects: HTTPS on loopback with its own CA, bearer
// tokens, one global resourceVersion, list/watch with selectors over a bounded event history,
// Status objects for every error, TokenReview, and hooks to break things on purpose. Runs in the
// test's process (startFakeKubeApi / withFakeKubeApi) or as its own (standalone, end of file).
//
// Not faked: server-side apply and dryRun (415/400), protobuf, HTTP/2, managedFields, admission
// and validation beyond names and a few required fields, RBAC beyond TokenInfo.can, namespace
// existence on create (objects may live in namespaces never created), finalizers and graceful
// deletion (a namespace's contents go at once), Event TTLs, resources other than the five in TYPES.
//
// How client-node 2.0.1's informer (ListWatch: dist/cache.js, dist/watch.js) behaves against it.
// [T] = asserted in test/lib/fakeKubeApi.test.ts, [O] = observed in a run, [C] = read in its code.
// - start() calls the list function (the CoreV1Api/DiscoveryV1Api list call, whatever query that
//   gives), then watches `PATH?watch=true&resourceVersion=<list RV>[&labelSelector=..]` [T]. It
//   never sends allowWatchBookmarks, timeoutSeconds, limit, continue or resourceVersionMatch [C],
//   so it gets no bookmarks. start() resolves once the watch's response headers arrived [T]
//   (this server flushes them at once, as the real one does).
// - ERROR event with code 410 (a resume from a compacted RV: HTTP 200, the event, end of stream):
//   it clears its RV and, when the stream ends, relists; no 'error' callback; objects gone
//   meanwhile get 'delete' callbacks from the relist [T]. An HTTP 410 status also relists [C].
// - Any other failure: a non-200 watch (401/403/5xx from failRequests()), a failed list, a cut
//   connection (dropWatches(): undici's `TypeError: terminated`, cause UND_ERR_SOCKET [O]):
//   'error' callback and the informer STOPS for good [T]. The caller restarts it.
// - start() after such a stop keeps the last RV: it resumes the watch without relisting [T]; a
//   410 on that resume then forces the relist.
// - Stream ended cleanly by the server (endWatches(), timeoutSeconds): it resumes from its RV, no
//   relist, no error [T]. Consecutive clean ends with no event in between are delayed 0, 1, 2,
//   4 s ... up to 30 s [O]; any event (a BOOKMARK too) resets the delay [C].
// - 30 s without a byte on a watch (stallWatches(); or any quiet resource, as it asks for no
//   bookmarks): client-side TimeoutError, then an immediate resume from its RV [C].
// - Quirks of client-node itself [O], worth guarding in the caller: every stop() is followed by
//   an 'error' callback carrying an AbortError [T] (a restart-on-error handler must ignore it); that
//   late abort runs the informer's own _stop(), so a start() issued right after stop() may lose
//   its new watch to it if that watch connected first. And stop() during the reconnect delay does
//   not cancel it [O]: the watch opens after stop(), and only another stop() ends it.
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { KubeConfig } from '@kubernetes/client-node';

const execFileAsync = promisify(execFile);
const gzipAsync = promisify(gzip);

// ---------------------------------------------------------------------------------------------
// Types

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

/** An object as it travels on the wire (timestamps are strings, not Dates as in client-node's models). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [key: string]: any;
}

export type SupportedKind = 'Service' | 'EndpointSlice' | 'ConfigMap' | 'Namespace' | 'Event';

export interface TokenInfo {
  /** Required unless serviceAccount and namespace are given. */
  username?: string;
  groups?: string[];
  uid?: string;
  /** With serviceAccount: the user is system:serviceaccount:<namespace>:<serviceAccount>. */
  namespace?: string;
  serviceAccount?: string;
  /** Pod the projected token is bound to: shows in TokenReview's user.extra. */
  pod?: string;
  /** Default: the API server's own audience (https://kubernetes.default.svc.cluster.local). */
  audiences?: string[];
  /** An expired token authenticates nothing (401; TokenReview says not authenticated). */
  expired?: boolean;
  /** RBAC stand-in: false → 403 Forbidden. Default: everything allowed. */
  can?: (a: AccessAttributes) => boolean;
}

export interface AccessAttributes {
  verb: 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete';
  group: string;
  resource: string;
  namespace?: string;
  name?: string;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
  status: number;
  user?: string;
  /** Request headers, the Authorization header left out. */
  headers: Record<string, string | string[] | undefined>;
  at: number;
  /** Milliseconds to the end of the response (a watch: 0 until it ends). */
  ms: number;
}

export interface FakeKubeApiOptions {
  /** Serve HTTPS (default) or plain HTTP (the kubeconfig then sets insecure-skip-tls-verify, as client-node requires). */
  tls?: boolean;
  /** Period of BOOKMARK events for watches that asked for them. Default 1000 ms. */
  bookmarkIntervalMs?: number;
  /** Events kept for watch resumption (up to an eighth more before a trim); older resourceVersions get 410 Expired. Default 10,000. */
  historyLimit?: number;
  /** Server-side watch timeout when the client sends no timeoutSeconds (the real one uses ~30-60 min). Default: none. */
  watchTimeoutMs?: number;
  /** Gzip lists over 128 KiB for clients that accept it, as the real server does. Default true. */
  gzip?: boolean;
}

/** Which requests a fault applies to: a RegExp on the path, or a test of the log entry. */
export type RequestMatch = RegExp | ((e: RequestLogEntry) => boolean);

function matchRequest(m: RequestMatch | undefined, e: RequestLogEntry): boolean {
  return m === undefined || (m instanceof RegExp ? m.test(e.path) : m(e));
}

export interface EndpointSpec {
  ip: string;
  /** Omitted when undefined: Kubernetes reads a nil condition as true for ready and serving. */
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zone?: string;
  nodeName?: string;
  hostname?: string;
  /** Pod name for targetRef. */
  pod?: string;
}

export interface EndpointPortSpec {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface ServicePortSpec {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface ServiceOptions {
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  /** 'None' makes it headless. */
  clusterIP?: string;
  externalName?: string;
  selector?: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// Resource types

interface ResourceType {
  kind: SupportedKind;
  listKind: string;
  plural: string;
  group: string;
  apiVersion: string;
  /** '/api/v1' or '/apis/<group>/<version>' */
  prefix: string;
  namespaced: boolean;
  generation: boolean;
  /** What DELETE answers, as the real registry does: the object, or a Success Status. */
  deleteReturnsObject: boolean;
  /** `{"kind":..,"apiVersion":..,` prepended to an item's JSON to make a whole object. */
  head: string;
}

function resourceType(kind: SupportedKind, plural: string, group: string, version: string, namespaced: boolean, generation: boolean, deleteReturnsObject: boolean): ResourceType {
  const apiVersion = group ? `${group}/${version}` : version;
  return {
    kind, listKind: `${kind}List`, plural, group, apiVersion, namespaced, generation, deleteReturnsObject,
    prefix: group ? `/apis/${group}/${version}` : `/api/${version}`,
    head: `{"kind":${JSON.stringify(kind)},"apiVersion":${JSON.stringify(apiVersion)},`,
  };
}

const TYPES: ResourceType[] = [
  resourceType('Service', 'services', '', 'v1', true, true, true),
  resourceType('ConfigMap', 'configmaps', '', 'v1', true, false, false),
  resourceType('Namespace', 'namespaces', '', 'v1', false, false, false),
  resourceType('EndpointSlice', 'endpointslices', 'discovery.k8s.io', 'v1', true, true, false),
  // core/v1 Events, as the injection webhook records them on pods (stored and listed; no TTL).
  resourceType('Event', 'events', '', 'v1', true, false, false),
];
const BY_KIND = new Map<string, ResourceType>(TYPES.map((t) => [t.kind, t]));
const BY_PATH = new Map<string, ResourceType>(TYPES.map((t) => [`${t.prefix}/${t.plural}`, t]));

export const API_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const APP_LABEL = 'shoal.dev/app';
export const PLUGIN_LABEL = 'shoal.dev/plugin-id';
export const PLUGIN_CONFIG_KEY = 'plugin-config';

// ---------------------------------------------------------------------------------------------
// Errors as the real server writes them

class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details?: Record<string, unknown>;
  constructor(code: number, reason: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
  status(): Record<string, unknown> {
    return statusObject(this.code, this.reason, this.message, this.details);
  }
}

function statusObject(code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  const s: Record<string, unknown> = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason };
  if (details) s.details = details;
  s.code = code;
  return s;
}

const REASONS: Record<number, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed',
  409: 'Conflict', 410: 'Expired', 413: 'RequestEntityTooLarge', 415: 'UnsupportedMediaType', 422: 'Invalid',
  429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
};

function injectedError(code: number): ApiError {
  const reason = REASONS[code] ?? 'InternalError';
  const message = code === 503 ? 'the server is currently unable to handle the request'
    : code === 429 ? 'Too many requests, please try again later.'
      : code === 403 ? 'forbidden: injected by the test' : `injected failure (${code})`;
  return new ApiError(code, reason, message, code === 429 || code === 503 ? { retryAfterSeconds: 1 } : undefined);
}

const notFound = (rt: ResourceType, name: string) =>
  new ApiError(404, 'NotFound', `${rt.plural}${rt.group ? '.' + rt.group : ''} "${name}" not found`, { name, group: rt.group || undefined, kind: rt.plural });
const conflict = (rt: ResourceType, name: string) =>
  new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${rt.plural}${rt.group ? '.' + rt.group : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, group: rt.group || undefined, kind: rt.plural });
const invalid = (rt: ResourceType, name: string, field: string, reason: string, detail: string) =>
  new ApiError(422, 'Invalid', `${rt.kind}${rt.group ? '.' + rt.group : ''} "${name}" is invalid: ${field}: ${detail}`, {
    name, group: rt.group || undefined, kind: rt.kind, causes: [{ reason, message: detail, field }],
  });

// ---------------------------------------------------------------------------------------------
// Selectors

interface LabelRequirement { key: string; op: 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin'; values: string[] }
interface FieldRequirement { field: 'metadata.name' | 'metadata.namespace'; equal: boolean; value: string }

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./]*`;
const VALUE = String.raw`[-A-Za-z0-9_.]*`;
const RE_NOT_EXISTS = new RegExp(`^!\\s*(${KEY})$`);
const RE_SET = new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\(([^)]*)\\)$`);
const RE_EQ = new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`);
const RE_EXISTS = new RegExp(`^(${KEY})$`);

function splitTerms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '(') depth++;
    else if (s[i] === ')') depth--;
    else if (s[i] === ',' && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

export function parseLabelSelector(s: string): LabelRequirement[] {
  return splitTerms(s).map((term) => {
    let m = RE_NOT_EXISTS.exec(term);
    if (m) return { key: m[1], op: '!exists', values: [] };
    m = RE_SET.exec(term);
    if (m) {
      const values = m[3].split(',').map((v) => v.trim());
      if (values.some((v) => !new RegExp(`^${VALUE}$`).test(v))) throw new ApiError(400, 'BadRequest', `unable to parse requirement: invalid value in ${JSON.stringify(term)}`);
      return { key: m[1], op: m[2] as 'in' | 'notin', values };
    }
    m = RE_EQ.exec(term);
    if (m) return { key: m[1], op: m[2] === '!=' ? '!=' : '=', values: [m[3]] };
    m = RE_EXISTS.exec(term);
    if (m) return { key: m[1], op: 'exists', values: [] };
    throw new ApiError(400, 'BadRequest', `unable to parse requirement: found '${term}', expected: key, !key, key=value, key!=value, key in (..) or key notin (..)`);
  });
}

function labelsMatch(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  for (const r of reqs) {
    const v = labels?.[r.key];
    switch (r.op) {
      case 'exists': if (v === undefined) return false; break;
      case '!exists': if (v !== undefined) return false; break;
      case '=': if (v !== r.values[0]) return false; break;
      case '!=': if (v === r.values[0]) return false; break;
      case 'in': if (v === undefined || !r.values.includes(v)) return false; break;
      case 'notin': if (v !== undefined && r.values.includes(v)) return false; break;
    }
  }
  return true;
}

function parseFieldSelector(s: string): FieldRequirement[] {
  return splitTerms(s).map((term) => {
    const m = /^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw new ApiError(400, 'BadRequest', `invalid selector: '${s}'; can't understand '${term}'`);
    if (m[1] !== 'metadata.name' && m[1] !== 'metadata.namespace') throw new ApiError(400, 'BadRequest', `field label not supported: ${m[1]}`);
    return { field: m[1], equal: m[2] !== '!=', value: m[3].trim() };
  });
}

function fieldsMatch(reqs: FieldRequirement[], meta: ObjectMeta): boolean {
  for (const r of reqs) {
    const v = (r.field === 'metadata.name' ? meta.name : meta.namespace) ?? '';
    if ((v === r.value) !== r.equal) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Store, history, watchers

interface Stored {
  obj: KubeObject;
  /** JSON without kind/apiVersion: how list items travel. */
  item: string;
  /** Whole-object JSON, made on first use (GET, watch). */
  whole?: string;
  key: string;
  ns: string;
  rv: number;
}

interface Change {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  rt: ResourceType;
  cur: Stored;
  prev?: Stored;
}

interface Watcher {
  rt: ResourceType;
  ns: string | undefined;
  labels: LabelRequirement[];
  fields: FieldRequirement[];
  res: ServerResponse;
  bookmarks: boolean;
  stalled: boolean;
  timer?: NodeJS.Timeout;
}

function whole(rt: ResourceType, s: Stored): string {
  return (s.whole ??= rt.head + s.item.slice(1));
}

function keyOf(ns: string, name: string): string {
  return `${ns}/${name}`;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((v, i) => deepEqual(v, bb[i]));
  }
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new ApiError(400, 'BadRequest', 'json patch must be an array of operations');
  let root = structuredClone(doc);
  const parse = (p: unknown): string[] => {
    if (typeof p !== 'string' || (p !== '' && !p.startsWith('/'))) throw new ApiError(422, 'Invalid', `invalid JSON pointer ${JSON.stringify(p)}`);
    return p === '' ? [] : p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  };
  const parentOf = (path: string[]): [Record<string, unknown> | unknown[], string] => {
    let node: unknown = root;
    for (const seg of path.slice(0, -1)) {
      node = (node as Record<string, unknown>)?.[seg];
      if (typeof node !== 'object' || node === null) throw new ApiError(422, 'Invalid', `jsonpatch: missing path /${path.join('/')}`);
    }
    return [node as Record<string, unknown>, path[path.length - 1]];
  };
  const get = (path: string[]): unknown => {
    let node: unknown = root;
    for (const seg of path) {
      if (typeof node !== 'object' || node === null || !(seg in node)) throw new ApiError(422, 'Invalid', `jsonpatch: missing path /${path.join('/')}`);
      node = (node as Record<string, unknown>)[seg];
    }
    return node;
  };
  const remove = (path: string[]): unknown => {
    const [parent, last] = parentOf(path);
    const v = get(path);
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
    return v;
  };
  const add = (path: string[], value: unknown): void => {
    if (path.length === 0) {
      root = value;
      return;
    }
    const [parent, last] = parentOf(path);
    if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, value);
    else parent[last] = value;
  };
  for (const op of ops as Array<Record<string, unknown>>) {
    const path = parse(op.path);
    switch (op.op) {
      case 'add': add(path, structuredClone(op.value)); break;
      case 'remove': remove(path); break;
      case 'replace': get(path); remove(path); add(path, structuredClone(op.value)); break;
      case 'move': { const v = remove(parse(op.from)); add(path, v); break; }
      case 'copy': add(path, structuredClone(get(parse(op.from)))); break;
      case 'test':
        if (!deepEqual(get(path), op.value)) throw new ApiError(422, 'Invalid', `jsonpatch test operation does not apply: doc is missing path: ${String(op.path)}`);
        break;
      default: throw new ApiError(422, 'Invalid', `Unexpected kind: ${String(op.op)}`);
    }
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// TLS material

async function makeCertificates(dir: string): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const run = (args: string[]) => execFileAsync('openssl', args, { cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=fake-kube-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kube-apiserver']);
  await writeFile(join(dir, 'ext.cnf'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc',
    'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth', '',
  ].join('\n'));
  await run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', '2', '-extfile', 'ext.cnf', '-out', 'server.crt']);
  const [caPem, certPem, keyPem] = await Promise.all(['ca.crt', 'server.crt', 'server.key'].map((f) => readFile(join(dir, f), 'utf8')));
  return { caPem, certPem, keyPem };
}

// ---------------------------------------------------------------------------------------------
// The server

const MAX_BODY = 3 * 1024 * 1024;

export class FakeKubeApi {
  /** https://127.0.0.1:PORT (http:// with tls: false). */
  url = '';
  port = 0;
  /** PEM of the CA that signed the server certificate ('' with tls: false). */
  caPem = '';
  readonly tls: boolean;
  /** Every request, in order (watches are logged when they start). */
  readonly requestLog: RequestLogEntry[] = [];

  private server: Server | undefined;
  private closed = false;
  private rv = 1000;
  /** History holds every change with rv > compactedRv. */
  private compactedRv = 1000;
  private history: Change[] = [];
  private readonly historyLimit: number;
  private readonly store = new Map<ResourceType, Map<string, Stored>>(TYPES.map((t) => [t, new Map()]));
  private readonly watchers = new Set<Watcher>();
  private readonly tokens = new Map<string, TokenInfo>();
  private readonly bookmarkTimer: NodeJS.Timeout;
  private readonly watchTimeoutMs: number | undefined;
  private failure: { until: number; status: number; match?: RequestMatch } | null = null;
  private delay: { ms: number; match?: RequestMatch } | null = null;
  private readonly gzipLists: boolean;
  private nextIp = 1;

  constructor(opts: FakeKubeApiOptions = {}) {
    this.tls = opts.tls ?? true;
    this.historyLimit = opts.historyLimit ?? 10_000;
    this.watchTimeoutMs = opts.watchTimeoutMs;
    this.gzipLists = opts.gzip ?? true;
    this.bookmarkTimer = setInterval(() => this.sendBookmarks(), opts.bookmarkIntervalMs ?? 1000);
    this.bookmarkTimer.unref();
  }

  /** Generates the certificates and listens on 127.0.0.1, port 0. */
  async listen(): Promise<this> {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.send(res, 500, statusObject(500, 'InternalError', `fake API server: ${(err as Error).message}`));
        else res.destroy();
      });
    };
    if (this.tls) {
      const dir = await mkdtemp(join(tmpdir(), 'fake-kube-'));
      const { caPem, certPem, keyPem } = await makeCertificates(dir).finally(() => rm(dir, { recursive: true, force: true }));
      this.caPem = caPem;
      this.server = createHttpsServer({ cert: certPem, key: keyPem }, handler);
    } else {
      this.server = createHttpServer(handler);
    }
    const server = this.server;
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.url = `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
    return this;
  }

  // ----- credentials -------------------------------------------------------------------------

  addToken(token: string, info: TokenInfo): void {
    if (!info.username && !(info.serviceAccount && info.namespace)) throw new Error('addToken: give a username, or a serviceAccount and its namespace');
    this.tokens.set(token, info);
  }

  removeToken(token: string): void {
    this.tokens.delete(token);
  }

  /** A KubeConfig for client-node pointing here with the CA and the bearer token. */
  kubeConfig(token: string, opts: { namespace?: string } = {}): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, caData: this.tls ? Buffer.from(this.caPem).toString('base64') : undefined, skipTLSVerify: !this.tls }],
      users: [{ name: 'fake-user', token }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake-user', namespace: opts.namespace }],
      currentContext: 'fake',
    });
    return kc;
  }

  /** Writes a kubeconfig file (for `--kubeconfig FILE`) into dir and returns its path. */
  async writeKubeconfigFile(dir: string, token: string, opts: { namespace?: string } = {}): Promise<string> {
    const file = join(dir, `kubeconfig-${randomBytes(4).toString('hex')}.yaml`);
    const cluster: Record<string, unknown> = { server: this.url };
    if (this.tls) cluster['certificate-authority-data'] = Buffer.from(this.caPem).toString('base64');
    else cluster['insecure-skip-tls-verify'] = true;
    // JSON is YAML: no YAML writer needed.
    const config = {
      apiVersion: 'v1', kind: 'Config', 'current-context': 'fake',
      clusters: [{ name: 'fake', cluster }],
      users: [{ name: 'fake-user', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake-user', ...(opts.namespace ? { namespace: opts.namespace } : {}) } }],
    };
    await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 });
    return file;
  }

  /**
   * Writes what a pod sees for in-cluster config under `${dir}/var/run/secrets/kubernetes.io/serviceaccount/`
   * (ca.crt, token, namespace). Use `kc.loadFromCluster(pathPrefix)` with `env` set in process.env.
   */
  async writeInClusterFiles(dir: string, token: string, namespace: string): Promise<{ pathPrefix: string; env: { KUBERNETES_SERVICE_HOST: string; KUBERNETES_SERVICE_PORT: string } }> {
    const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
    await mkdir(sa, { recursive: true });
    await Promise.all([writeFile(join(sa, 'ca.crt'), this.caPem), writeFile(join(sa, 'token'), token), writeFile(join(sa, 'namespace'), namespace)]);
    return { pathPrefix: dir, env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(this.port) } };
  }

  // ----- state helpers for tests ---------------------------------------------------------------

  /** The global resourceVersion (of the last write). */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Creates or replaces (unconditionally) any supported object; watchers see it. Returns the stored object. */
  apply(obj: object): KubeObject {
    const o = obj as KubeObject;
    const rt = this.typeOf(o);
    const ns = rt.namespaced ? (o.metadata?.namespace || 'default') : '';
    const name = o.metadata?.name ?? '';
    const existing = this.store.get(rt)!.get(keyOf(ns, name));
    const body = structuredClone(o);
    if (body.metadata) delete body.metadata.resourceVersion;
    const s = existing ? this.update(rt, ns, name, body, false) : this.create(rt, ns, body);
    return structuredClone(s.obj);
  }

  /** Deletes an object; false if there was none. */
  remove(kind: SupportedKind, namespace: string, name: string): boolean {
    const rt = BY_KIND.get(kind)!;
    const ns = rt.namespaced ? namespace : '';
    if (!this.store.get(rt)!.has(keyOf(ns, name))) return false;
    this.delete(rt, ns, name, undefined);
    return true;
  }

  /** A copy of the stored object, or undefined. */
  get(kind: SupportedKind, namespace: string, name: string): KubeObject | undefined {
    const rt = BY_KIND.get(kind)!;
    const s = this.store.get(rt)!.get(keyOf(rt.namespaced ? namespace : '', name));
    return s ? structuredClone(s.obj) : undefined;
  }

  /** Copies of every stored object of a kind, optionally in one namespace. */
  list(kind: SupportedKind, namespace?: string): KubeObject[] {
    const rt = BY_KIND.get(kind)!;
    return [...this.store.get(rt)!.values()].filter((s) => namespace === undefined || s.ns === namespace).map((s) => structuredClone(s.obj));
  }

  // ----- fault injection -----------------------------------------------------------------------

  /**
   * Moves the compaction point past every existing resourceVersion (one no-op revision is
   * spent, so a fresh list's RV stays watchable): every resume from an older RV gets 410 Expired.
   * Open watches keep streaming; pair with dropWatches()/endWatches() to force a resume.
   */
  compact(): void {
    this.rv++;
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** compact(), then every open watch gets an ERROR 410 Expired event and is closed, as when the watch cache is reset. */
  expireWatches(): number {
    this.compact();
    const line = `{"type":"ERROR","object":${JSON.stringify(statusObject(410, 'Expired', 'The resourceVersion for the provided watch is too old.'))}}\n`;
    const n = this.watchers.size;
    for (const w of [...this.watchers]) {
      w.res.write(line);
      this.closeWatch(w, false);
    }
    return n;
  }

  /** Cuts every open watch connection (socket destroyed mid-stream), as a crash or a network cut would. */
  dropWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) this.closeWatch(w, true);
    return n;
  }

  /** Ends every open watch cleanly (last chunk sent), as the server does on its own watch timeout. */
  endWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) this.closeWatch(w, false);
    return n;
  }

  /** Open watches stop receiving anything (events, bookmarks) but stay connected. */
  stallWatches(): number {
    for (const w of this.watchers) w.stalled = true;
    return this.watchers.size;
  }

  /**
   * Answers every request (or those matched: a RegExp on the path, or a test of the log entry,
   * e.g. `(e) => e.watch`) with this status, as a Status object, for ms milliseconds.
   * Open watches are left alone: drop them too to make clients reconnect into the failure.
   */
  failRequests(ms: number, status = 503, match?: RequestMatch): void {
    this.failure = { until: Date.now() + ms, status, match };
  }

  /** Holds every matching request (see failRequests) ms before answering it; latency(0) ends it. */
  latency(ms: number, match?: RequestMatch): void {
    this.delay = ms > 0 ? { ms, match } : null;
  }

  /** Ends failRequests() early. */
  healRequests(): void {
    this.failure = null;
  }

  /** Open watch connections, optionally only those on one kind. */
  watchCount(kind?: SupportedKind): number {
    let n = 0;
    for (const w of this.watchers) if (!kind || w.rt.kind === kind) n++;
    return n;
  }

  /** Requests so far that match: e.g. lists of services = requests({ method: 'GET', path: '/api/v1/services', watch: false }). */
  requests(filter: { method?: string; path?: string | RegExp; watch?: boolean } = {}): RequestLogEntry[] {
    return this.requestLog.filter((e) => (filter.method === undefined || e.method === filter.method) &&
      (filter.watch === undefined || e.watch === filter.watch) &&
      (filter.path === undefined || (typeof filter.path === 'string' ? e.path === filter.path : filter.path.test(e.path))));
  }

  /**
   * The fault hooks over HTTP, for a fake running in another process (see the standalone mode at
   * the end of this file). Any registered token may use them; no real client calls /fake/.
   */
  private control(method: string, path: string, q: URLSearchParams): Record<string, unknown> {
    const num = (k: string, d: number) => (q.has(k) ? Number(q.get(k)) : d);
    const match = q.get('path') ? new RegExp(q.get('path')!) : q.get('watch') ? (e: RequestLogEntry) => e.watch === (q.get('watch') === 'true') : undefined;
    if (method === 'GET' && path === '/fake/stats') {
      return { resourceVersion: this.resourceVersion, watches: this.watchCount(), requests: this.requestLog.length, objects: Object.fromEntries(TYPES.map((t) => [t.kind, this.store.get(t)!.size])) };
    }
    if (method !== 'POST') throw new ApiError(405, 'MethodNotAllowed', 'the /fake/ hooks take POST');
    switch (path) {
      case '/fake/compact': this.compact(); return { resourceVersion: this.resourceVersion };
      case '/fake/expire-watches': return { watches: this.expireWatches() };
      case '/fake/drop-watches': return { watches: this.dropWatches() };
      case '/fake/end-watches': return { watches: this.endWatches() };
      case '/fake/stall-watches': return { watches: this.stallWatches() };
      case '/fake/fail': this.failRequests(num('ms', 10_000), num('status', 503), match); return {};
      case '/fake/heal': this.healRequests(); this.latency(0); return {};
      case '/fake/latency': this.latency(num('ms', 0), match); return {};
      default: throw new ApiError(404, 'NotFound', `no fake hook ${path}`);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    for (const w of [...this.watchers]) this.closeWatch(w, true);
    if (this.server && !this.closed) {
      this.closed = true;
      const server = this.server;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
  }

  // ----- writes ------------------------------------------------------------------------------

  private typeOf(o: KubeObject): ResourceType {
    const rt = o.kind ? BY_KIND.get(o.kind) : undefined;
    if (!rt) throw new Error(`fake API server: unsupported kind ${String(o.kind)} (supported: ${TYPES.map((t) => t.kind).join(', ')})`);
    return rt;
  }

  private commit(rt: ResourceType, type: Change['type'], obj: KubeObject, key: string, ns: string, prev: Stored | undefined): Stored {
    const { kind: _k, apiVersion: _a, ...rest } = obj;
    const cur: Stored = { obj, item: JSON.stringify(rest), key, ns, rv: this.rv };
    const items = this.store.get(rt)!;
    if (type === 'DELETED') items.delete(key);
    else items.set(key, cur);
    const change: Change = { rv: this.rv, type, rt, cur, prev };
    this.history.push(change);
    // Trimmed in batches (an eighth of the limit) so a write is not an O(limit) copy.
    if (this.history.length > this.historyLimit + (this.historyLimit >> 3)) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit);
      this.compactedRv = dropped[dropped.length - 1].rv;
    }
    for (const w of this.watchers) this.deliver(w, change);
    return cur;
  }

  private create(rt: ResourceType, ns: string, body: KubeObject): Stored {
    const meta = body.metadata ?? {};
    let name = meta.name;
    if (!name && meta.generateName) name = meta.generateName + randomBytes(3).toString('hex').slice(0, 5);
    if (!name) throw invalid(rt, '', 'metadata.name', 'FieldValueRequired', 'Required value: name or generateName is required');
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253) {
      throw invalid(rt, name, 'metadata.name', 'FieldValueInvalid', `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`);
    }
    const key = keyOf(ns, name);
    if (this.store.get(rt)!.has(key)) {
      throw new ApiError(409, 'AlreadyExists', `${rt.plural}${rt.group ? '.' + rt.group : ''} "${name}" already exists`, { name, group: rt.group || undefined, kind: rt.plural });
    }
    this.validate(rt, name, body);
    this.rv++;
    const obj = this.stamp(rt, body, {
      name, generateName: meta.generateName, namespace: rt.namespaced ? ns : undefined, uid: randomUUID(),
      resourceVersion: String(this.rv), generation: rt.generation ? 1 : undefined, creationTimestamp: now(),
    });
    this.defaults(rt, obj, undefined);
    return this.commit(rt, 'ADDED', obj, key, ns, undefined);
  }

  /** Replaces an object. A stale metadata.resourceVersion in body → 409; no change → no new revision. */
  private update(rt: ResourceType, ns: string, name: string, body: KubeObject, checkRv: boolean): Stored {
    const key = keyOf(ns, name);
    const old = this.store.get(rt)!.get(key);
    if (!old) throw notFound(rt, name);
    const meta = body.metadata ?? {};
    if (meta.name !== undefined && meta.name !== name) throw new ApiError(400, 'BadRequest', `the name of the object (${meta.name}) does not match the name on the URL (${name})`);
    if (checkRv && meta.resourceVersion !== undefined && meta.resourceVersion !== '' && meta.resourceVersion !== old.obj.metadata!.resourceVersion) throw conflict(rt, name);
    if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== old.obj.metadata!.uid) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${rt.plural} "${name}": Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${old.obj.metadata!.uid}`, { name, kind: rt.plural });
    }
    this.validate(rt, name, body);
    const om = old.obj.metadata!;
    const candidate = this.stamp(rt, body, {
      name, generateName: om.generateName, namespace: om.namespace, uid: om.uid, resourceVersion: om.resourceVersion,
      generation: om.generation, creationTimestamp: om.creationTimestamp,
    });
    this.defaults(rt, candidate, old.obj);
    if (rt.generation && !deepEqual(specOf(candidate), specOf(old.obj))) candidate.metadata!.generation = (om.generation ?? 0) + 1;
    // A write that changes nothing is no revision and no event, as on the real server.
    if (deepEqual(candidate, old.obj)) return old;
    this.rv++;
    candidate.metadata!.resourceVersion = String(this.rv);
    return this.commit(rt, 'MODIFIED', candidate, key, ns, old);
  }

  private delete(rt: ResourceType, ns: string, name: string, precondition: { resourceVersion?: string; uid?: string } | undefined): Stored {
    const key = keyOf(ns, name);
    const old = this.store.get(rt)!.get(key);
    if (!old) throw notFound(rt, name);
    if (precondition?.resourceVersion && precondition.resourceVersion !== old.obj.metadata!.resourceVersion) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${rt.plural} "${name}": Precondition failed: ResourceVersion in precondition: ${precondition.resourceVersion}, ResourceVersion in object meta: ${old.obj.metadata!.resourceVersion}`, { name, kind: rt.plural });
    }
    if (precondition?.uid && precondition.uid !== old.obj.metadata!.uid) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${rt.plural} "${name}": Precondition failed: UID in precondition: ${precondition.uid}, UID in object meta: ${old.obj.metadata!.uid}`, { name, kind: rt.plural });
    }
    let last = old;
    if (rt.kind === 'Namespace') {
      // As the namespace controller, in one go: Terminating, its contents deleted, then itself.
      this.rv++;
      const terminating: KubeObject = {
        ...old.obj, metadata: { ...old.obj.metadata, resourceVersion: String(this.rv), deletionTimestamp: now() }, status: { phase: 'Terminating' },
      };
      last = this.commit(rt, 'MODIFIED', terminating, key, ns, old);
      for (const t of TYPES) {
        if (!t.namespaced) continue;
        for (const s of [...this.store.get(t)!.values()]) if (s.ns === name) this.delete(t, s.ns, s.obj.metadata!.name!, undefined);
      }
    }
    this.rv++;
    // The DELETED event carries the last state stamped with the deletion's revision.
    const obj: KubeObject = { ...last.obj, metadata: { ...last.obj.metadata, resourceVersion: String(this.rv) } };
    return this.commit(rt, 'DELETED', obj, key, ns, last);
  }

  /** Builds the stored object: kind, apiVersion, metadata in the real server's key order, then the rest. */
  private stamp(rt: ResourceType, body: KubeObject, m: ObjectMeta): KubeObject {
    const { kind: _k, apiVersion: _a, metadata = {}, ...rest } = body;
    const { name: _n, generateName: _g, namespace: _ns, uid: _u, resourceVersion: _r, generation: _gen, creationTimestamp: _c, managedFields: _mf, ...userMeta } = metadata;
    const meta: ObjectMeta = {};
    for (const [k, v] of Object.entries(m)) if (v !== undefined) meta[k] = v;
    for (const [k, v] of Object.entries(userMeta)) if (v !== undefined && v !== null) meta[k] = v;
    if (meta.labels && Object.keys(meta.labels).length === 0) delete meta.labels;
    if (meta.annotations && Object.keys(meta.annotations).length === 0) delete meta.annotations;
    return { kind: rt.kind, apiVersion: rt.apiVersion, metadata: meta, ...rest };
  }

  private validate(rt: ResourceType, name: string, body: KubeObject): void {
    if (rt.kind === 'EndpointSlice') {
      if (!body.addressType) throw invalid(rt, name, 'addressType', 'FieldValueRequired', 'Required value');
      for (const [i, e] of ((body.endpoints ?? []) as Array<{ addresses?: string[] }>).entries()) {
        if (!e.addresses?.length) throw invalid(rt, name, `endpoints[${i}].addresses`, 'FieldValueRequired', 'Required value: must contain at least 1 address');
      }
    }
    if (rt.kind === 'ConfigMap') {
      for (const [k, v] of Object.entries((body.data ?? {}) as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new ApiError(400, 'BadRequest', `ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal ${typeof v} into Go struct field ConfigMap.data of type string (key ${k})`);
      }
    }
  }

  /** The defaults and allocations the real registry adds (cluster IPs, protocols, namespace label). */
  private defaults(rt: ResourceType, obj: KubeObject, old: KubeObject | undefined): void {
    if (rt.kind === 'Service') {
      const spec = (obj.spec ??= {}) as Record<string, any>;
      spec.type ??= 'ClusterIP';
      if (spec.type !== 'ExternalName') {
        const oldIp = old?.spec?.clusterIP;
        spec.clusterIP ??= oldIp ?? this.allocateIp();
        spec.clusterIPs ??= [spec.clusterIP];
        spec.ipFamilies ??= ['IPv4'];
        spec.ipFamilyPolicy ??= 'SingleStack';
        spec.internalTrafficPolicy ??= 'Cluster';
      }
      spec.sessionAffinity ??= 'None';
      for (const p of (spec.ports ?? []) as Array<Record<string, unknown>>) {
        p.protocol ??= 'TCP';
        if (spec.type !== 'ExternalName') p.targetPort ??= p.port;
      }
      obj.status ??= { loadBalancer: {} };
    } else if (rt.kind === 'EndpointSlice') {
      for (const p of (obj.ports ?? []) as Array<Record<string, unknown>>) p.protocol ??= 'TCP';
    } else if (rt.kind === 'Namespace') {
      obj.metadata!.labels = { ...obj.metadata!.labels, 'kubernetes.io/metadata.name': obj.metadata!.name! };
      obj.spec ??= { finalizers: ['kubernetes'] };
      obj.status ??= { phase: 'Active' };
    }
  }

  private allocateIp(): string {
    const n = this.nextIp++;
    return `10.96.${(n >> 8) & 255}.${n & 255}`;
  }

  // ----- watch delivery ------------------------------------------------------------------------

  private matches(w: Watcher, s: Stored): boolean {
    if (w.ns !== undefined && s.ns !== w.ns) return false;
    const meta = s.obj.metadata!;
    return (w.labels.length === 0 || labelsMatch(w.labels, meta.labels)) && (w.fields.length === 0 || fieldsMatch(w.fields, meta));
  }

  /** Writes one change as the watcher sees it: an object leaving its selector is DELETED, one entering is ADDED. */
  private deliver(w: Watcher, c: Change): void {
    if (w.rt !== c.rt || w.stalled) return;
    let type: Change['type'];
    if (c.type === 'DELETED') {
      if (!this.matches(w, c.cur)) return;
      type = 'DELETED';
    } else {
      const now = this.matches(w, c.cur);
      const was = c.prev !== undefined && this.matches(w, c.prev);
      if (now) type = was ? 'MODIFIED' : 'ADDED';
      else if (was) type = 'DELETED';
      else return;
    }
    w.res.write(`{"type":"${type}","object":${whole(c.rt, c.cur)}}\n`);
  }

  private bookmarkLine(rt: ResourceType, annotations?: Record<string, string>): string {
    const metadata = { resourceVersion: String(this.rv), creationTimestamp: null, ...(annotations ? { annotations } : {}) };
    return `{"type":"BOOKMARK","object":${rt.head}"metadata":${JSON.stringify(metadata)}}}\n`;
  }

  private sendBookmarks(): void {
    for (const w of this.watchers) if (w.bookmarks && !w.stalled) w.res.write(this.bookmarkLine(w.rt));
  }

  private closeWatch(w: Watcher, abrupt: boolean): void {
    this.watchers.delete(w);
    if (w.timer) clearTimeout(w.timer);
    if (abrupt) w.res.socket?.destroy();
    else w.res.end();
  }

  // ----- HTTP --------------------------------------------------------------------------------

  private send(res: ServerResponse, code: number, body: unknown, raw?: string): void {
    const text = raw ?? JSON.stringify(body);
    const headers: Record<string, string | number> = { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Content-Length': Buffer.byteLength(text) };
    if (code === 429 || code === 503) headers['Retry-After'] = '1';
    res.writeHead(code, headers);
    res.end(text);
  }

  private async readBody(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY) throw new ApiError(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728');
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return undefined;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ApiError(400, 'BadRequest', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (${(err as Error).message})`);
    }
  }

  private authenticate(req: IncomingMessage): TokenInfo & { username: string } {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const info = m ? this.tokens.get(m[1]) : undefined;
    if (!info || info.expired || !(info.audiences ?? [API_AUDIENCE]).includes(API_AUDIENCE)) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
    return { ...info, username: usernameOf(info) };
  }

  private authorize(user: TokenInfo & { username: string }, a: AccessAttributes): void {
    if (!user.can || user.can(a)) return;
    const what = a.name ? `${a.resource}${a.group ? '.' + a.group : ''} "${a.name}"` : `${a.resource}${a.group ? '.' + a.group : ''}`;
    const where = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
    throw new ApiError(403, 'Forbidden', `${what} is forbidden: User "${user.username}" cannot ${a.verb} resource "${a.resource}" in API group "${a.group}" ${where}`, {
      name: a.name, group: a.group || undefined, kind: a.resource,
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const q = url.searchParams;
    let path = url.pathname.replace(/\/+$/, '') || '/';
    let watch = q.get('watch') === 'true' || q.get('watch') === '1';
    // Legacy watch paths: /api/v1/watch/services == /api/v1/services?watch=true
    const legacy = /^(\/api\/v1|\/apis\/[^/]+\/[^/]+)\/watch(\/.*)$/.exec(path);
    if (legacy) {
      path = legacy[1] + legacy[2];
      watch = true;
    }
    const method = req.method ?? 'GET';
    const { authorization: _auth, ...headers } = req.headers;
    const entry: RequestLogEntry = { method, path, query: Object.fromEntries(q), watch, status: 0, headers, at: Date.now(), ms: 0 };
    this.requestLog.push(entry);
    res.on('finish', () => {
      if (!entry.status) entry.status = res.statusCode;
      entry.ms = Date.now() - entry.at;
    });
    try {
      const d = this.delay;
      if (d && matchRequest(d.match, entry)) await new Promise((r) => setTimeout(r, d.ms));
      const f = this.failure;
      if (f && Date.now() < f.until && matchRequest(f.match, entry)) throw injectedError(f.status);
      if (f && Date.now() >= f.until) this.failure = null;
      if (path === '/healthz' || path === '/livez' || path === '/readyz') {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' }).end('ok');
        return;
      }
      const user = this.authenticate(req);
      entry.user = user.username;
      if (path.startsWith('/fake/')) {
        this.send(res, 200, this.control(method, path, q));
        return;
      }
      if (path === '/version') {
        this.send(res, 200, { major: '1', minor: '34', gitVersion: 'v1.34.0-fake', platform: 'linux/amd64' });
        return;
      }
      if (path === '/apis/authentication.k8s.io/v1/tokenreviews') {
        if (method !== 'POST') throw new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
        this.authorize(user, { verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews' });
        this.send(res, 201, this.tokenReview(await this.readBody(req)));
        return;
      }
      await this.route(req, res, method, path, q, watch, user, entry);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      entry.status = err.code;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      this.send(res, err.code, err.status());
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse, method: string, path: string, q: URLSearchParams, watch: boolean,
    user: TokenInfo & { username: string }, entry: RequestLogEntry): Promise<void> {
    // /api/v1/services, /api/v1/namespaces/NS/services[/NAME], /api/v1/namespaces[/NAME]
    const m = /^(\/api\/v1|\/apis\/[^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    let rt: ResourceType | undefined;
    let ns: string | undefined;
    let name: string | undefined;
    if (m) {
      rt = BY_PATH.get(`${m[1]}/${m[3]}`);
      ns = m[2] !== undefined ? decodeURIComponent(m[2]) : undefined;
      name = m[4] !== undefined ? decodeURIComponent(m[4]) : undefined;
      if (rt && !rt.namespaced && ns !== undefined) rt = undefined;
      if (m[4] === 'status' || m[4] === 'finalize') rt = undefined;
    }
    // /api/v1/namespaces/NAME is a Namespace, not a collection.
    const nsObject = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(path);
    if (nsObject) {
      rt = BY_KIND.get('Namespace');
      ns = undefined;
      name = decodeURIComponent(nsObject[1]);
    }
    if (!rt) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource', { causes: [{ reason: 'UnexpectedServerResponse', message: '404 page not found' }] });
    const scopeNs = rt.namespaced ? ns : undefined;
    const items = this.store.get(rt)!;
    const attrs = (verb: AccessAttributes['verb']): AccessAttributes => ({ verb, group: rt.group, resource: rt.plural, namespace: scopeNs, name });

    if (name === undefined) {
      if (method === 'GET') {
        this.authorize(user, attrs(watch ? 'watch' : 'list'));
        if (watch) this.watch(res, rt, scopeNs, q, entry);
        else await this.sendList(req, res, rt, scopeNs, q);
        return;
      }
      if (method === 'POST') {
        if (rt.namespaced && ns === undefined) throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
        this.authorize(user, attrs('create'));
        const body = await this.bodyObject(req, rt);
        const bodyNs = body.metadata?.namespace;
        if (rt.namespaced && bodyNs && bodyNs !== ns) throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
        if (q.get('dryRun') === 'All') throw new ApiError(400, 'BadRequest', 'dryRun is not supported by the fake API server');
        const s = this.create(rt, ns ?? '', body);
        this.send(res, 201, undefined, whole(rt, s));
        return;
      }
      throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }

    const key = keyOf(scopeNs ?? '', name);
    if (method === 'GET' && watch) {
      // Watching one object (/watch/.../NAME or ?watch=true on it) is a watch with a name selector.
      this.authorize(user, attrs('watch'));
      this.watch(res, rt, scopeNs, q, entry, name);
      return;
    }
    switch (method) {
      case 'GET': {
        this.authorize(user, attrs('get'));
        const s = items.get(key);
        if (!s) throw notFound(rt, name);
        this.send(res, 200, undefined, whole(rt, s));
        return;
      }
      case 'PUT': {
        this.authorize(user, attrs('update'));
        const body = await this.bodyObject(req, rt);
        if (rt.namespaced && body.metadata?.namespace && body.metadata.namespace !== ns) throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
        const s = this.update(rt, scopeNs ?? '', name, body, true);
        this.send(res, 200, undefined, whole(rt, s));
        return;
      }
      case 'PATCH': {
        this.authorize(user, attrs('patch'));
        const old = items.get(key);
        const type = (req.headers['content-type'] ?? '').split(';')[0].trim();
        const patch = await this.readBody(req);
        if (!old) throw notFound(rt, name);
        let next: unknown;
        if (type === 'application/json-patch+json') next = jsonPatch(old.obj, patch);
        else if (type === 'application/merge-patch+json' || type === 'application/strategic-merge-patch+json') {
          if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new ApiError(400, 'BadRequest', 'a merge patch must be a JSON object');
          next = mergePatch(old.obj, patch);
        } else {
          throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (not ${type || 'none'}; server-side apply is not faked)`);
        }
        const body = next as KubeObject;
        if (typeof body !== 'object' || body === null) throw new ApiError(422, 'Invalid', 'the patch made the object something other than an object');
        // A resourceVersion inside the patch is a precondition, as on the real server.
        const s = this.update(rt, scopeNs ?? '', name, { ...body, metadata: { ...body.metadata, name } }, true);
        this.send(res, 200, undefined, whole(rt, s));
        return;
      }
      case 'DELETE': {
        this.authorize(user, attrs('delete'));
        const opts = (await this.readBody(req)) as { preconditions?: { resourceVersion?: string; uid?: string } } | undefined;
        const s = this.delete(rt, scopeNs ?? '', name, opts?.preconditions);
        if (rt.deleteReturnsObject) this.send(res, 200, undefined, whole(rt, s));
        else this.send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: rt.group || undefined, kind: rt.plural, uid: s.obj.metadata!.uid } });
        return;
      }
      default:
        throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
  }

  private async bodyObject(req: IncomingMessage, rt: ResourceType): Promise<KubeObject> {
    const body = await this.readBody(req);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'BadRequest', 'the body of the request must be a JSON object');
    const o = body as KubeObject;
    if ((o.kind && o.kind !== rt.kind) || (o.apiVersion && o.apiVersion !== rt.apiVersion)) {
      throw new ApiError(400, 'BadRequest', `the API version in the data (${String(o.apiVersion)}) does not match the expected API version (${rt.apiVersion}) or kind ${String(o.kind)} is not ${rt.kind}`);
    }
    return o;
  }

  private selectors(q: URLSearchParams): { labels: LabelRequirement[]; fields: FieldRequirement[] } {
    return { labels: parseLabelSelector(q.get('labelSelector') ?? ''), fields: parseFieldSelector(q.get('fieldSelector') ?? '') };
  }

  private parseRv(s: string, what: string): number {
    if (!/^\d+$/.test(s)) throw new ApiError(400, 'BadRequest', `invalid resource version: ${JSON.stringify(s)} (${what})`);
    return Number(s);
  }

  /** The objects of a kind as they were at rv (rv >= compactedRv), undoing the history after it. */
  private stateAt(rt: ResourceType, rv: number): Iterable<Stored> {
    const current = this.store.get(rt)!;
    if (rv >= this.rv) return current.values();
    const m = new Map(current);
    for (let i = this.history.length - 1; i >= 0 && this.history[i].rv > rv; i--) {
      const c = this.history[i];
      if (c.rt !== rt) continue;
      if (c.type === 'ADDED') m.delete(c.cur.key);
      else m.set(c.cur.key, c.prev!);
    }
    return m.values();
  }

  private tooLarge(rv: number): ApiError {
    return new ApiError(504, 'Timeout', `Too large resource version: ${rv}, current: ${this.rv}`, {
      causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }], retryAfterSeconds: 1,
    });
  }

  private async sendList(req: IncomingMessage, res: ServerResponse, rt: ResourceType, ns: string | undefined, q: URLSearchParams): Promise<void> {
    const { labels, fields } = this.selectors(q);
    const rvParam = q.get('resourceVersion') ?? '';
    const match = q.get('resourceVersionMatch') ?? '';
    const limit = Number(q.get('limit') ?? 0) || 0;
    const cont = q.get('continue') ?? '';
    if (match && rvParam === '') throw new ApiError(422, 'Invalid', `resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided`);
    if (match && match !== 'Exact' && match !== 'NotOlderThan') throw new ApiError(422, 'Invalid', `resourceVersionMatch: Unsupported value: "${match}": supported values: "Exact", "NotOlderThan"`);
    let at = this.rv;
    let start = '';
    if (cont) {
      if (rvParam) throw new ApiError(422, 'Invalid', 'specifying resource version is not allowed when using continue');
      let token: { rv?: number; start?: string };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64').toString('utf8'));
      } catch {
        throw new ApiError(400, 'BadRequest', 'continue key is not valid: illegal base64 data');
      }
      if (typeof token.rv !== 'number' || typeof token.start !== 'string') throw new ApiError(400, 'BadRequest', 'continue key is not valid');
      if (token.rv < this.compactedRv) {
        throw new ApiError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.');
      }
      at = token.rv;
      start = token.start;
    } else if (rvParam !== '' && rvParam !== '0') {
      const rv = this.parseRv(rvParam, 'list');
      if (rv > this.rv) throw this.tooLarge(rv);
      if (match === 'Exact') {
        if (rv < this.compactedRv) throw new ApiError(410, 'Expired', `The resourceVersion for the provided list is too old.`);
        at = rv;
      }
    }
    const rows: Stored[] = [];
    for (const s of this.stateAt(rt, at)) {
      if (ns !== undefined && s.ns !== ns) continue;
      if (start && s.key < start) continue;
      const meta = s.obj.metadata!;
      if (labels.length && !labelsMatch(labels, meta.labels)) continue;
      if (fields.length && !fieldsMatch(fields, meta)) continue;
      rows.push(s);
    }
    rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let page = rows;
    const meta: Record<string, unknown> = { resourceVersion: String(at) };
    if (limit > 0 && rows.length > limit) {
      page = rows.slice(0, limit);
      meta.continue = Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: at, start: page[page.length - 1].key + '\u0000' })).toString('base64');
      if (!labels.length && !fields.length) meta.remainingItemCount = rows.length - limit;
    }
    const parts: string[] = new Array(page.length);
    for (let i = 0; i < page.length; i++) parts[i] = page[i].item;
    const text = `{"kind":"${rt.listKind}","apiVersion":"${rt.apiVersion}","metadata":${JSON.stringify(meta)},"items":[${parts.join(',')}]}`;
    // As the real server (APIResponseCompression, on by default): gzip above 128 KiB, level 4.
    if (this.gzipLists && text.length > 128 * 1024 && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
      const body = await gzipAsync(text, { level: 4 });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip', 'Cache-Control': 'no-cache, private', 'Content-Length': body.length });
      res.end(body);
      return;
    }
    this.send(res, 200, undefined, text);
  }

  private watch(res: ServerResponse, rt: ResourceType, ns: string | undefined, q: URLSearchParams, entry: RequestLogEntry, name?: string): void {
    const { labels, fields } = this.selectors(q);
    if (name !== undefined) fields.push({ field: 'metadata.name', equal: true, value: name });
    const rvParam = q.get('resourceVersion') ?? '';
    const bookmarks = q.get('allowWatchBookmarks') === 'true';
    const initial = q.get('sendInitialEvents') === 'true';
    const timeoutSeconds = q.get('timeoutSeconds');
    if (initial && (!bookmarks || q.get('resourceVersionMatch') !== 'NotOlderThan')) {
      throw new ApiError(422, 'Invalid', 'sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan');
    }
    const from = rvParam === '' || rvParam === '0' ? undefined : this.parseRv(rvParam, 'watch');
    if (from !== undefined && initial && from > this.rv) throw this.tooLarge(from);
    const w: Watcher = { rt, ns, labels, fields, res, bookmarks, stalled: false };
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    entry.status = 200;
    if (from !== undefined && !initial && from < this.compactedRv) {
      // As the real server: HTTP 200, then one ERROR event with a 410 Status, then the end.
      res.end(`{"type":"ERROR","object":${JSON.stringify(statusObject(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`))}}\n`);
      return;
    }
    if (from === undefined || initial) {
      // No RV ("most recent") or "0" ("any"), or sendInitialEvents: the current state as synthetic ADDED events.
      const rows = [...this.store.get(rt)!.values()].filter((s) => this.matches(w, s)).sort((a, b) => (a.key < b.key ? -1 : 1));
      for (const s of rows) res.write(`{"type":"ADDED","object":${whole(rt, s)}}\n`);
      if (initial) res.write(this.bookmarkLine(rt, { 'k8s.io/initial-events-end': 'true' }));
    } else {
      for (const c of this.history) if (c.rv > from) this.deliver(w, c);
    }
    this.watchers.add(w);
    const timeoutMs = timeoutSeconds !== null ? Number(timeoutSeconds) * 1000 : this.watchTimeoutMs;
    if (timeoutMs !== undefined && Number.isFinite(timeoutMs) && timeoutMs > 0) w.timer = setTimeout(() => this.closeWatch(w, false), timeoutMs);
    res.on('close', () => {
      this.watchers.delete(w);
      if (w.timer) clearTimeout(w.timer);
    });
  }

  private tokenReview(body: unknown): Record<string, unknown> {
    const spec = ((body as { spec?: { token?: string; audiences?: string[] } } | undefined)?.spec) ?? {};
    const review: Record<string, unknown> = {
      kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null },
      spec: { token: spec.token, ...(spec.audiences ? { audiences: spec.audiences } : {}) },
    };
    const info = spec.token ? this.tokens.get(spec.token) : undefined;
    const targets = spec.audiences?.length ? spec.audiences : [API_AUDIENCE];
    // As the real server: a failed review omits `authenticated` (false is Go's omitted zero value).
    if (!info) return { ...review, status: { user: {}, error: '[invalid bearer token, token lookup failed]' } };
    if (info.expired) return { ...review, status: { user: {}, error: '[invalid bearer token, service account token has expired]' } };
    const tokenAudiences = info.audiences ?? [API_AUDIENCE];
    const audiences = tokenAudiences.filter((a) => targets.includes(a));
    if (audiences.length === 0) {
      return { ...review, status: { user: {}, error: `[invalid bearer token, token audiences ${JSON.stringify(tokenAudiences)} is invalid for the target audiences ${JSON.stringify(targets)}]` } };
    }
    const user: Record<string, unknown> = { username: usernameOf(info), uid: info.uid ?? uidFor(usernameOf(info)), groups: groupsOf(info) };
    if (info.serviceAccount && info.pod) {
      user.extra = {
        'authentication.kubernetes.io/pod-name': [info.pod],
        'authentication.kubernetes.io/pod-uid': [uidFor(`pod:${info.namespace}/${info.pod}`)],
      };
    }
    return { ...review, status: { authenticated: true, user, audiences } };
  }
}

function usernameOf(info: TokenInfo): string {
  return info.serviceAccount && info.namespace ? `system:serviceaccount:${info.namespace}:${info.serviceAccount}` : info.username!;
}

function groupsOf(info: TokenInfo): string[] {
  if (info.groups) return info.groups;
  if (info.serviceAccount && info.namespace) return ['system:serviceaccounts', `system:serviceaccounts:${info.namespace}`, 'system:authenticated'];
  return ['system:authenticated'];
}

const uids = new Map<string, string>();
function uidFor(name: string): string {
  let u = uids.get(name);
  if (!u) uids.set(name, (u = randomUUID()));
  return u;
}

function specOf(o: KubeObject): unknown {
  const { metadata: _m, status: _s, ...rest } = o;
  return rest;
}

/** Starts a fake API server (HTTPS, port 0, fresh CA). Call close() when done. */
export async function startFakeKubeApi(opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  return new FakeKubeApi(opts).listen();
}

/** startFakeKubeApi() closed by the test's teardown. */
export async function withFakeKubeApi(t: { teardown(fn: () => unknown): void }, opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  const api = await startFakeKubeApi(opts);
  t.teardown(() => api.close());
  return api;
}

/**
 * Fills the server with a mesh of the given size: per Service one EndpointSlice (or several,
 * splitting the endpoints) named like the controller's, ready endpoints in 3 zones, IPs unique.
 * Defaults: 10,000 Services with 10 endpoints each in 50 namespaces. Returns the Services' keys.
 */
export function seedServices(api: FakeKubeApi, opts: { services?: number; endpointsPerService?: number; slicesPerService?: number; namespaces?: number; port?: number } = {}): Array<{ namespace: string; name: string }> {
  const { services = 10_000, endpointsPerService = 10, slicesPerService = 1, namespaces = 50, port = 8080 } = opts;
  const out: Array<{ namespace: string; name: string }> = [];
  let ip = 0;
  for (let i = 0; i < services; i++) {
    const ns = `ns-${i % namespaces}`;
    const name = `svc-${i}`;
    api.apply(service(ns, name, [{ name: 'http', port: 80, targetPort: port, appProtocol: 'http' }]));
    const perSlice = Math.ceil(endpointsPerService / slicesPerService);
    for (let s = 0; s < slicesPerService; s++) {
      const endpoints: EndpointSpec[] = [];
      for (let j = s * perSlice; j < Math.min(endpointsPerService, (s + 1) * perSlice); j++) {
        ip++;
        endpoints.push({ ip: `10.${(ip >> 16) & 255}.${(ip >> 8) & 255}.${ip & 255}`, ready: true, serving: true, terminating: false, zone: `zone-${j % 3}`, nodeName: `node-${ip % 100}`, pod: `${name}-${j}` });
      }
      api.apply(endpointSlice(ns, `${name}-${s.toString(36).padStart(5, 'x')}`, name, endpoints, [{ name: 'http', port, appProtocol: 'http' }]));
    }
    out.push({ namespace: ns, name });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Builders of realistic objects

export function namespace(name: string, labels?: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...(labels ? { labels } : {}) } };
}

/** A Service; ports as numbers (port N named nothing) or full specs. */
export function service(ns: string, name: string, ports: Array<number | ServicePortSpec>, opts: ServiceOptions = {}): KubeObject {
  const spec: Record<string, unknown> = {};
  if (opts.type === 'ExternalName') {
    spec.type = 'ExternalName';
    spec.externalName = opts.externalName ?? `${name}.example.com`;
  } else {
    if (opts.type) spec.type = opts.type;
    if (opts.clusterIP) spec.clusterIP = opts.clusterIP;
    spec.selector = opts.selector ?? { app: name };
  }
  spec.ports = ports.map((p) => {
    const s = typeof p === 'number' ? { port: p } : p;
    const out: Record<string, unknown> = {};
    if (s.name !== undefined) out.name = s.name;
    out.protocol = s.protocol ?? 'TCP';
    if (s.appProtocol !== undefined) out.appProtocol = s.appProtocol;
    out.port = s.port;
    if (opts.type !== 'ExternalName') out.targetPort = s.targetPort ?? s.port;
    return out;
  });
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name, namespace: ns, ...(opts.labels ? { labels: opts.labels } : {}), ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec,
  };
}

/** An EndpointSlice owned by serviceName, as the EndpointSlice controller writes it. */
export function endpointSlice(ns: string, name: string, serviceName: string, endpoints: EndpointSpec[], ports: EndpointPortSpec[],
  opts: { addressType?: 'IPv4' | 'IPv6' | 'FQDN'; labels?: Record<string, string> } = {}): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: {
      name, namespace: ns,
      labels: { [SERVICE_NAME_LABEL]: serviceName, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', ...opts.labels },
    },
    addressType: opts.addressType ?? 'IPv4',
    endpoints: endpoints.map((e) => {
      const conditions: Record<string, boolean> = {};
      if (e.ready !== undefined) conditions.ready = e.ready;
      if (e.serving !== undefined) conditions.serving = e.serving;
      if (e.terminating !== undefined) conditions.terminating = e.terminating;
      const out: Record<string, unknown> = { addresses: [e.ip], conditions };
      if (e.hostname) out.hostname = e.hostname;
      if (e.pod) out.targetRef = { kind: 'Pod', namespace: ns, name: e.pod };
      if (e.nodeName) out.nodeName = e.nodeName;
      if (e.zone) out.zone = e.zone;
      return out;
    }),
    ports: ports.map((p) => ({ name: p.name ?? '', protocol: p.protocol ?? 'TCP', port: p.port, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
  };
}

/**
 * A mesh ConfigMap: labels shoal.dev/app and shoal.dev/plugin-id, data plugin-config = the spec as
 * JSON (a string spec is stored as it is, to test invalid configs). Named shoal-mesh-<app>, as
 * discover names the ones it creates, unless opts.name says otherwise.
 */
export function meshConfigMap(ns: string, app: string, pluginId: string, spec: unknown,
  opts: string | { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> } = {}): KubeObject {
  const o = typeof opts === 'string' ? { name: opts } : opts;
  return {
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: {
      name: o.name ?? `shoal-mesh-${app}`, namespace: ns,
      labels: { ...o.labels, [APP_LABEL]: app, [PLUGIN_LABEL]: pluginId },
      ...(o.annotations ? { annotations: o.annotations } : {}),
    },
    data: { [PLUGIN_CONFIG_KEY]: typeof spec === 'string' ? spec : JSON.stringify(spec) },
  };
}

// ---------------------------------------------------------------------------------------------
// Standalone: `node test/lib/fakeKubeApi.ts [--services N] [--endpoints N] [--http] [--dir DIR]`
// serves until SIGINT/SIGTERM and prints one JSON line: url, token, kubeconfig (file), caFile.
// Drive it through its own API (any client) and its /fake/ hooks: POST /fake/compact,
// /fake/expire-watches, /fake/drop-watches, /fake/end-watches, /fake/stall-watches,
// /fake/fail?ms=&status=&path=REGEX|watch=true, /fake/latency?ms=, /fake/heal; GET /fake/stats.
if (import.meta.main) {
  const arg = (name: string, d: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : d;
  };
  const api = await startFakeKubeApi({ tls: !process.argv.includes('--http') });
  const token = randomBytes(16).toString('hex');
  api.addToken(token, { username: 'fake-admin', groups: ['system:masters', 'system:authenticated'] });
  const services = Number(arg('services', '0'));
  if (services > 0) seedServices(api, { services, endpointsPerService: Number(arg('endpoints', '10')) });
  const dir = arg('dir', '') || await mkdtemp(join(tmpdir(), 'fake-kube-standalone-'));
  const kubeconfig = await api.writeKubeconfigFile(dir, token);
  const caFile = join(dir, 'ca.crt');
  await writeFile(caFile, api.caPem);
  process.stdout.write(JSON.stringify({ url: api.url, token, kubeconfig, caFile, resourceVersion: api.resourceVersion }) + '\n');
  const stop = () => void api.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
