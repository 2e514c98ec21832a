// One change wakes the waiters of many apps (the dependents of a Service): they are answered in
// one pass, each with its own app's snapshot, shared out to the writer threads when there are
// enough of them together even though each app has only a few.
import t from 'tap';
import { connect, createServer, type Socket } from 'node:net';
import { FanOutWriters, UNWRITTEN } from '../../discover/http/fanOut.ts';
import { FAN_OUT_MIN } from '../../discover/http/prebuiltResponse.ts';
import type { Snapshot } from '../../shared/snapshot.ts';
import { withDiscover } from '../lib/discover.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(ok: () => boolean, ms = 15_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!ok() && Date.now() < deadline) await sleep(10);
  return ok();
}

function answers(bytes: string): { status: number; etag: string; body: string }[] {
  const out = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = bytes.slice(at, end);
    const len = Number(/content-length: *([0-9]+)/i.exec(head)?.[1] ?? 0);
    if (bytes.length < end + 4 + len) break;
    out.push({
      status: Number(head.slice(9, 12)),
      etag: /etag: "([^"]*)"/i.exec(head)?.[1] ?? '',
      body: bytes.slice(end + 4, end + 4 + len),
    });
    at = end + 4 + len;
  }
  return out;
}

const APPS = 6;
const PER_APP = 20;
const topology = (endpoints: string) => `
services:
  - { name: api, ports: [{ port: 8080, protocol: http }], endpoints: [${endpoints}] }
  - { name: db, ports: [5432], endpoints: [10.0.2.1:5432] }
apps:
${Array.from({ length: APPS }, (_, i) => `  - { name: app-${i}, config: { base_services: [{ depend_service_alias: api, port: 8080, protocol: http }${i % 2 ? ', { depend_service_alias: db, port: 5432 }' : ''}] } }`).join('\n')}
  - { name: bystander, config: { base_services: [{ depend_service_alias: db, port: 5432 }] } }
`;

// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- guards the constants above against a later edit
t.ok(APPS * PER_APP >= FAN_OUT_MIN && PER_APP < FAN_OUT_MIN, 'enough waiters in all for the writers, too few in any one app');

for (const threads of [1, 0]) {
  t.test(
    `${threads ? 'with a writer thread' : 'on the event loop alone'}: ${APPS * PER_APP} waiters of ${APPS} apps each get one whole answer with their own app's snapshot`,
    async (t) => {
      const d = await withDiscover(t, topology('10.0.0.1:8080, 10.0.0.2:8080'), { fanOutThreads: threads });
      const versions: string[] = [];
      for (let i = 0; i < APPS; i++)
        versions.push(((await (await fetch(`${d.url}/v2/snapshot/default/app-${i}`)).json()) as Snapshot).version);
      const bystander = ((await (await fetch(`${d.url}/v2/snapshot/default/bystander`)).json()) as Snapshot).version;
      const socks: Socket[] = [];
      const got: string[] = [];
      for (let k = 0; k < APPS * PER_APP; k++) {
        const s = connect(d.port, '127.0.0.1');
        got.push('');
        s.on('data', (c) => (got[k] += c.toString('latin1')));
        s.write(`GET /v2/snapshot/default/app-${k % APPS}?version=${versions[k % APPS]}&wait=20s HTTP/1.1\r\nhost: x\r\n\r\n`);
        socks.push(s);
      }
      const side = connect(d.port, '127.0.0.1');
      let sideGot = '';
      side.on('data', (c) => (sideGot += c.toString('latin1')));
      side.write(`GET /v2/snapshot/default/bystander?version=${bystander}&wait=3s HTTP/1.1\r\nhost: x\r\n\r\n`);
      t.ok(
        await until(() => Array.from({ length: APPS }, (_, i) => d.store.waiting('default', `app-${i}`)).every((n) => n === PER_APP)),
        `${PER_APP} waiters held per app`,
      );
      if (threads) t.ok(await until(() => d.store.fanOut?.threads === 1), 'the writer thread started');
      const writerBefore = d.store.fanOut?.writerWrites ?? 0;
      d.edit(topology('10.0.0.1:8080, 10.0.0.3:8080'));
      t.ok(await until(() => got.every((g) => answers(g).length >= 1)), 'every waiter answered');
      let whole = 0;
      const fresh = new Map<number, string>();
      for (let k = 0; k < got.length; k++) {
        const a = answers(got[k]);
        const body = a.length === 1 && a[0].status === 200 ? (JSON.parse(a[0].body) as Snapshot) : null;
        if (
          body &&
          body.app === `app-${k % APPS}` &&
          body.version === a[0].etag &&
          body.version !== versions[k % APPS] &&
          body.clusters.find((c) => c.service === 'api')?.endpoints.some((e) => e.address === '10.0.0.3')
        ) {
          whole++;
          if ((fresh.get(k % APPS) ?? body.version) === body.version) fresh.set(k % APPS, body.version);
          else t.fail(`two versions for app-${k % APPS}`);
        }
      }
      t.equal(whole, APPS * PER_APP, 'each got exactly one 200 with the new snapshot of the app it polled');
      t.equal(new Set(fresh.values()).size, APPS, 'one version per app, each its own');
      for (let i = 0; i < APPS; i++)
        t.equal(fresh.get(i), d.store.get('default', `app-${i}`)!.snapshot.version, `app-${i}: the version discover holds`);
      if (threads)
        t.ok(
          d.store.fanOut!.writerWrites >= writerBefore,
          `the writer thread took part or left it to the event loop (${d.store.fanOut!.writerWrites - writerBefore} written by it)`,
        );
      t.equal(d.store.waiting('default', 'bystander'), 1, 'a waiter of an app the change does not touch keeps waiting');
      t.ok(await until(() => answers(sideGot).length === 1, 6000), 'until its wait ends');
      t.equal(answers(sideGot)[0]?.status, 304, 'with 304');
      // The same connections carry the next polls, woken by the next change.
      for (let k = 0; k < got.length; k++) {
        got[k] = '';
        socks[k].write(`GET /v2/snapshot/default/app-${k % APPS}?version=${fresh.get(k % APPS)}&wait=20s HTTP/1.1\r\nhost: x\r\n\r\n`);
      }
      t.ok(
        await until(() => Array.from({ length: APPS }, (_, i) => d.store.waiting('default', `app-${i}`)).every((n) => n === PER_APP)),
        'the next polls wait on the same connections',
      );
      d.edit(topology('10.0.0.4:8080'));
      t.ok(await until(() => got.every((g) => answers(g).length === 1)), 'and are woken by the next change');
      t.ok(
        got.every((g, k) => answers(g)[0].status === 200 && (JSON.parse(answers(g)[0].body) as Snapshot).app === `app-${k % APPS}`),
        'each with its own app again',
      );
      for (const s of socks) s.destroy();
      side.destroy();
    },
  );
}

t.test('the writer threads alone write each descriptor its own span of the shared answers, once', async (t) => {
  const server = createServer();
  const accepted: Socket[] = [];
  server.on('connection', (s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const N = 90;
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
  // Accepted in any order: map each accepted socket back to its client by ports.
  const clientOf = accepted.map((s) => clients.findIndex((c) => c.localPort === s.remotePort));
  const texts = ['first answer\n', 'the second, longer answer\n', 'third\n'];
  const bytes = texts.map((x) => Buffer.from(x));
  const wire = new Uint8Array(new SharedArrayBuffer(bytes.reduce((a, b) => a + b.length, 0)));
  const offsets: number[] = [];
  let at = 0;
  for (const b of bytes) {
    wire.set(b, at);
    offsets.push(at);
    at += b.length;
  }
  const fds = new Int32Array(new SharedArrayBuffer(N * 4));
  fds.set(accepted.map((s) => (s as unknown as { _handle: { fd: number } })._handle.fd));
  const spans = new Int32Array(new SharedArrayBuffer(N * 8));
  for (let i = 0; i < N; i++) {
    spans[2 * i] = offsets[i % 3];
    spans[2 * i + 1] = bytes[i % 3].length;
  }
  const out = new Int32Array(new SharedArrayBuffer(N * 4)).fill(UNWRITTEN);
  const writers = new FanOutWriters(2);
  writers.start();
  t.ok(await until(() => writers.threads === 2), 'two writers online');
  const r = writers.run(wire, fds, out, false, spans);
  t.equal(r.unfinished, undefined, 'both finished');
  t.ok(
    [...out].every((n, i) => n === bytes[i % 3].length),
    "every descriptor written whole, its own span's length",
  );
  t.equal(writers.writerWrites, N, 'all by the writers');
  t.ok(await until(() => accepted.every((_, i) => got[clientOf[i]] === texts[i % 3])), 'each client got its own answer exactly once');
  await writers.close();
  for (const c of clients) c.destroy();
  server.close();
});
