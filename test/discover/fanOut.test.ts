// discover's fan-out writers: a change that wakes many long-poll waiters shares their answers out
// between the event loop and writer threads. Driven by raw sockets, as many sidecars would be.
import t from 'tap';
import { connect, createServer, type Socket } from 'node:net';
import { closeSync, openSync } from 'node:fs';
import { writeShare } from '../../discover/http/fanOut.ts';
import { FAN_OUT_MIN } from '../../discover/http/prebuiltResponse.ts';
import { parseFanOutThreads, MAX_FANOUT_THREADS } from '../../discover/main.ts';
import type { Snapshot } from '../../shared/snapshot.ts';
import { TWO_APPS, withDiscover } from '../lib/discover.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(ok: () => boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!ok() && Date.now() < deadline) await sleep(10);
  return ok();
}

/** Every whole HTTP/1.1 answer in a connection's bytes: status, etag, body. */
function answers(bytes: string): { status: number; etag: string; body: string }[] {
  const out = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = bytes.slice(at, end);
    const len = Number(/content-length: *([0-9]+)/i.exec(head)?.[1] ?? 0);
    out.push({
      status: Number(head.slice(9, 12)),
      etag: /etag: "([^"]*)"/i.exec(head)?.[1] ?? '',
      body: bytes.slice(end + 4, end + 4 + len),
    });
    at = end + 4 + len;
  }
  return out;
}

for (const threads of [1, 0]) {
  t.test(
    `${threads ? 'with a writer thread' : 'on the event loop alone'}: 300 woken waiters each get one whole answer, keep their connection and poll again`,
    async (t) => {
      const d = await withDiscover(t, TWO_APPS, { fanOutThreads: threads });
      const version = ((await (await fetch(`${d.url}/v2/snapshot/default/web`)).json()) as Snapshot).version;
      const poll = (v: string) => `GET /v2/snapshot/default/web?version=${v}&wait=20s HTTP/1.1\r\nhost: x\r\n\r\n`;
      const N = 300;
      const socks: Socket[] = [];
      const got: string[] = [];
      for (let i = 0; i < N; i++) {
        const s = connect(d.port, '127.0.0.1');
        got.push('');
        s.on('data', (c) => (got[i] += c.toString('latin1')));
        socks.push(s);
      }
      // Beside the plain polls: one with a request pipelined behind it, a HEAD, and an HTTP/1.0 poll
      // (the last two take the ordinary path, never a writer thread).
      for (let i = 0; i < N; i++) {
        if (i === 7) socks[i].write(poll(version) + 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
        else if (i === 8) socks[i].write(poll(version).replace('GET', 'HEAD'));
        else if (i === 9) socks[i].write(poll(version).replace('HTTP/1.1', 'HTTP/1.0'));
        else socks[i].write(poll(version));
      }
      t.ok(await until(() => d.store.waiting('default', 'web') === N), `${N} waiters held`);
      if (threads) t.ok(await until(() => d.store.fanOut?.threads === 1), `the writer thread started (at ${FAN_OUT_MIN} waiters)`);
      else t.equal(d.store.fanOut, undefined, 'no writer threads');
      d.edit(TWO_APPS.replace('10.0.0.3:8080]', '10.0.0.3:8080, 10.0.0.4:8080]'));
      t.ok(
        await until(() =>
          got.every((g, i) =>
            i === 8
              ? g.includes('\r\n\r\n')
              : i === 7
                ? g.includes('"status":"ok"')
                : answers(g).length === 1 && g.length > 0 && answers(g)[0].body.length > 0,
          ),
        ),
        'every waiter answered',
      );
      const fresh = answers(got[0])[0].etag;
      t.not(fresh, version, 'with the new version');
      let whole = 0;
      for (let i = 0; i < N; i++) {
        if (i === 7 || i === 8) continue;
        const a = answers(got[i]);
        if (a.length === 1 && a[0].status === 200 && a[0].etag === fresh && (JSON.parse(a[0].body) as Snapshot).version === fresh) whole++;
      }
      t.equal(whole, N - 2, 'each plain waiter got exactly one whole 200 with the new snapshot, nothing twice');
      t.match(
        answers(got[7]).map((a) => a.status),
        [200, 200],
        'the pipelined request is answered after the woken poll',
      );
      t.ok(got[7].indexOf('"status":"ok"') > got[7].indexOf('"schemaVersion"'), 'in order');
      t.match(got[8], /^HTTP\/1\.1 200 OK\r\n/, 'HEAD answered');
      t.notOk(got[8].includes('"schemaVersion"'), 'without a body');
      t.ok(await until(() => socks[9].destroyed || socks[9].readableEnded), 'the HTTP/1.0 connection is closed after its answer');
      if (threads)
        t.ok(
          d.store.fanOut!.writerWrites < N,
          `the writer thread wrote at most a share (${d.store.fanOut!.writerWrites} of ${N}; how much depends on the CPU it got)`,
        );
      // The connections carry the next poll, which waits on the new version and is woken again.
      for (let i = 10; i < N; i++) {
        got[i] = '';
        socks[i].write(poll(fresh));
      }
      t.ok(await until(() => d.store.waiting('default', 'web') === N - 10), 'the next polls wait on the same connections');
      d.edit(TWO_APPS.replace('10.0.0.3:8080]', '10.0.0.5:8080]'));
      t.ok(await until(() => got.slice(10).every((g) => answers(g).length === 1)), 'and are woken by the next edit');
      t.ok(
        got.slice(10).every((g) => answers(g)[0].status === 200 && answers(g)[0].etag !== fresh),
        'each with one newer answer',
      );
      for (const s of socks) s.destroy();
    },
  );
}

t.test('a waiter whose sidecar went away during the change does not disturb the others', async (t) => {
  const d = await withDiscover(t, TWO_APPS, { fanOutThreads: 1 });
  const version = ((await (await fetch(`${d.url}/v2/snapshot/default/web`)).json()) as Snapshot).version;
  const N = 200;
  const socks = Array.from({ length: N }, () => connect(d.port, '127.0.0.1'));
  const got = socks.map(() => '');
  socks.forEach((s, i) => s.on('data', (c) => (got[i] += c.toString('latin1'))));
  socks.forEach((s) => s.write(`GET /v2/snapshot/default/web?version=${version}&wait=20s HTTP/1.1\r\nhost: x\r\n\r\n`));
  t.ok(await until(() => d.store.waiting('default', 'web') === N && d.store.fanOut?.threads === 1), 'held, writer ready');
  // Half of the second half (the writer's share) reset their connections just before the edit.
  for (let i = N / 2; i < N; i += 2) socks[i].resetAndDestroy();
  d.edit(TWO_APPS.replace('10.0.0.3:8080]', '10.0.0.6:8080]'));
  const alive = socks.map((_, i) => i).filter((i) => i < N / 2 || i % 2 === 1);
  t.ok(await until(() => alive.every((i) => answers(got[i]).length === 1)), 'every waiter still connected is answered once');
  t.ok(
    alive.every((i) => answers(got[i])[0].status === 200),
    'with 200',
  );
  t.ok(await until(() => d.store.waiting('default', 'web') === 0), 'no waiter left behind');
  const health = await fetch(`${d.url}/healthz`);
  t.equal(health.status, 200, 'discover keeps serving');
  for (const s of socks) s.destroy();
});

t.test('writeShare: whole, short and refused writes, and a broken descriptor', async (t) => {
  // A connection whose reader never reads: its socket buffers fill up.
  const server = createServer(() => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const client = connect(port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  const fd = (client as unknown as { _handle: { fd: number } })._handle.fd;
  t.ok(fd >= 0, 'a descriptor');
  const small = Buffer.alloc(1000, 'a');
  const out = new Int32Array(1);
  const writeEach = (fds: Int32Array, wire: Buffer, o: Int32Array) =>
    t.equal(writeShare(fds, wire, o, new Int32Array(1), 8), fds.length, 'claims every descriptor');
  writeEach(Int32Array.of(fd), small, out);
  t.equal(out[0], 1000, 'a small write goes whole');
  const big = Buffer.alloc(64 << 20, 'b');
  writeEach(Int32Array.of(fd), big, out);
  t.ok(out[0] > 0 && out[0] < big.length, `a write larger than the buffers is short (${out[0]} bytes)`);
  writeEach(Int32Array.of(fd), small, out);
  t.equal(out[0], 0, 'a full buffer takes nothing (EAGAIN)');
  const closed = openSync('/dev/null', 'r');
  closeSync(closed);
  writeEach(Int32Array.of(closed), small, out);
  t.equal(out[0], -1, 'a broken descriptor is -1');
  client.destroy();
  server.close();
});

t.test('the writer threads alone write every answer once, and report how many they wrote', async (t) => {
  const { FanOutWriters, UNWRITTEN } = await import('../../discover/http/fanOut.ts');
  const server = createServer();
  const accepted: Socket[] = [];
  server.on('connection', (s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const N = 100;
  const clients = await Promise.all(
    Array.from(
      { length: N },
      () =>
        new Promise<Socket>((r) => {
          const c = connect(port, '127.0.0.1', () => r(c));
        }),
    ),
  );
  t.ok(await until(() => accepted.length === N), 'connected');
  const got = clients.map(() => '');
  clients.forEach((c, i) => c.on('data', (d) => (got[i] += d)));
  const writers = new FanOutWriters(2);
  writers.start();
  t.ok(await until(() => writers.threads === 2), 'two writers online');
  const fds = new Int32Array(new SharedArrayBuffer(N * 4));
  fds.set(accepted.map((s) => (s as unknown as { _handle: { fd: number } })._handle.fd));
  const out = new Int32Array(new SharedArrayBuffer(N * 4)).fill(UNWRITTEN);
  const wire = Buffer.from('hello from a writer\n');
  const r = writers.run(wire, fds, out, false);
  t.equal(r.unfinished, undefined, 'both finished');
  t.ok(
    out.every((n) => n === wire.length),
    'every descriptor written whole',
  );
  t.equal(writers.writerWrites, N, 'all by the writers');
  t.ok(await until(() => got.every((g) => g === 'hello from a writer\n')), 'each client got the bytes exactly once');
  await writers.close();
  t.equal(writers.threads, 0, 'closed');
  for (const c of clients) c.destroy();
  server.close();
});

t.test('--fanout-threads takes auto or 0 to 8, and names what is wrong', async (t) => {
  t.equal(parseFanOutThreads('0'), 0);
  t.equal(parseFanOutThreads('2'), 2);
  t.ok(parseFanOutThreads('auto') >= 0);
  for (const bad of ['9', '-1', '1.5', 'x', ''])
    t.throws(
      () => parseFanOutThreads(bad),
      {
        message: new RegExp(
          `--fanout-threads must be auto or a whole number from 0 to ${MAX_FANOUT_THREADS} \\(got "${bad.replace('.', '\\.')}"\\)`,
        ),
      },
      `refuses ${JSON.stringify(bad)}`,
    );
});
