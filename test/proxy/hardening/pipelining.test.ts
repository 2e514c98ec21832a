// A client that pipelines many requests, reads nothing, or trickles a head must cost the sidecar a
// bounded amount of memory and time, and never take the process (and every other app's traffic)
// down with it. The sidecar runs as its own process here, so a crash or its RSS is its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { randomLoopback } from '../fixtures.ts';
import { withDiscover } from '../../lib/discover.ts';
import { metric } from '../resilience/load.ts';

interface Child {
  child: ChildProcess;
  adminPort: number;
  /** Where the app's inbound port listens. */
  address: string;
  port: number;
  exited: Promise<number | null>;
}

async function sidecarInFront(t: Test, options: string, extra: object = {}): Promise<Child> {
  const app = createServer((req, res) => {
    req.resume();
    res.end('app');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    app.closeAllConnections();
    app.close();
  });
  const appPort = (app.address() as AddressInfo).port;
  const discover = await withDiscover(
    t,
    `services: []
apps:
  - name: web
    config:
      base_ports:
        - { port: ${appPort}, protocol: http, options: { ${options} } }
`,
  );
  const snap = (await (await request(`${discover.url}/v2/snapshot/default/web`)).body.json()) as { inbound: { listenPort: number }[] };
  const address = randomLoopback();
  const opts = {
    discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
    adminHost: '127.0.0.1',
    adminPort: 0,
    inboundAddress: address,
    drainTimeoutMs: 1000,
    warmUpRequests: 0,
    stateFile: join(t.testdirName, 'state.json'),
    ...extra,
  };
  t.testdir({});
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'sidecarProcess.ts'), JSON.stringify(opts)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const adminPort = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve((JSON.parse(out.slice(0, nl)) as { adminPort: number }).adminPort);
    });
    child.on('exit', (code) => reject(new Error(`sidecar exited early with ${code}: ${stderr}`)));
  });
  void exited.then((code) => {
    if (stderr !== '') t.comment(`sidecar stderr (exit ${code}): ${stderr.slice(0, 2000)}`);
  });
  return { child, adminPort, address, port: snap.inbound[0].listenPort, exited };
}

/** The child's resident set, in MB. */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function open(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, address, () => resolve(s));
    s.once('error', reject);
  });
}

const GET = 'GET / HTTP/1.1\r\nHost: web\r\n\r\n';

/** Counts the responses (status lines) read on s until n arrived or the socket ended. */
function countResponses(s: Socket, n: number, timeoutMs: number): Promise<{ responses: number; statuses: Map<string, number> }> {
  return new Promise((resolve) => {
    let tail = '';
    let responses = 0;
    const statuses = new Map<string, number>();
    const done = () => {
      clearTimeout(timer);
      s.removeAllListeners('data');
      resolve({ responses, statuses });
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('data', (d: Buffer) => {
      const text = tail + d.toString('latin1');
      const re = /HTTP\/1\.1 (\d{3}) /g;
      let m: RegExpExecArray | null;
      let last = 0;
      while ((m = re.exec(text)) !== null) {
        responses++;
        statuses.set(m[1], (statuses.get(m[1]) ?? 0) + 1);
        last = re.lastIndex;
      }
      tail = text.slice(Math.max(last, text.length - 16));
      if (responses >= n) done();
    });
    s.once('close', done);
  });
}

async function oneRequest(address: string, port: number): Promise<number> {
  const r = await request(`http://${address}:${port}/`, { headersTimeout: 5000, bodyTimeout: 5000 });
  await r.body.dump();
  return r.statusCode;
}

t.test('20,000 pipelined requests refused by LIMIT_RPS are all answered, in a loop: the sidecar lives', async (t) => {
  const c = await sidecarInFront(t, 'OPEN_LIMIT: "YES", LIMIT_RPS: 5');
  const N = 20_000;
  const s = await open(c.address, c.port);
  t.teardown(() => s.destroy());
  const counted = countResponses(s, N, 60_000);
  s.write(GET.repeat(N));
  const { responses, statuses } = await counted;
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.equal(responses, N, 'one response for every request');
  t.ok((statuses.get('429') ?? 0) >= N - 100, 'nearly all of them 429 rate-limited');
  t.equal(c.child.exitCode, null, 'the sidecar process is still running');
  t.ok([200, 429].includes(await oneRequest(c.address, c.port)), 'and answers the next client');
});

t.test('100,000 pipelined requests from a client that reads nothing: memory stays bounded, others are served', async (t) => {
  const c = await sidecarInFront(t, 'OPEN_LIMIT: "YES", LIMIT_RPS: 5');
  const pid = c.child.pid!;
  const base = rssMb(pid);
  const s = await open(c.address, c.port);
  t.teardown(() => s.destroy());
  s.pause(); // never read a byte
  const N = 100_000;
  const batch = GET.repeat(1000);
  for (let i = 0; i < N / 1000; i++) s.write(batch);
  let peak = base;
  const served: number[] = [];
  const deadline = Date.now() + 4000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    peak = Math.max(peak, rssMb(pid));
    served.push(await oneRequest(c.address, c.port));
  }
  // A bound with room for GC timing on a loaded machine; without backpressure this grew by hundreds of MB.
  const BOUND_MB = 40;
  t.comment(`sidecar RSS ${base.toFixed(1)} MB before, peak ${peak.toFixed(1)} MB while 100,000 requests waited (bound: +${BOUND_MB} MB)`);
  t.ok(peak - base < BOUND_MB, `RSS grew ${(peak - base).toFixed(1)} MB, under ${BOUND_MB} MB`);
  // Answered while nobody read them: what the socket buffers hold, then reading stopped.
  const answered = await metric(c.adminPort, 'shoal_proxy_inbound_limited_total', { limit: 'rps' });
  t.comment(`${answered} requests answered 429 while the client read nothing`);
  t.ok(answered < N / 2, 'the sidecar stopped taking requests from a client that does not read');
  t.ok(
    served.length >= 5 && served.every((st) => st === 200 || st === 429),
    `another client was answered every time (${served.length} requests)`,
  );
  // The client reads again: the sidecar answers everything it took, in order, and goes on.
  const counted = countResponses(s, N, 90_000);
  s.resume();
  const { responses } = await counted;
  t.equal(responses, N, 'once read, every pipelined request got its answer');
  t.equal(c.child.exitCode, null, 'the sidecar process is still running');
});

t.test('a request head must arrive whole within --request-head-timeout of its first byte: 408 and close', async (t) => {
  const c = await sidecarInFront(t, 'OPEN_LIMIT: "NO"', { requestHeadTimeoutMs: 1000 });
  const trickle = async () => {
    const s = await open(c.address, c.port);
    let got = '';
    s.on('data', (d) => {
      got += d.toString('latin1');
    });
    const closed = new Promise<number>((r) => s.once('close', () => r(performance.now())));
    const started = performance.now();
    let i = 0;
    const head = 'GET / HTTP/1.1\r\nHost: web\r\nX-Slow: ' + 'a'.repeat(100);
    // One byte every 100 ms: each byte would re-arm an idle timer, but the head's deadline stays.
    const timer = setInterval(() => {
      if (!s.destroyed && i < head.length) s.write(head[i++]);
    }, 100);
    const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 8000))]);
    clearInterval(timer);
    s.destroy();
    return { got, ms: at < 0 ? -1 : at - started };
  };
  const results = await Promise.all(Array.from({ length: 30 }, trickle));
  const times = results.map((r) => r.ms);
  t.comment(`closed after ${Math.min(...times).toFixed(0)}-${Math.max(...times).toFixed(0)} ms`);
  t.ok(
    results.every((r) => r.ms > 0 && r.ms < 5000),
    'every trickling connection was closed well before its head could end',
  );
  t.ok(
    results.every((r) => r.got.startsWith('HTTP/1.1 408 ')),
    'each was told 408 Request Timeout',
  );
  t.equal(await oneRequest(c.address, c.port), 200, 'a normal request still goes through');
  // A head split over two reads that ends in time is served.
  const s = await open(c.address, c.port);
  t.teardown(() => s.destroy());
  const answer = countResponses(s, 1, 5000);
  s.write('GET / HTTP/1.1\r\nHo');
  await new Promise((r) => setTimeout(r, 300));
  s.write('st: web\r\n\r\n');
  const { statuses } = await answer;
  t.equal(statuses.get('200'), 1, 'a head that ends in time is answered 200');
});
