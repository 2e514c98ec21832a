// The sidecar's drain on SIGTERM, as a process: it keeps accepting while clients still send (the pod's
// endpoint not yet dropped everywhere, an app still shutting down), discouraging them (Connection:
// close), stops accepting once traffic has stopped for a second or at half the drain timeout, and
// exits within the drain timeout. The load: 200 requests a second, half on keep-alive connections
// (undici), half on a new connection each (node:http without an agent), one in five taking 400 ms.
// POST /drain does the same without the exit (TCP listeners too); the DNS responder answers until
// the sidecar closes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import { DRAIN_QUIET_MS } from '../../proxy/listener/listenerSet.ts';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from './fixtures.ts';
import { withDiscover } from '../lib/discover.ts';

const RATE = 200;
const SLOW_MS = 400;

interface Sidecar {
  child: ChildProcess;
  adminPort: number;
  url: string;
  exited: Promise<{ code: number | null; at: number }>;
  /** The sidecar's log lines so far (JSON on its stdout). */
  logs: Array<{ time: number; msg: string; [k: string]: unknown }>;
}

/** discover, a backend (SLOW_MS on /slow, 2 ms otherwise) and web's sidecar in its own process (test/proxy/sidecarProcess.ts). */
async function startSidecarProcess(t: Test, drainTimeoutMs: number): Promise<Sidecar> {
  const backend = await httpBackend(t, 'api-1', (req, res) => {
    req.resume();
    setTimeout(() => res.end('ok'), req.url === '/slow' ? SLOW_MS : 2);
  });
  const port = await freePort();
  const address = randomLoopback();
  const discover = await withDiscover(
    t,
    `services:\n${service('api', address, port, [backend.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'shoal-drain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const opts = {
    discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
    stateFile: join(dir, 'state.json'),
    adminHost: '127.0.0.1',
    adminPort: 0,
    inboundAddress: randomLoopback(),
    drainTimeoutMs,
  };
  const child = spawn(process.execPath, [join(import.meta.dirname, 'sidecarProcess.ts'), JSON.stringify(opts)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, SHOAL_TEST_LOG: 'info' },
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.on('exit', (code) => resolve({ code, at: Date.now() })),
  );
  const logs: Sidecar['logs'] = [];
  const adminPort = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let o: Record<string, unknown>;
        try {
          o = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (typeof o.adminPort === 'number') resolve(o.adminPort);
        else if (typeof o.msg === 'string') logs.push(o as Sidecar['logs'][number]);
      }
    });
    void exited.then(({ code }) => reject(new Error(`the sidecar exited early with ${code}`)));
  });
  return { child, adminPort, url: `http://${address}:${port}`, exited, logs };
}

interface Outcome {
  /** Date.now() when the request was sent, and when its answer (or error) was complete. */
  at: number;
  end: number;
  kind: 'keep-alive' | 'new-connection';
  /** 'ok' (200 "ok"), 'status N body' or the error code. */
  result: string;
  /** The response's Connection header. */
  connection: string;
}

/** RATE requests a second to url until stop(); stop() resolves once every one has its outcome. */
function startLoad(url: string): { outcomes: Outcome[]; stop(): Promise<void> } {
  const outcomes: Outcome[] = [];
  const agent = new Agent({ connections: 50 });
  let sent = 0;
  let pending = 0;
  let idle: (() => void) | null = null;
  const settle = (o: Outcome) => {
    o.end = Date.now();
    if (--pending === 0 && idle) idle();
  };
  const one = () => {
    const i = sent++;
    const path = i % 5 === 0 ? '/slow' : '/';
    const o: Outcome = { at: Date.now(), end: 0, kind: i % 2 === 0 ? 'new-connection' : 'keep-alive', result: '', connection: '' };
    outcomes.push(o);
    pending++;
    if (o.kind === 'keep-alive') {
      request(`${url}${path}`, { dispatcher: agent })
        .then(
          async (r) => {
            const body = await r.body.text();
            o.connection = String(r.headers.connection ?? '');
            o.result = r.statusCode === 200 && body === 'ok' ? 'ok' : `status ${r.statusCode} ${body.slice(0, 60)}`;
          },
          (e: Error & { code?: string }) => {
            o.result = e.code ?? e.message;
          },
        )
        .finally(() => settle(o));
      return;
    }
    httpGet(`${url}${path}`, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => {
        o.connection = String(res.headers.connection ?? '');
        o.result = res.statusCode === 200 && body === 'ok' ? 'ok' : `status ${res.statusCode} ${body.slice(0, 60)}`;
        settle(o);
      });
      res.on('error', (e: Error & { code?: string }) => {
        o.result = e.code ?? e.message;
        settle(o);
      });
    }).on('error', (e: Error & { code?: string }) => {
      o.result = e.code ?? e.message;
      settle(o);
    });
  };
  const t0 = Date.now();
  const tick = setInterval(() => {
    const due = Math.floor(((Date.now() - t0) * RATE) / 1000);
    while (sent < due) one();
  }, 5);
  return {
    outcomes,
    async stop() {
      clearInterval(tick);
      if (pending > 0)
        await new Promise<void>((resolve) => {
          idle = resolve;
        });
      await agent.close();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readyStatus(adminPort: number): Promise<number> {
  const r = await request(`http://127.0.0.1:${adminPort}/ready`);
  await r.body.dump();
  return r.statusCode;
}

function logTime(s: Sidecar, pattern: RegExp): { time: number; [k: string]: unknown } | undefined {
  return s.logs.find((l) => pattern.test(l.msg));
}

t.test(
  'SIGTERM under 200 requests/s that go on for 2 s: every request is served, then the sidecar exits a quiet second after the load stops',
  async (t) => {
    const drainTimeoutMs = 10_000;
    const s = await startSidecarProcess(t, drainTimeoutMs);
    const load = startLoad(s.url);
    await sleep(1000);
    const signalAt = Date.now();
    s.child.kill('SIGTERM');
    await sleep(300);
    t.equal(await readyStatus(s.adminPort), 503, '/ready answers 503 while the sidecar drains');
    await sleep(1700);
    const loadStoppedAt = Date.now();
    await load.stop();
    const exit = await s.exited;
    const all = load.outcomes;
    const lastSent = all[all.length - 1].at;
    const lastEnd = Math.max(...all.map((o) => o.end));
    const failed = all.filter((o) => o.result !== 'ok');
    const refused = failed.filter((o) => o.result === 'ECONNREFUSED');
    const drainStart = logTime(s, /^draining/)?.time ?? signalAt;
    const stopLine = logTime(s, /no longer accepting/);
    const afterDrain = all.filter((o) => o.at > drainStart);
    t.ok(all.length - afterDrain.length >= 100, `${all.length - afterDrain.length} requests before the drain began`);
    t.ok(
      afterDrain.length >= 150,
      `${afterDrain.length} requests sent while the sidecar drained (load stopped ${loadStoppedAt - signalAt} ms after SIGTERM)`,
    );
    t.same(
      failed.slice(0, 5),
      [],
      `no failed request: ${all.length - failed.length} of ${all.length} answered 200 (both kinds, ${all.filter((o) => o.kind === 'new-connection').length} on new connections)`,
    );
    t.equal(refused.length, 0, 'ECONNREFUSED: none (the client stopped before the sidecar stopped accepting)');
    const keepAlive = afterDrain.filter((o) => o.kind === 'keep-alive' && o.result === 'ok');
    t.ok(
      keepAlive.length > 0 && keepAlive.every((o) => o.connection === 'close'),
      `every keep-alive response to a request sent during the drain says Connection: close (${keepAlive.length})`,
    );
    t.equal(exit.code, 0, 'the sidecar exits 0');
    t.equal(stopLine?.quiet, true, 'it stopped accepting because traffic had stopped');
    // Activity is sampled every 50 ms: quiet is judged from the last sample that saw a request.
    t.ok(
      exit.at - lastSent >= DRAIN_QUIET_MS - 100,
      `it exited ${exit.at - lastSent} ms after the last request was sent (it waits ${DRAIN_QUIET_MS} ms of quiet)`,
    );
    t.ok(exit.at - lastEnd < DRAIN_QUIET_MS + 1500, `and ${exit.at - lastEnd} ms after the last answer`);
    t.ok(exit.at - signalAt < drainTimeoutMs, `${exit.at - signalAt} ms after SIGTERM, within the ${drainTimeoutMs} ms drain timeout`);
  },
);

t.test(
  'SIGTERM under load that never stops: accepted for half the drain timeout, none of what it took failed; refused after; exit within the drain timeout',
  async (t) => {
    const drainTimeoutMs = 6000;
    const s = await startSidecarProcess(t, drainTimeoutMs);
    const load = startLoad(s.url);
    await sleep(500);
    const signalAt = Date.now();
    s.child.kill('SIGTERM');
    const exit = await s.exited;
    // The client goes on 300 ms past the exit, as an app or a peer that has not heard of it would.
    await sleep(300);
    await load.stop();
    const stopLine = logTime(s, /no longer accepting/);
    t.ok(stopLine, 'the sidecar logged when it stopped accepting');
    const stopAt = stopLine?.time ?? exit.at;
    t.equal(stopLine?.quiet, false, 'not because traffic stopped');
    t.ok(
      stopAt - signalAt >= drainTimeoutMs / 2 - 200 && stopAt - signalAt < drainTimeoutMs,
      `it stopped accepting ${stopAt - signalAt} ms after SIGTERM (half the ${drainTimeoutMs} ms drain timeout)`,
    );
    const all = load.outcomes;
    // The stop closes the listening sockets: a connection the kernel had completed but the sidecar not
    // yet taken is reset (ECONNRESET), later ones are refused. STOP_MS allows for the client's own event
    // loop between taking a request's time and connecting.
    const STOP_MS = 100;
    const beforeStop = all.filter((o) => o.at < stopAt - STOP_MS);
    const accepting = beforeStop.filter((o) => o.at > signalAt);
    t.ok(accepting.length >= 200, `${accepting.length} requests sent between SIGTERM and the stop`);
    t.same(
      beforeStop.filter((o) => o.result !== 'ok').slice(0, 5),
      [],
      `every request sent before the stop answered 200 (${beforeStop.length}, ${accepting.length} of them after SIGTERM)`,
    );
    const atStop = all.filter((o) => o.at >= stopAt - STOP_MS);
    const tally: Record<string, number> = {};
    for (const o of atStop) {
      const k = `${o.result}${o.result === 'ok' ? '' : o.at < exit.at ? ' before the exit' : ' after the exit'}`;
      tally[k] = (tally[k] ?? 0) + 1;
    }
    t.same(
      atStop.filter((o) => o.result !== 'ok' && o.result !== 'ECONNREFUSED' && o.result !== 'ECONNRESET').slice(0, 5),
      [],
      'from the stop on, a request is answered, refused or reset: nothing else',
    );
    t.ok(
      atStop.every((o) => o.result !== 'ECONNRESET' || o.at < stopAt + STOP_MS),
      'resets only for connections opened as the listening socket closed',
    );
    t.comment(
      `from ${STOP_MS} ms before the stop (${stopAt - signalAt} ms after SIGTERM) to 300 ms after the exit (${exit.at - signalAt} ms): ${JSON.stringify(tally)}. Under load that never stops the sidecar has to stop accepting before it exits: it does at half the drain timeout, so what it took has the other half to finish; refused requests never reached it`,
    );
    t.equal(exit.code, 0, 'the sidecar exits 0');
    t.ok(exit.at - signalAt < drainTimeoutMs, `${exit.at - signalAt} ms after SIGTERM, within the ${drainTimeoutMs} ms drain timeout`);
  },
);

t.test('SIGTERM with no traffic (an idle keep-alive connection open): exit within about 1.5 s', async (t) => {
  const s = await startSidecarProcess(t, 10_000);
  const agent = new Agent({ connections: 1 });
  t.teardown(() => agent.close());
  const r = await request(`${s.url}/`, { dispatcher: agent });
  t.equal(await r.body.text(), 'ok', 'a request on a keep-alive connection, which then stays idle');
  await sleep(200);
  const signalAt = Date.now();
  s.child.kill('SIGTERM');
  const exit = await s.exited;
  t.equal(exit.code, 0, 'the sidecar exits 0');
  // About DRAIN_QUIET_MS plus the close path; the allowance above 1.5 s is for a busy machine.
  t.ok(exit.at - signalAt < 2000, `it exited ${exit.at - signalAt} ms after SIGTERM (quiet period ${DRAIN_QUIET_MS} ms)`);
  t.equal(logTime(s, /no longer accepting/)?.quiet, true, 'it stopped accepting because nothing came');
});

/** Connects to address:port and reads until the far end closes: what a TCP (L4) listener relayed, or the error code. */
function tcpRead(address: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const c = netConnect(port, address);
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      got += d;
    });
    c.on('end', () => resolve(got));
    c.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
  });
}

t.test(
  'POST /drain: /ready 503 at once, HTTP and TCP listeners serve on (Connection: close) until quiet, then refuse; DNS answers throughout; no exit',
  async (t) => {
    const b = await httpBackend(t, 'api-1');
    // A TCP backend that writes its name and closes.
    const cache = createNetServer((c) => c.end('cache-1'));
    const cacheAddress = randomLoopback();
    await new Promise<void>((r) => cache.listen(0, cacheAddress, r));
    t.teardown(() => new Promise<void>((r) => cache.close(() => r())));
    const port = await freePort();
    const address = randomLoopback();
    const tcpPort = await freePort();
    const tcpAddress = randomLoopback();
    const s = await startSidecar(
      t,
      `services:\n${service('api', address, port, [b.endpoint])}${service('cache', tcpAddress, tcpPort, [`${cacheAddress}:${(cache.address() as AddressInfo).port}`], 'tcp')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
        - { depend_service_alias: cache, port: ${tcpPort}, protocol: tcp }
`,
      { drainTimeoutMs: 10_000, drainQuietMs: DRAIN_QUIET_MS, dns: { host: '127.0.0.1', port: 0, upstreams: [] } },
    );
    t.equal(await tcpRead(tcpAddress, tcpPort), 'cache-1', 'the TCP listener relays cache');
    const admin = `http://127.0.0.1:${s.proxy.adminPort}`;
    const dig = async () =>
      (
        await promisify(execFile)('dig', [
          '@127.0.0.1',
          '-p',
          String(s.proxy.dns!.udpPort),
          '+short',
          '+tries=1',
          '+time=2',
          'api.default.svc.cluster.local',
        ])
      ).stdout.trim();
    t.equal(await dig(), address, 'DNS answers api with its listener address');
    const started = Date.now();
    const r = await request(`${admin}/drain`, { method: 'POST' });
    t.equal(r.statusCode, 202);
    t.same(await r.body.json(), { draining: true });
    t.equal(await readyStatus(s.proxy.adminPort), 503, '/ready answers 503 at once');
    const during = await request(`http://${address}:${port}/`);
    t.equal(await during.body.text(), 'api-1', 'the listener still serves');
    t.equal(during.headers.connection, 'close', 'with Connection: close');
    t.equal(await dig(), address, 'DNS answers during the drain');
    t.equal(await tcpRead(tcpAddress, tcpPort), 'cache-1', 'the TCP listener still accepts and relays');
    await s.proxy.drain();
    const drainedMs = Date.now() - started;
    t.ok(
      drainedMs >= DRAIN_QUIET_MS && drainedMs < DRAIN_QUIET_MS + 1500,
      `the drain ended ${drainedMs} ms after POST /drain (a quiet ${DRAIN_QUIET_MS} ms after the last request)`,
    );
    const after = await request(`http://${address}:${port}/`).then(
      () => 'answered',
      (e: Error & { code?: string }) => e.code,
    );
    t.equal(after, 'ECONNREFUSED', 'then the listener no longer accepts');
    t.equal(await tcpRead(tcpAddress, tcpPort), 'ECONNREFUSED', 'nor does the TCP listener');
    t.equal(await readyStatus(s.proxy.adminPort), 503, 'the sidecar is still up (POST /drain does not exit): /ready 503');
    t.equal(await dig(), address, 'and DNS still answers, until the sidecar closes');
  },
);
