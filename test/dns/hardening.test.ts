// DNS over TCP under abuse: a client that pipelines without reading, one that pipelines names
// for the upstream, one that sends FIN before reading, one that stalls, too many clients.
import t, { type Test } from 'tap';
import { fork, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { MAX_TCP_PENDING } from '../../dns/server.ts';
import { DEMO_NAMES, rcodeOf, sleep, startDnsmasq, tcpQuery, udpQuery, withResponder } from './fixtures.ts';
import type { MemoryReport } from './memoryResponder.ts';

const here = dirname(fileURLToPath(import.meta.url));
const MB = 1024 * 1024;

function frame(id: number, name: string, type: dnsPacket.RecordType = 'A'): Buffer {
  const m = dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as unknown as dnsPacket.Answer],
  });
  const out = Buffer.allocUnsafe(2 + m.length);
  out.writeUInt16BE(m.length);
  m.copy(out, 2);
  return out;
}

/** Reads length-prefixed answers from s; resolves with their IDs once the server closes. */
function readAnswers(s: Socket): Promise<number[]> {
  const ids: number[] = [];
  let buf = Buffer.alloc(0);
  s.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      ids.push(buf.readUInt16BE(2));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
  });
  return new Promise((resolve) => s.once('close', () => resolve(ids)));
}

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_NO_WARNINGS: '1' };
  delete env.NODE_OPTIONS;
  delete env.NODE_V8_COVERAGE;
  return env;
}

/** The responder in a child process, with a way to ask for its memory. */
async function startChild(
  t: Test,
  upstream: string,
  idleMs: number,
): Promise<{ port: number; mem: () => Promise<MemoryReport>; child: ChildProcess }> {
  const child = fork(join(here, 'memoryResponder.ts'), [upstream, String(idleMs)], {
    execArgv: ['--expose-gc'],
    env: childEnv(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  t.teardown(() => {
    if (child.connected) child.send('exit');
    setTimeout(() => child.kill('SIGKILL'), 2000).unref();
  });
  const queue: unknown[] = [];
  let waiting: ((m: unknown) => void) | null = null;
  child.on('message', (m) => {
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(m);
    } else queue.push(m);
  });
  const next = (what: string) =>
    new Promise<unknown>((resolve, reject) => {
      if (queue.length > 0) return resolve(queue.shift());
      const timer = setTimeout(() => reject(new Error(`the responder child did not send ${what} within 20 s`)), 20_000);
      waiting = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  const { port } = (await next('its port')) as { port: number };
  const mem = async () => {
    child.send('mem');
    return (await next('its memory')) as MemoryReport;
  };
  return { port, mem, child };
}

const fmt = (m: MemoryReport) =>
  `rss ${(m.rss / MB).toFixed(1)} MB, external ${(m.external / MB).toFixed(1)} MB, heap ${(m.heapUsed / MB).toFixed(1)} MB`;

// Bounds for 100,000 pipelined queries. Kept, the answers alone are over 50 MB (half of them
// are a 1 KB cached TXT answer); with reading paused the responder holds at most a few hundred
// KB for the connection. RSS also moves with the JS heap's young generation, hence its margin.
const RSS_GROWTH = 48 * MB;
const EXTERNAL_GROWTH = 8 * MB;

t.test('TCP: 100,000 queries pipelined without reading keep memory bounded, others are answered, all is freed', async (t) => {
  const txt = Array.from({ length: 4 }, (_, i) => `"${String.fromCharCode(97 + i).repeat(250)}"`).join(',');
  const up = await startDnsmasq(t, ['--address=/fwd.test/10.9.8.7', `--txt-record=big.test,${txt}`]);
  // A long idle timeout: here the connection must be freed because the client left, not by the timer.
  const r = await startChild(t, `127.0.0.1:${up.port}`, 60_000);
  // The big answer goes into the cache first, so that half the flood is answered from there.
  const big = await tcpQuery(r.port, { questions: [{ type: 'TXT', name: 'big.test' }] });
  t.ok(big.length > 1000, `the cached TXT answer is ${big.length} bytes`);
  const before = await r.mem();
  t.comment(`baseline: ${fmt(before)}`);

  const frames: Buffer[] = [];
  for (let i = 0; i < 100_000; i++) {
    const k = i % 4;
    frames.push(k === 0 ? frame(i & 0xffff, 'api') : k === 1 ? frame(i & 0xffff, `n${i}.fwd.test`) : frame(i & 0xffff, 'big.test', 'TXT'));
  }
  const flood = connect(r.port, '127.0.0.1');
  flood.pause(); // never reads
  flood.on('error', () => undefined);
  await new Promise<void>((resolve) => flood.once('connect', () => resolve()));
  flood.write(Buffer.concat(frames));

  let peakRss = before.rss;
  let peakExternal = before.external;
  for (let i = 0; i < 8; i++) {
    await sleep(500);
    const m = await r.mem();
    peakRss = Math.max(peakRss, m.rss);
    peakExternal = Math.max(peakExternal, m.external);
    // Meanwhile other clients get answers: local and forwarded names, over UDP and TCP.
    if (i % 2 === 0) {
      const [a, b, c] = await Promise.all([
        udpQuery(r.port, { questions: [{ type: 'A', name: 'api' }] }, 3000),
        udpQuery(r.port, { questions: [{ type: 'A', name: `other${i}.fwd.test` }] }, 3000),
        tcpQuery(r.port, { questions: [{ type: 'A', name: 'cache' }] }, 3000),
      ]);
      t.same([rcodeOf(a), rcodeOf(b), rcodeOf(c)], [0, 0, 0], `during the flood (${i}): UDP local, UDP forwarded and TCP local answered`);
      t.equal(dnsPacket.decode(b).answers!.length, 1, 'the forwarded name has its answer');
    }
  }
  t.comment(`peak during the flood: rss ${(peakRss / MB).toFixed(1)} MB, external ${(peakExternal / MB).toFixed(1)} MB`);
  t.ok(peakRss - before.rss < RSS_GROWTH, `RSS grew ${((peakRss - before.rss) / MB).toFixed(1)} MB (bound ${RSS_GROWTH / MB} MB)`);
  t.ok(
    peakExternal - before.external < EXTERNAL_GROWTH,
    `external memory grew ${((peakExternal - before.external) / MB).toFixed(1)} MB (bound ${EXTERNAL_GROWTH / MB} MB)`,
  );

  flood.destroy();
  let after = await r.mem();
  for (let i = 0; i < 50 && after.tcpConnections > 0; i++) {
    await sleep(100);
    after = await r.mem();
  }
  t.equal(after.tcpConnections, 0, 'the connection is gone once the client left');
  t.comment(`after the client left: ${fmt(after)}`);
  t.ok(
    after.external - before.external < 2 * MB,
    `external memory back to ${(after.external / MB).toFixed(1)} MB (baseline ${(before.external / MB).toFixed(1)} MB)`,
  );
  t.ok(
    after.heapUsed - before.heapUsed < 8 * MB,
    `heap back to ${(after.heapUsed / MB).toFixed(1)} MB (baseline ${(before.heapUsed / MB).toFixed(1)} MB; the cache now holds the forwarded names)`,
  );
  t.equal(rcodeOf(await tcpQuery(r.port, { questions: [{ type: 'A', name: 'api' }] })), 0, 'and it still answers');
});

t.test(`TCP: at most ${MAX_TCP_PENDING} queries of one connection wait for the upstream`, async (t) => {
  // An upstream that records and never answers.
  const seen: string[] = [];
  const upstream = createSocket('udp4');
  upstream.on('message', (m) => seen.push(dnsPacket.decode(m).questions![0].name));
  await new Promise<void>((resolve) => upstream.bind(0, '127.0.0.1', resolve));
  t.teardown(() => upstream.close());
  const r = await withResponder(t, { names: DEMO_NAMES, upstreams: [`127.0.0.1:${upstream.address().port}`], upstreamTimeoutMs: 5000 });
  const s = connect(r.tcpPort, '127.0.0.1');
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  const answers = readAnswers(s);
  const frames: Buffer[] = [];
  for (let i = 0; i < 500; i++) frames.push(frame(i, `p${i}.slow.test`));
  // Then a local name: it waits behind the held queries, as the stream is no longer read.
  frames.push(frame(9999, 'api'));
  s.write(Buffer.concat(frames));
  await sleep(700);
  t.equal(seen.length, MAX_TCP_PENDING, `${seen.length} of 500 pipelined queries sent upstream`);
  // The limit is per connection: another client's query still goes upstream.
  const other = udpQuery(r.udpPort, { questions: [{ type: 'A', name: 'udp.slow.test' }] }, 1500).catch(() => null);
  await sleep(300);
  t.ok(seen.includes('udp.slow.test'), "another client's query went upstream");
  s.destroy();
  t.same(await answers, [], 'nothing answered while the upstream is silent');
  await other;
});

t.test('TCP: a client that sends its queries and FIN before reading gets every answer', async (t) => {
  const up = await startDnsmasq(t, ['--address=/fwd.test/10.9.8.7']);
  const r = await withResponder(t, { names: DEMO_NAMES, upstreams: [`127.0.0.1:${up.port}`] });
  const s = connect(r.tcpPort, '127.0.0.1');
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  const answers = readAnswers(s);
  s.end(Buffer.concat([frame(1, 'a.fwd.test'), frame(2, 'api'), frame(3, 'b.fwd.test')]));
  const ids = await Promise.race([answers, sleep(5000).then(() => null)]);
  t.ok(ids !== null, 'the responder closed once it had answered');
  t.same([...(ids ?? [])].sort(), [1, 2, 3], 'the forwarded answers came after the FIN too');
});

t.test('TCP: a client that writes without reading is closed after the idle timeout', async (t) => {
  const r = await withResponder(t, { names: DEMO_NAMES, tcpIdleMs: 500 });
  const frames: Buffer[] = [];
  for (let i = 0; i < 100_000; i++) frames.push(frame(i & 0xffff, 'api'));
  const flood = Buffer.concat(frames);
  const s = connect(r.tcpPort, '127.0.0.1');
  s.pause();
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  const started = Date.now();
  s.write(flood);
  await sleep(200);
  t.equal(r.tcpConnections, 1, 'still open while it writes');
  // Reading stopped once the answers backed up: no read and no write restarts the timer.
  while (r.tcpConnections > 0 && Date.now() - started < 15_000) await sleep(50);
  const ms = Date.now() - started;
  t.equal(r.tcpConnections, 0, `closed by the responder after ${ms} ms (idle timeout 500 ms)`);
  t.ok(ms < 8000, 'within the idle timeout and the time to fill the buffers');
});

t.test('TCP: connections over the limit are closed at once', async (t) => {
  const r = await withResponder(t, { names: DEMO_NAMES, maxTcpConnections: 2 });
  const open = [connect(r.tcpPort, '127.0.0.1'), connect(r.tcpPort, '127.0.0.1')];
  t.teardown(() => open.forEach((s) => s.destroy()));
  await Promise.all(open.map((s) => new Promise((resolve) => s.once('connect', resolve))));
  for (let i = 0; i < 20 && r.tcpConnections < 2; i++) await sleep(25);
  t.equal(r.tcpConnections, 2);
  await t.rejects(tcpQuery(r.tcpPort, { questions: [{ type: 'A', name: 'api' }] }, 2000), 'the third is refused');
  t.equal(r.metrics.total('dropped'), 1, 'and counted');
  open[0].destroy();
  for (let i = 0; i < 40 && r.tcpConnections > 1; i++) await sleep(25);
  t.equal(rcodeOf(await tcpQuery(r.tcpPort, { questions: [{ type: 'A', name: 'api' }] })), 0, 'a slot freed is taken again');
});
