// Robustness: 100,000 random and mutated packets over UDP plus garbage TCP streams; the
// responder runs in this process, so one throw would fail the test. Afterwards it still answers.
import t from 'tap';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import dnsPacket from 'dns-packet';
import { DEMO_NAMES, dig, sleep, startDnsmasq, withResponder } from './fixtures.ts';

// A small deterministic PRNG so a failure can be replayed with the same seed.
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SEEDS: Buffer[] = [
  dnsPacket.encode({
    type: 'query',
    id: 1,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'api.default.svc.cluster.local' }],
  }),
  dnsPacket.encode({ type: 'query', id: 2, questions: [{ type: 'AAAA', name: 'x.example.internal' }] }),
  dnsPacket.encode({
    type: 'query',
    id: 3,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'w.ext.test' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: dnsPacket.DNSSEC_OK, options: [] } as unknown as dnsPacket.Answer],
  }),
  dnsPacket.encode({ type: 'query', id: 4, questions: [{ type: 'SRV', name: '_http._tcp.api' }] }),
];

function packet(rand: () => number, i: number): Buffer {
  const kind = i % 4;
  if (kind === 0) {
    // Random bytes of random length, now and then far over any query size.
    const len = rand() < 0.01 ? 5000 + Math.floor(rand() * 20000) : Math.floor(rand() * 600);
    const b = Buffer.allocUnsafe(len);
    for (let j = 0; j < len; j++) b[j] = Math.floor(rand() * 256);
    return b;
  }
  const seed = SEEDS[Math.floor(rand() * SEEDS.length)];
  const b = Buffer.from(seed);
  if (kind === 1) {
    // Flip a few bytes anywhere.
    const n = 1 + Math.floor(rand() * 4);
    for (let j = 0; j < n; j++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    return b;
  }
  if (kind === 2) return b.subarray(0, Math.floor(rand() * b.length)); // truncated
  // Header fields and label lengths set to hostile values: counts, pointers, loops.
  const field = Math.floor(rand() * 5);
  if (field === 0) b.writeUInt16BE(Math.floor(rand() * 65536), 4 + 2 * Math.floor(rand() * 4));
  else if (field === 1) {
    b[12] = 0xc0;
    b[13] = 12;
  } else if (field === 2) b[12] = 63;
  else if (field === 3) b[2] = Math.floor(rand() * 256);
  else return Buffer.concat([b, Buffer.alloc(Math.floor(rand() * 100), 0xff)]);
  return b;
}

t.test('100,000 random and mutated packets: nothing crashes, it still answers', async (t) => {
  const up = await startDnsmasq(t, ['--address=/ext.test/10.9.8.7']);
  const r = await withResponder(t, { names: DEMO_NAMES, upstreams: [`127.0.0.1:${up.port}`], upstreamTimeoutMs: 500 });
  const rand = prng(Number(process.env.SHOAL_FUZZ_SEED ?? 20261122));
  const sender = createSocket('udp4');
  sender.on('message', () => undefined);
  sender.on('error', () => undefined);
  await new Promise<void>((resolve) => sender.bind(0, '127.0.0.1', resolve));
  t.teardown(() => sender.close());
  const total = 100_000;
  const started = Date.now();
  for (let i = 0; i < total; i++) {
    const b = packet(rand, i);
    if (b.length === 0) continue;
    sender.send(b, r.udpPort, '127.0.0.1');
    // Let the responder (same process) drain its socket now and then.
    if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
  }
  await sleep(300);
  const malformed = r.metrics.total('malformed');
  t.ok(malformed > 40_000, `${malformed} malformed packets counted and dropped (sent ${total} in ${Date.now() - started} ms)`);
  t.ok(r.metrics.total('local') > 0, 'mutations that stayed valid were answered');

  // Garbage over TCP: random streams, an oversized length prefix, a half message and a hang-up.
  const garbage = Array.from(
    { length: 30 },
    (_, i) =>
      new Promise<void>((resolve) => {
        const s = connect(r.tcpPort, '127.0.0.1');
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        const b = Buffer.allocUnsafe(200 + i * 50);
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
        if (i % 3 === 0) b.writeUInt16BE(60000, 0);
        s.write(b);
        setTimeout(() => s.destroy(), 100);
      }),
  );
  await Promise.all(garbage);

  for (const [name, want] of [
    ['api', 'api. 5 IN A 127.0.0.2'],
    ['z.ext.test', 'z.ext.test. 60 IN A 10.9.8.7'],
  ]) {
    t.same((await dig(r.udpPort, name)).answers, [want], `udp: ${name} still answers`);
    t.same((await dig(r.udpPort, '+tcp', name)).answers, [want], `tcp: ${name} still answers`);
  }
});
