// The caller of the mesh conformance cases: what the official runner's `client` command does inside the
// echo-v1 pod (conformance/utils/echo/pod.go), as a Node process in the caller's network namespace.
// It resolves names as any app in a pod does (glibc getaddrinfo, the pod's resolv.conf naming the
// sidecar's DNS responder on 127.0.0.1:53 and the cluster search list), connects to the address it is
// given (a dependency's loopback address: the sidecar) and reports what came back in the fields
// compareRequest reads: the status code, the answering pod (echo-basic's "pod"), the headers the
// backend saw, and the response headers.
//
//   node meshClient.ts DNS_UPSTREAM_HOST DNS_UPSTREAM_PORT
//
// It also plays the cluster DNS (the sidecar's upstream) on DNS_UPSTREAM: a server that knows no name
// (NXDOMAIN for every question), as kube-dns answers the search-list names of a pod that are not Services.
//
// One JSON request a line on stdin, one JSON answer a line on stdout ({"id":..,"results":[..]}):
//   {"id":1,"op":"http","host":"echo","port":80,"hostHeader":"echo","path":"/","method":"GET","headers":{..},"count":1,"concurrency":1}
//   {"id":2,"op":"grpc","host":"echo","port":7070,"authority":"echo:7070","proto":"/path/grpcecho.proto","count":500,"concurrency":10}
//   {"id":3,"op":"get","url":"http://127.0.0.1:65533/config_dump"}
// Prints "ready" once the DNS upstream listens.
import { createSocket } from 'node:dgram';
import http from 'node:http';
import { createInterface } from 'node:readline';
import dnsPacket from 'dns-packet';

const REQUEST_TIMEOUT_MS = 5_000;

export interface ClientResult {
  /** HTTP status, or for gRPC 200 when the call succeeded (compareRequest maps gRPC OK to 200); null when no answer came. */
  code: number | null;
  /** The pod that answered (echo-basic's POD_NAME), "" when the answer did not come from echo-basic. */
  hostname: string;
  /** The request headers the backend saw, name as sent -> values. */
  requestHeaders: Record<string, string[]>;
  /** The response headers, lower-case name -> values. */
  responseHeaders: Record<string, string[]>;
  /** The request path the backend saw (echo-basic's "path"), when it answered. */
  path?: string;
  grpcStatus?: number;
  error?: string;
}

/** count requests, concurrency at a time; brief: answer only code, hostname and error of each (weight batches). */
interface Batch {
  count?: number;
  concurrency?: number;
  brief?: boolean;
}
export interface HttpOp extends Batch {
  id: number;
  op: 'http';
  host: string;
  port: number;
  hostHeader: string;
  path: string;
  method: string;
  headers: Record<string, string>;
}
export interface GrpcOp extends Batch {
  id: number;
  op: 'grpc';
  host: string;
  port: number;
  authority: string;
  proto: string;
}
export interface GetOp {
  id: number;
  op: 'get';
  url: string;
}
export type ClientOp = HttpOp | GrpcOp | GetOp;
/** An op before the caller numbers it. */
export type ClientRequest = Omit<HttpOp, 'id'> | Omit<GrpcOp, 'id'> | Omit<GetOp, 'id'>;

function httpOnce(o: HttpOp): Promise<ClientResult> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { host: o.hostHeader };
    for (const [k, v] of Object.entries(o.headers)) {
      if (k.toLowerCase() === 'host') headers.host = v;
      else headers[k] = v;
    }
    let done = false;
    const finish = (r: ClientResult) => {
      if (done) return;
      done = true;
      resolve(r);
    };
    const empty = { hostname: '', requestHeaders: {}, responseHeaders: {} };
    // A connection of its own per request (agent: false), as the echo client makes; IPv4 (the sidecar's addresses).
    const req = http.request(
      { host: o.host, port: o.port, path: o.path, method: o.method, headers, agent: false, family: 4, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => finish({ code: null, ...empty, error: `response: ${err.message}` }));
        res.on('end', () => {
          const responseHeaders: Record<string, string[]> = {};
          for (const [k, v] of Object.entries(res.headersDistinct)) if (v) responseHeaders[k] = v;
          const out: ClientResult = { code: res.statusCode ?? null, hostname: '', requestHeaders: {}, responseHeaders };
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.headers['content-type'] ?? '').startsWith('application/json')) {
            try {
              const body = JSON.parse(text) as { pod?: unknown; headers?: unknown; path?: unknown };
              if (typeof body.pod === 'string') out.hostname = body.pod;
              if (typeof body.path === 'string') out.path = body.path;
              if (body.headers && typeof body.headers === 'object') {
                for (const [k, v] of Object.entries(body.headers as Record<string, unknown>)) {
                  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) out.requestHeaders[k] = v as string[];
                }
              }
            } catch {
              /* not echo-basic's answer: no pod, no request headers */
            }
          }
          finish(out);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (err) => finish({ code: null, ...empty, error: err.message }));
    req.end();
  });
}

// ----- gRPC: echo-basic's GrpcEcho/Echo (grpcecho.proto of the conformance module) ---------------------

type Unary = (req: object, opts: { deadline: number }, cb: (err: { code?: number; message: string } | null, res?: any) => void) => void;
const grpcClients = new Map<string, { client: { Echo: Unary; close(): void } }>();

async function grpcClient(o: GrpcOp): Promise<{ Echo: Unary; close(): void }> {
  const key = `${o.proto}|${o.host}|${o.port}|${o.authority}`;
  const known = grpcClients.get(key);
  if (known) return known.client;
  // Loaded on first use: HTTP-only callers never pay for grpc-js.
  const grpc = await import('@grpc/grpc-js');
  const loader = await import('@grpc/proto-loader');
  const def = loader.loadSync(o.proto, { keepCase: true, longs: Number, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as any;
  const Ctor = pkg.gateway_api_conformance.echo_basic.grpcecho.GrpcEcho;
  // Plaintext HTTP/2 (h2c) to the name, resolved by the resolver grpc-js uses for dns: targets (the system's
  // getaddrinfo, through the pod's resolv.conf); :authority as the echo client sends it.
  // One channel for all calls (the echo client's --count reuses its connection too): the sidecar balances per call.
  const client = new Ctor(`dns:${o.host}:${o.port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': o.authority });
  grpcClients.set(key, { client });
  return client;
}

async function grpcOnce(o: GrpcOp): Promise<ClientResult> {
  const client = await grpcClient(o);
  return new Promise((resolve) => {
    client.Echo({}, { deadline: Date.now() + REQUEST_TIMEOUT_MS }, (err, res) => {
      if (err) {
        resolve({
          code: null,
          hostname: '',
          requestHeaders: {},
          responseHeaders: {},
          grpcStatus: err.code,
          error: `gRPC ${err.code}: ${err.message}`,
        });
        return;
      }
      const a = res?.assertions ?? {};
      const requestHeaders: Record<string, string[]> = {};
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- parsed from the harness's JSON: may omit it
      for (const h of a.headers ?? []) (requestHeaders[h.key] ??= []).push(h.value);
      resolve({ code: 200, grpcStatus: 0, hostname: a.context?.pod ?? '', requestHeaders, responseHeaders: {} });
    });
  });
}

async function many(
  o: Batch,
  one: () => Promise<ClientResult>,
): Promise<Array<ClientResult | Pick<ClientResult, 'code' | 'hostname' | 'error'>>> {
  const count = o.count ?? 1;
  const concurrency = o.concurrency ?? 1;
  const out: Array<ClientResult | Pick<ClientResult, 'code' | 'hostname' | 'error'>> = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const r = await one();
      out[i] = o.brief ? { code: r.code, hostname: r.hostname, ...(r.error ? { error: r.error } : {}) } : r;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
  return out;
}

async function handle(op: ClientOp): Promise<object> {
  if (op.op === 'http') return { id: op.id, results: await many(op, () => httpOnce(op)) };
  if (op.op === 'grpc') return { id: op.id, results: await many(op, () => grpcOnce(op)) };
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- an op parsed from JSON may be of any kind
  if (op.op === 'get') {
    try {
      const r = await fetch(op.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      return { id: op.id, status: r.status, body: await r.text() };
    } catch (err) {
      return { id: op.id, status: 0, body: '', problem: (err as Error).message };
    }
  }
  return { id: (op as { id?: number }).id ?? -1, error: `unknown op ${JSON.stringify((op as { op?: unknown }).op)}` };
}

/** The cluster DNS of this pod: NXDOMAIN for every question (it knows no Service the sidecar does not). */
function startNxdomainServer(host: string, port: number): Promise<void> {
  const sock = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    let q: ReturnType<typeof dnsPacket.decode>;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return; // not a DNS message: dropped
    }
    const answer = dnsPacket.encode({
      id: q.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      rcode: 'NXDOMAIN',
      questions: q.questions ?? [],
    } as dnsPacket.Packet);
    sock.send(answer, rinfo.port, rinfo.address);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, host, () => resolve());
  });
}

if (import.meta.main) {
  const [dnsHost, dnsPort] = process.argv.slice(2);
  await startNxdomainServer(dnsHost, Number(dnsPort));
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    let op: ClientOp;
    try {
      op = JSON.parse(line) as ClientOp;
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ id: -1, error: `not JSON: ${(err as Error).message}` })}\n`);
      return;
    }
    handle(op).then(
      (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
      (err: Error) => process.stdout.write(`${JSON.stringify({ id: op.id, error: err.stack ?? err.message })}\n`),
    );
  });
  rl.on('close', () => {
    for (const { client } of grpcClients.values()) client.close();
    process.exit(0);
  });
  process.stdout.write('ready\n');
}
