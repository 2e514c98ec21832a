// A change that rebuilds many apps hands its waiters' answers to the writer threads in batches as
// the apps are built (AnswerBatches), and joins them at the end: every waiter gets exactly its own
// app's answer once, what a writer could not write is finished by the event loop, and a writer
// that hangs does not hang the change.
import t, { type Test } from 'tap';
import { createServer, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { FanOutWriters } from '../../discover/http/fanOut.ts';
import { AnswerBatches, FAN_OUT_MIN, prebuild, type Prebuilt } from '../../discover/http/prebuiltResponse.ts';
import { createDiscoverMetrics } from '../../discover/metrics.ts';
import { SnapshotStore } from '../../discover/snapshot/store.ts';
import { parseStaticTopology } from '../../discover/topology/staticFile.ts';
import { createLogger } from '../../shared/log.ts';
import type { Snapshot } from '../../shared/snapshot.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(ok: () => boolean, ms = 15_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!ok() && Date.now() < deadline) await sleep(10);
  return ok();
}

/** Blocks the event loop for ms, as building the next apps' snapshots does. */
function busy(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Every whole HTTP/1.1 answer in a connection's bytes. */
function answers(bytes: Buffer): { status: number; body: Buffer }[] {
  const out = [];
  let at = 0;
  for (;;) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = bytes.subarray(at, end).toString('latin1');
    const len = Number(/content-length: *([0-9]+)/i.exec(head)?.[1] ?? 0);
    if (bytes.length < end + 4 + len) break;
    out.push({ status: Number(head.slice(9, 12)), body: bytes.subarray(end + 4, end + 4 + len) });
    at = end + 4 + len;
  }
  return out;
}

interface Held {
  /** The held responses, by path (/app-K), in arrival order. */
  held: Map<string, ServerResponse[]>;
  clients: Socket[];
  /** The bytes each client received (joined once per read, not once per chunk: answers here run to megabytes). */
  got: Buffer[];
  port: number;
  close(): void;
}

/** An HTTP server that holds every /app-K request (a long-poll waiter), and n raw clients, client i polling app i % apps. */
async function heldWaiters(t: Test, n: number, apps: number): Promise<Held> {
  const held = new Map<string, ServerResponse[]>();
  let count = 0;
  const server = createServer((req, res) => {
    if (req.url === '/again') return void res.end('again');
    const list = held.get(req.url!) ?? [];
    list.push(res);
    held.set(req.url!, list);
    count++;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const clients: Socket[] = [];
  const parts: Buffer[][] = [];
  const got = new Proxy([] as Buffer[], {
    get: (target, key) => {
      if (key === 'length') return n;
      if (typeof key === 'string' && /^[0-9]+$/.test(key)) {
        const i = Number(key);
        if (parts[i].length > 1) parts[i] = [Buffer.concat(parts[i])];
        return parts[i][0] ?? Buffer.alloc(0);
      }
      if (key === 'every') return (f: (g: Buffer, i: number) => boolean) => parts.every((_, i) => f(got[i], i));
      return Reflect.get(target, key) as unknown;
    },
    set: (_, key, value: Buffer) => {
      parts[Number(key)] = [value];
      return true;
    },
  });
  for (let i = 0; i < n; i++) {
    const c = connect(port, '127.0.0.1');
    parts.push([]);
    c.on('data', (d: Buffer) => parts[i].push(d));
    c.write(`GET /app-${i % apps} HTTP/1.1\r\nhost: x\r\n\r\n`);
    clients.push(c);
  }
  t.ok(await until(() => count === n), `${n} waiters held`);
  const close = () => {
    for (const c of clients) c.destroy();
    server.close();
    server.closeAllConnections();
  };
  t.teardown(close);
  return { held, clients, got, port, close };
}

const answerOf = (app: number, size = 200): Prebuilt => {
  const body = Buffer.alloc(size, `app-${app};`);
  return prebuild(200, 'OK', ['content-length', String(body.length)], body);
};

/** Adds every app's waiters, flushing after each app and "building" busyMs between apps, as apply() does. */
function addAll(batches: AnswerBatches, h: Held, apps: number, ans: Prebuilt[], busyMs = 0): number[] {
  const early: number[] = [];
  for (let a = 0; a < apps; a++) {
    for (const res of h.held.get(`/app-${a}`) ?? []) batches.add(res, ans[a]);
    batches.flush();
    early.push(batches.early);
    if (busyMs) busy(busyMs);
  }
  return early;
}

async function writersOnline(t: Test, n: number): Promise<FanOutWriters> {
  const writers = new FanOutWriters(n);
  writers.start();
  t.teardown(() => writers.close());
  t.ok(await until(() => writers.threads === n), `${n} writer(s) online`);
  return writers;
}

t.test(
  'several batches go to the writer early; each waiter gets exactly its own answer once, and the connection stays usable',
  async (t) => {
    const N = 300;
    const APPS = 30;
    const h = await heldWaiters(t, N, APPS);
    const writers = await writersOnline(t, 1);
    const ans = Array.from({ length: APPS }, (_, a) => answerOf(a));
    const batches = new AnswerBatches(writers);
    // 10 waiters per app: a batch each time FAN_OUT_MIN waiters are gathered; the writer gets time
    // to write each while the event loop "builds" the next apps.
    const early = addAll(batches, h, APPS, ans, 5);
    t.ok(batches.early >= 3, `${batches.early} batches handed out before the end`);
    t.equal(early[0], 0, 'none for the first app alone (10 waiters)');
    t.equal(early[Math.ceil(FAN_OUT_MIN / 10) - 1], 1, `the first once ${FAN_OUT_MIN} waiters are gathered`);
    batches.finish();
    t.ok(writers.writerWrites > 0, `the writer wrote ${writers.writerWrites} of ${N} (the rest: the event loop at the join)`);
    t.ok(await until(() => h.got.every((g) => answers(g).length === 1)), 'every waiter answered');
    let own = 0;
    for (let i = 0; i < N; i++) {
      const a = answers(h.got[i]);
      if (a.length === 1 && a[0].status === 200 && a[0].body.equals(ans[i % APPS].body) && h.got[i].length === ans[i % APPS].wire.length)
        own++;
    }
    t.equal(own, N, "each got one 200 with its own app's bytes, and nothing more (nothing written twice)");
    batches.finish();
    await sleep(50);
    t.ok(
      h.got.every((g, i) => g.length === ans[i % APPS].wire.length),
      'a second finish() writes nothing',
    );
    // ServerResponse finished each one: the connection carries the next request.
    for (let i = 0; i < N; i++) {
      h.got[i] = Buffer.alloc(0);
      h.clients[i].write('GET /again HTTP/1.1\r\nhost: x\r\n\r\n');
    }
    t.ok(
      await until(() => h.got.every((g) => answers(g).length === 1 && answers(g)[0].body.toString() === 'again')),
      'each connection answers its next request',
    );
  },
);

t.test('a client that does not read: what the writer could not write is finished by the event loop, once', async (t) => {
  const N = 200;
  const APPS = 20;
  const h = await heldWaiters(t, N, APPS);
  const writers = await writersOnline(t, 1);
  // App 3's answer is far larger than the socket buffers, and client 3 (polling app 3) does not read.
  const ans = Array.from({ length: APPS }, (_, a) => answerOf(a, a === 3 ? 8 << 20 : 300));
  h.clients[3].pause();
  const batches = new AnswerBatches(writers);
  addAll(batches, h, APPS, ans, 2);
  t.ok(batches.early >= 2, `${batches.early} batches early`);
  batches.finish();
  const stuck = h.held.get('/app-3')!.find((r) => r.socket?.remotePort === h.clients[3].localPort)!;
  t.ok(
    stuck.socket!.writableLength > 0,
    `the rest of the large answer waits in the socket's queue (${stuck.socket!.writableLength} bytes)`,
  );
  t.ok(await until(() => h.got.every((g, i) => i === 3 || answers(g).length === 1)), 'every other waiter answered');
  h.clients[3].resume();
  t.ok(await until(() => h.got[3].length >= ans[3].wire.length, 30_000), 'the client that did not read gets the rest once it reads');
  await sleep(50);
  t.equal(h.got[3].length, ans[3].wire.length, 'the whole answer, nothing twice');
  t.ok(h.got[3].equals(ans[3].wire), 'byte for byte');
  t.ok(
    h.got.every((g, i) => g.equals(ans[i % APPS].wire)),
    'every client got exactly its own answer',
  );
});

t.test('a writer that hangs does not hang the change: dropped after a second, every waiter still answered once', async (t) => {
  const N = 200;
  const APPS = 20;
  const h = await heldWaiters(t, N, APPS);
  const writers = await writersOnline(t, 1);
  const ans = Array.from({ length: APPS }, (_, a) => answerOf(a));
  writers.stallForTest(5000);
  const batches = new AnswerBatches(writers);
  addAll(batches, h, APPS, ans);
  t.ok(batches.early >= 2, `${batches.early} batches handed to the hung writer`);
  const started = performance.now();
  batches.finish();
  const took = performance.now() - started;
  t.ok(took < 2500, `finish() returned in ${Math.round(took)} ms`);
  t.ok(took >= 900, 'after waiting its second for the writer');
  t.equal(writers.threads, 0, 'the hung writer left the pool');
  t.ok(await until(() => h.got.every((g) => answers(g).length === 1)), 'every waiter answered (the event loop wrote them all)');
  await sleep(50);
  t.ok(
    h.got.every((g, i) => g.equals(ans[i % APPS].wire)),
    'each exactly its own answer, once',
  );
});

for (const [what, threads, n] of [
  ['too few waiters in all', 1, FAN_OUT_MIN - 1],
  ['no writer threads', 0, 200],
] as const)
  t.test(`${what}: nothing goes early, one pass at the end as before`, async (t) => {
    const APPS = 10;
    const h = await heldWaiters(t, n, APPS);
    const writers = threads ? await writersOnline(t, threads) : undefined;
    const ans = Array.from({ length: APPS }, (_, a) => answerOf(a));
    const batches = new AnswerBatches(writers);
    addAll(batches, h, APPS, ans);
    t.equal(batches.early, 0, 'no batch handed out early');
    batches.finish();
    t.ok(await until(() => h.got.every((g) => answers(g).length === 1)), 'every waiter answered');
    await sleep(50);
    t.ok(
      h.got.every((g, i) => g.equals(ans[i % APPS].wire)),
      'each exactly its own answer, once',
    );
    if (writers) t.equal(writers.writerWrites, 0, 'the writer wrote none');
  });

t.test('add() after finish() is refused', async (t) => {
  const batches = new AnswerBatches(undefined);
  batches.finish();
  t.throws(() => batches.add({} as ServerResponse, answerOf(0)), /add\(\) after finish\(\)/);
});

t.test(
  "the store: one change wakes 300 waiters of 30 apps, on the incremental and on the full path; each gets its app's committed snapshot once",
  async (t) => {
    const APPS = 30;
    const PER_APP = 10;
    const N = APPS * PER_APP;
    const text = (endpoints: string) => `
services:
  - { name: api, ports: [{ port: 8080, protocol: http }], endpoints: [${endpoints}] }
apps:
${Array.from({ length: APPS }, (_, i) => `  - { name: app-${i}, config: { base_services: [{ depend_service_alias: api, port: 8080, protocol: http }] } }`).join('\n')}
`;
    const store = new SnapshotStore(createDiscoverMetrics(new Registry()), createLogger('discover', 'silent'));
    t.teardown(() => store.close());
    store.fanOut = new FanOutWriters(1);
    store.apply(parseStaticTopology(text('10.0.0.1:8080')));
    const server = createServer((req, res) => {
      const app = /^\/(app-[0-9]+)$/.exec(req.url!)?.[1];
      if (!app) return void res.end('again');
      store.wait('default', app, res, 20_000);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      server.closeAllConnections();
      server.close();
    });
    const port = (server.address() as { port: number }).port;
    const got = Array.from({ length: N }, () => '');
    const socks = Array.from({ length: N }, (_, i) => {
      const c = connect(port, '127.0.0.1');
      c.on('data', (d: Buffer) => (got[i] += d.toString('latin1')));
      return c;
    });
    t.teardown(() => socks.forEach((s) => s.destroy()));
    const poll = () => socks.forEach((s, i) => s.write(`GET /app-${i % APPS} HTTP/1.1\r\nhost: x\r\n\r\n`));
    const held = () => Array.from({ length: APPS }, (_, a) => store.waiting('default', `app-${a}`)).every((n) => n === PER_APP);
    const check = (t: Test, what: string) => {
      let own = 0;
      for (let i = 0; i < N; i++) {
        const a = answers(Buffer.from(got[i], 'latin1'));
        const entry = store.get('default', `app-${i % APPS}`)!;
        if (
          a.length === 1 &&
          a[0].status === 200 &&
          a[0].body.equals(entry.body) &&
          (JSON.parse(a[0].body.toString()) as Snapshot).app === `app-${i % APPS}`
        )
          own++;
      }
      t.equal(own, N, `${what}: each waiter got one 200, byte for byte the snapshot the store holds for its app, nothing more`);
    };
    poll();
    t.ok(await until(held), `${PER_APP} waiters per app held`);
    t.ok(await until(() => store.fanOut?.threads === 1), 'the writer thread started');
    // The incremental path: the source names the apps the change touches.
    const incremental = parseStaticTopology(text('10.0.0.1:8080, 10.0.0.2:8080'));
    const r1 = store.apply(incremental, incremental.apps.keys());
    t.match(r1, { rebuilt: APPS, changed: APPS, woken: N }, 'every app rebuilt, every waiter woken');
    t.ok(await until(() => got.every((g) => answers(Buffer.from(g, 'latin1')).length === 1)), 'every waiter answered');
    await sleep(50);
    check(t, 'incremental');
    // The full path: a new map of entries.
    got.fill('');
    poll();
    t.ok(await until(held), 'the next polls wait on the same connections');
    const r2 = store.apply(parseStaticTopology(text('10.0.0.3:8080')));
    t.match(r2, { rebuilt: APPS, changed: APPS, woken: N }, 'full apply: every app rebuilt, every waiter woken');
    t.ok(await until(() => got.every((g) => answers(Buffer.from(g, 'latin1')).length === 1)), 'every waiter answered');
    await sleep(50);
    check(t, 'full');
    t.ok(
      got.every((g) => g.includes('10.0.0.3')),
      'with the new endpoint',
    );
  },
);
