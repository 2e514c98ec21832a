// Request smuggling through an inbound listener, in front of a lenient app: Python's http.server,
// which splits lines on a bare LF and words on any whitespace, so one request with TAB and LF in
// its target reads to it as two. The sidecar must answer such a request 400 (as node:http does) and
// send nothing upstream; the forms llhttp rejects (a lower-case method, PRI, NBSP around
// Content-Length, a duplicate Content-Length: 0) and a head over node:http's limit get node:http's
// answer too; and a smuggled request cannot slip past the inbound ALLOW policy.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect as tlsConnect } from 'node:tls';
import t, { type Test } from 'tap';
import { CertificateAuthority } from '../../../discover/identity/certificateAuthority.ts';
import { startDiscover } from '../../../discover/main.ts';
import { startProxy, type Proxy } from '../../../proxy/main.ts';
import { createLogger } from '../../../shared/log.ts';
import { randomLoopback, startSidecar, waitFor } from '../fixtures.ts';
import { TRUST_DOMAIN, workloadCert } from '../../identity/meshFixture.ts';

const havePython = spawnSync('python3', ['--version']).status === 0;

// The app: every request it reads is printed as one JSON line [method, target] and answered 200.
const LENIENT_APP = String.raw`
import http.server, json, os, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *args):
        pass
    def __getattr__(self, name):
        if name.startswith('do_'):
            return self.answer
        raise AttributeError(name)
    def answer(self):
        n = int(self.headers.get('Content-Length') or 0)
        if n:
            self.rfile.read(n)
        print(json.dumps([self.command, self.path]), flush=True)
        body = ('app saw %s %s\n' % (self.command, self.path)).encode('latin-1', 'replace')
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print('PORT', s.server_address[1], flush=True)
threading.Thread(target=s.serve_forever, daemon=True).start()
sys.stdin.read()  # the test process ended (or closed stdin): so does the app
os._exit(0)
`;

interface LenientApp {
  port: number;
  /** [method, target] of every request the app read, in order. */
  seen: [string, string][];
}

async function lenientApp(t: Test): Promise<LenientApp> {
  const child = spawn('python3', ['-u', '-c', LENIENT_APP], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => {
    child.stdin.end();
    child.kill();
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const app: LenientApp = { port: 0, seen: [] };
  const lines = createInterface({ input: child.stdout });
  const ready = new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the python app exited (${code}): ${stderr}`)));
    lines.on('line', (line) => {
      if (line.startsWith('PORT ')) {
        app.port = Number(line.slice(5));
        resolve();
      } else app.seen.push(JSON.parse(line) as [string, string]);
    });
  });
  await Promise.race([
    ready,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`the python app did not start: ${stderr}`)), 20_000)),
  ]);
  return app;
}

interface Wire {
  host: string;
  port: number;
  tls?: { key: string; cert: string };
}

/** Writes raw bytes on a new connection; resolves with everything read until the server closes it. */
function exchange(w: Wire, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = w.tls
      ? tlsConnect({
          host: w.host,
          port: w.port,
          key: w.tls.key,
          cert: w.tls.cert,
          rejectUnauthorized: false,
          minVersion: 'TLSv1.3',
          checkServerIdentity: () => undefined,
        })
      : netConnect({ host: w.host, port: w.port });
    let out = '';
    s.once(w.tls ? 'secureConnect' : 'connect', () => s.write(bytes, 'latin1'));
    s.on('data', (b: Buffer) => (out += b.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => resolve(out));
    // A connection the sidecar kept open (it served a request) is cut after a while.
    s.setTimeout(10_000, () => s.destroy());
  });
}

/** Sends a request the app must see, and waits for it: everything the app saw before it is settled. */
async function marker(t: Test, w: Wire, app: LenientApp, name: string): Promise<void> {
  const out = await exchange(w, `GET /marker-${name} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n`);
  t.match(out, /^HTTP\/1\.1 200 /, `marker ${name} served`);
  await waitFor(() => app.seen.some(([, p]) => p === `/marker-${name}`), `the app to see marker ${name}`, 10_000);
}

/** The smuggling vector: one request to llhttp (a bad one), two to a lenient server. */
const SMUGGLE = (first: string, second: string) =>
  `GET ${first}\tHTTP/1.1\nHost:\tx\n\n${second}\tHTTP/1.1\nX:\ty HTTP/1.1\r\nHost: app\r\n\r\n`;

const REFUSED: [string, string, RegExp][] = [
  ['TAB and bare LF in the target hide a second request', SMUGGLE('/a', 'GET\t/smuggled'), /^HTTP\/1\.1 400 /],
  [
    'bare LF LF in a header ends the head early',
    'GET /a HTTP/1.1\r\nHost: app\nX: y\n\nGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n',
    /^HTTP\/1\.1 400 /,
  ],
  ['VT at the start of a header value', 'GET /a HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: \v10.0.0.1\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['CR at the end of a header value', 'GET /a HTTP/1.1\r\nHost: app\r\nX: v\r\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['a lower-case method', 'get /a HTTP/1.1\r\nHost: app\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['PRI as a method', 'PRI /a HTTP/1.1\r\nHost: app\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['NBSP after Content-Length: 0', 'POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 0\xa0\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['a duplicate Content-Length: 0', 'POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n', /^HTTP\/1\.1 400 /],
  ['no Host', 'GET /a HTTP/1.1\r\nUser-Agent: x\r\n\r\n', /^HTTP\/1\.1 400 /],
  ["a head over node:http's 16 KiB", `GET /a HTTP/1.1\r\nHost: app\r\nX: ${'v'.repeat(16_500)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
];

t.test(
  "requests llhttp rejects get node:http's answer and never reach a lenient app",
  { skip: havePython ? false : 'python3 is not installed: the lenient app cannot run' },
  async (t) => {
    const app = await lenientApp(t);
    const inboundAddress = randomLoopback();
    const s = await startSidecar(
      t,
      `services: []
apps:
  - name: web
    config:
      base_ports:
        - { port: ${app.port}, protocol: http }
`,
      { inboundAddress },
    );
    let listenPort = 0;
    s.proxy.onSnapshot((snap) => (listenPort = snap.inbound[0].listenPort));
    const w: Wire = { host: inboundAddress, port: listenPort };
    await marker(t, w, app, 'start');
    for (const [i, [name, bytes, status]] of REFUSED.entries()) {
      const before = app.seen.length;
      const out = await exchange(w, bytes);
      t.match(out, status, `${name}: answered ${status.source.slice(1)}`);
      t.notMatch(out, /app saw/, `${name}: no answer of the app`);
      await marker(t, w, app, String(i));
      t.same(app.seen.slice(before), [['GET', `/marker-${i}`]], `${name}: the app saw nothing of it`);
    }
    // The same connection then carries good requests on: the fast path still serves them.
    const good = await exchange(w, 'GET /x?y=1 HTTP/1.1\r\nHost: app\r\n\r\nGET /z HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n');
    t.match(good, /app saw GET \/x\?y=1\n[^]*app saw GET \/z\n/, 'pipelined good requests served in order');
  },
);

t.test(
  'a smuggled request cannot pass the inbound ALLOW policy',
  { skip: havePython ? false : 'python3 is not installed: the lenient app cannot run' },
  async (t) => {
    const app = await lenientApp(t);
    const dir = mkdtempSync(join(tmpdir(), 'shoal-smuggling-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const log = createLogger('test', process.env.SHOAL_TEST_LOG ?? 'silent');
    const tokensFile = join(dir, 'tokens.yaml');
    writeFileSync(tokensFile, 'tokens:\n  - { token: api-token, namespace: default, serviceAccount: api }\n');
    const topology = join(dir, 'topology.yaml');
    // web may only GET under /public/; the app's own lenient parser is what a smuggled request targets.
    writeFileSync(
      topology,
      `services: []
apps:
  - name: api
    config:
      base_ports: [{ port: ${app.port}, protocol: http, options: { ALLOW: "ns/default/sa/web GET /public/" } }]
      base_normal: { options: { MTLS_MODE: STRICT } }
`,
    );
    const { ca } = await CertificateAuthority.generate(TRUST_DOMAIN);
    const d = await startDiscover({
      staticFile: topology,
      host: '127.0.0.1',
      port: 0,
      log,
      identity: { trustDomain: TRUST_DOMAIN, ca, tokensFile, certTtlMs: 3_600_000 },
    });
    t.teardown(() => d.close());
    const tokenFile = join(dir, 'api.token');
    writeFileSync(tokenFile, 'api-token\n');
    const inboundAddress = randomLoopback();
    const api: Proxy = await startProxy({
      discoverUrl: `${d.url}/v1/resources/default/api/mesh`,
      stateFile: join(dir, 'api.state.json'),
      tokenFile,
      adminHost: '127.0.0.1',
      adminPort: 0,
      inboundAddress,
      drainTimeoutMs: 1000,
      log,
    });
    t.teardown(() => api.close());
    await api.whenReady();
    let listenPort = 0;
    api.onSnapshot((snap) => (listenPort = snap.inbound[0].listenPort));
    const w: Wire = { host: inboundAddress, port: listenPort, tls: await workloadCert(ca, 'web') };

    // The policy holds for plain requests: web may GET /public/..., not DELETE /admin.
    const allowed = await exchange(w, 'GET /public/ok HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
    t.match(allowed, /^HTTP\/1\.1 200 [^]*app saw GET \/public\/ok/, 'an allowed request is served');
    const denied = await exchange(w, 'DELETE /admin HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
    t.match(denied, /^HTTP\/1\.1 403 [^]*x-shoal-error: denied/i, 'DELETE /admin is denied');

    // Smuggled behind an allowed GET /public/..., the DELETE /admin must not reach the app.
    const before = app.seen.length;
    const out = await exchange(w, SMUGGLE('/public/a', 'DELETE\t/admin'));
    t.match(out, /^HTTP\/1\.1 400 /, 'the smuggling request is answered 400');
    const after = await exchange(w, 'GET /public/after HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
    t.match(after, /^HTTP\/1\.1 200 [^]*app saw GET \/public\/after/, 'the next request gets its own answer');
    await waitFor(() => app.seen.some(([, p]) => p === '/public/after'), 'the app to see /public/after', 10_000);
    t.same(app.seen.slice(before), [['GET', '/public/after']], 'the app saw neither the smuggled DELETE /admin nor its carrier');
    t.notOk(
      app.seen.some(([m]) => m === 'DELETE'),
      'no DELETE ever reached the app',
    );
  },
);
