// The forwarder's promises, checked against upstreams that record what they receive: real UDP
// and TCP sockets on loopback answering with dns-packet, and dnsmasq for failover.
import t, { type Test } from 'tap';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import dnsPacket from 'dns-packet';
import { Registry } from 'prom-client';
import { SOCKET_USES } from '../../dns/forwarder.ts';
import { dig, rcodeOf, sleep, startDnsmasq, udpQuery, withResponder } from './fixtures.ts';

type Reply = Buffer | null;
// port: the query's source port (UDP only).
interface Received {
  raw: Buffer;
  packet: dnsPacket.DecodedPacket;
  tcp: boolean;
  port: number;
}
interface FakeUpstream {
  port: number;
  received: Received[];
  udp: UdpSocket;
}

/** An upstream on 127.0.0.1 (UDP and TCP, one port) whose answers the test writes. */
async function fakeUpstream(t: Test, answer: (q: Received) => Reply | Promise<Reply>, attempt = 0): Promise<FakeUpstream> {
  const received: Received[] = [];
  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;
  udp.on(
    'message',
    (raw, rinfo) =>
      void (async () => {
        const q = { raw, packet: dnsPacket.decode(raw), tcp: false, port: rinfo.port };
        received.push(q);
        const out = await answer(q);
        // A delayed answer may come after its test ended and closed this socket.
        if (out) {
          try {
            udp.send(out, rinfo.port, rinfo.address);
          } catch {
            // closed
          }
        }
      })().catch((err: unknown) => t.fail(`fake upstream (udp): ${String(err)}`)),
  );
  const tcp: Server = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on(
      'data',
      (c: Buffer) =>
        void (async () => {
          buf = Buffer.concat([buf, c]);
          if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
          const raw = buf.subarray(2, 2 + buf.readUInt16BE(0));
          const q = { raw, packet: dnsPacket.decode(raw), tcp: true, port: 0 };
          received.push(q);
          const out = await answer(q);
          if (!out) return;
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(out.length);
          s.end(Buffer.concat([prefix, out]));
        })().catch((err: unknown) => {
          t.fail(`fake upstream (tcp): ${String(err)}`);
          s.destroy();
        }),
    );
    s.on('error', () => undefined);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, '127.0.0.1', () => resolve());
    });
  } catch (err) {
    // The UDP port's number can be taken for TCP (another process's outgoing connection on this
    // loopback, say): take another pair, as the responder itself does.
    udp.close();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) return fakeUpstream(t, answer, attempt + 1);
    throw err;
  }
  t.teardown(() => {
    udp.close();
    tcp.close();
  });
  return { port, received, udp };
}

function reply(q: Received, answers: dnsPacket.Answer[], extra: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id: q.packet.id,
    flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED,
    questions: q.packet.questions,
    answers,
    ...extra,
  });
}

t.test('the query reaches upstream as sent: EDNS and DO kept, ID rewritten and restored', async (t) => {
  const up = await fakeUpstream(t, (q) => reply(q, [{ type: 'A', name: q.packet.questions![0].name, ttl: 30, data: '10.0.0.9' }]));
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [] });
  const res = await dig(r.udpPort, '+dnssec', '+bufsize=1400', '+cd', 'Signed.Example.test');
  t.equal(res.status, 'NOERROR');
  t.same(res.answers, ['Signed.Example.test. 30 IN A 10.0.0.9']);
  t.equal(up.received.length, 1);
  const got = up.received[0].packet;
  const opt = got.additionals!.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer;
  t.ok(opt, 'OPT forwarded');
  t.equal(opt.flag_do, true, 'DO bit kept');
  t.equal(opt.udpPayloadSize, 1400, 'payload size kept');
  t.ok(got.flag_cd, 'CD kept');
  t.equal(got.questions![0].name, 'Signed.Example.test', 'question spelling kept');
  // Send our own ID and see it come back while upstream saw another.
  const mine = dnsPacket.encode({
    type: 'query',
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'other.test' }],
  });
  const ans = await udpQuery(r.udpPort, mine);
  t.equal(ans.readUInt16BE(0), 4242, 'client ID restored');
  t.equal(up.received.length, 2);
  t.not(up.received[1].raw.readUInt16BE(0), 4242, 'upstream saw a fresh ID');
});

t.test('identical queries in flight share one upstream query', async (t) => {
  const up = await fakeUpstream(t, async (q) => {
    await sleep(200);
    return reply(q, [{ type: 'A', name: q.packet.questions![0].name, ttl: 30, data: '10.0.0.8' }]);
  });
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [] });
  const answers = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      udpQuery(
        r.udpPort,
        dnsPacket.encode({
          type: 'query',
          id: 1000 + i,
          flags: dnsPacket.RECURSION_DESIRED,
          questions: [{ type: 'A', name: i % 2 ? 'slow.test' : 'SLOW.test' }],
        }),
      ),
    ),
  );
  t.equal(up.received.length, 1, 'one upstream query for 20 clients');
  for (const [i, a] of answers.entries()) {
    const d = dnsPacket.decode(a);
    t.equal(d.id, 1000 + i, `client ${i} gets its own ID`);
    t.equal(d.questions![0].name, i % 2 ? 'slow.test' : 'SLOW.test', `client ${i} gets its own spelling`);
    t.equal((d.answers![0] as dnsPacket.StringAnswer).data, '10.0.0.8');
  }
});

t.test('failover: a dead first upstream costs one timeout, then the next answers', async (t) => {
  const dead = createSocket('udp4');
  await new Promise<void>((resolve) => dead.bind(0, '127.0.0.1', resolve)); // bound, never answers
  t.teardown(() => dead.close());
  const up = await startDnsmasq(t, ['--address=/ext.test/10.9.8.7']);
  const registry = new Registry();
  const r = await withResponder(t, {
    upstreams: [`127.0.0.1:${dead.address().port}`, `127.0.0.1:${up.port}`],
    upstreamTimeoutMs: 250,
    registry,
  });
  r.setNames([]);
  const failures = async () =>
    Number(/shoal_dns_upstream_failures_total\{[^}]*reason="timeout"[^}]*\} ([0-9]+)/.exec(await registry.metrics())?.[1] ?? 0);
  const first = await dig(r.udpPort, 'a.ext.test');
  t.same(first.answers, ['a.ext.test. 60 IN A 10.9.8.7']);
  t.ok(first.ms >= 200, `first answer after the timeout (${first.ms} ms)`);
  t.equal(await failures(), 1, 'one timeout on the dead upstream');
  const second = await dig(r.udpPort, 'b.ext.test');
  t.same(second.answers, ['b.ext.test. 60 IN A 10.9.8.7']);
  t.equal(await failures(), 1, 'the dead upstream is not tried first again');
});

t.test('a truncated UDP answer is fetched again over TCP', async (t) => {
  const big = Array.from({ length: 40 }, (_, i) => ({ type: 'A' as const, name: 'big.test', ttl: 30, data: `10.1.0.${i + 1}` }));
  const up = await fakeUpstream(t, (q) =>
    q.tcp ? reply(q, big) : reply(q, [], { flags: dnsPacket.TRUNCATED_RESPONSE | dnsPacket.RECURSION_AVAILABLE }),
  );
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [] });
  const res = await dig(r.udpPort, '+bufsize=4096', 'big.test');
  t.equal(res.answers.length, 40, 'all 40 records');
  t.same(
    up.received.map((q) => q.tcp),
    [false, true],
    'UDP first, then TCP',
  );
  // Without EDNS the 40 records do not fit 512 bytes: the client is told to use TCP, and gets them there.
  const plain = await dig(r.udpPort, '+noedns', '+ignore', 'big.test');
  t.ok(plain.flags.includes('tc'), 'TC to a plain-DNS client');
  const viaTcp = await dig(r.udpPort, '+noedns', 'big.test');
  t.equal(viaTcp.answers.length, 40, 'dig retried over TCP and got all');
});

t.test('negative answers are cached for the SOA minimum, SERVFAIL is not cached', async (t) => {
  let failing = true;
  const up = await fakeUpstream(t, (q) => {
    const name = q.packet.questions![0].name;
    if (name === 'flaky.test') {
      const out = reply(q, []);
      out[3] = (out[3] & 0xf0) | (failing ? 2 : 0);
      return out;
    }
    const out = reply(q, [], {
      authorities: [
        {
          type: 'SOA',
          name: 'test',
          ttl: 600,
          data: { mname: 'ns.test', rname: 'h.test', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 1 },
        },
      ],
    });
    out[3] = (out[3] & 0xf0) | 3;
    return out;
  });
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [] });
  t.equal((await dig(r.udpPort, 'missing.test')).status, 'NXDOMAIN');
  t.equal((await dig(r.udpPort, 'missing.test')).status, 'NXDOMAIN');
  t.equal(up.received.length, 1, 'second NXDOMAIN from the cache');
  await sleep(1100);
  t.equal((await dig(r.udpPort, 'missing.test')).status, 'NXDOMAIN');
  t.equal(up.received.length, 2, 'asked again once the SOA minimum (1 s) passed');
  t.equal((await dig(r.udpPort, 'flaky.test')).status, 'SERVFAIL');
  failing = false;
  t.equal((await dig(r.udpPort, 'flaky.test')).status, 'NOERROR', 'SERVFAIL was not cached');
  t.equal(r.metrics.total('nxdomain'), 2);
});

t.test('answers from the wrong address or to another question are ignored', async (t) => {
  const up = await fakeUpstream(t, (q) => {
    const wrong = reply(q, [{ type: 'A', name: 'evil.test', ttl: 30, data: '6.6.6.6' }], { questions: [{ type: 'A', name: 'evil.test' }] });
    return wrong;
  });
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [], upstreamTimeoutMs: 200 });
  const res = await dig(r.udpPort, 'good.test');
  t.equal(res.status, 'SERVFAIL', 'an answer to another question never reaches the client');
  t.same(res.answers, []);
  t.equal(rcodeOf(await udpQuery(r.udpPort, { questions: [{ type: 'A', name: 'api' }] })), 2, 'SERVFAIL again, nothing cached');
});

t.test('TCP: queries on one connection are answered as they are ready, not in order', async (t) => {
  const up = await fakeUpstream(t, async (q) => {
    await sleep(300);
    return reply(q, [{ type: 'A', name: q.packet.questions![0].name, ttl: 30, data: '10.0.0.7' }]);
  });
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [{ name: 'api', address: '127.0.0.2' }] });
  const { connect } = await import('node:net');
  const s = connect(r.tcpPort, '127.0.0.1');
  t.teardown(() => s.destroy());
  const frame = (id: number, name: string) => {
    const m = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(m.length);
    return Buffer.concat([prefix, m]);
  };
  const ids: number[] = [];
  let buf = Buffer.alloc(0);
  const done = new Promise<void>((resolve) =>
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        ids.push(buf.readUInt16BE(2));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (ids.length === 2) resolve();
    }),
  );
  s.write(Buffer.concat([frame(1, 'slow.test'), frame(2, 'api')]));
  await Promise.race([done, sleep(5000)]);
  t.same(ids, [2, 1], 'the local answer did not wait for the forwarded one');
});

t.test('over the in-flight limit a query gets SERVFAIL at once', async (t) => {
  const up = await fakeUpstream(t, async (q) => {
    await sleep(500);
    return reply(q, [{ type: 'A', name: q.packet.questions![0].name, ttl: 30, data: '10.0.0.6' }]);
  });
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [], maxInflight: 1 });
  const first = udpQuery(r.udpPort, { questions: [{ type: 'A', name: 'one.test' }] });
  await sleep(50);
  const started = Date.now();
  const second = await udpQuery(r.udpPort, { questions: [{ type: 'A', name: 'two.test' }] });
  t.equal(rcodeOf(second), 2, 'SERVFAIL');
  t.ok(Date.now() - started < 400, 'without waiting for the upstream');
  t.equal(rcodeOf(await first), 0, 'the query in flight still gets its answer');
  t.equal(r.metrics.total('dropped'), 1);
});

t.test('upstream queries leave from random source ports, one query per port at a time, a few at most per port', async (t) => {
  const up = await fakeUpstream(t, async (q) => {
    const name = q.packet.questions![0].name;
    if (name.startsWith('c')) await sleep(300);
    return reply(q, [{ type: 'A', name, ttl: 30, data: '10.0.0.5' }]);
  });
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [] });
  // 50 in flight together: each leaves from a socket of its own.
  const burst = await Promise.all(
    Array.from({ length: 50 }, (_, i) => udpQuery(r.udpPort, { questions: [{ type: 'A', name: `c${i}.ports.test` }] }, 4000)),
  );
  t.ok(
    burst.every((a) => rcodeOf(a) === 0),
    'all answered',
  );
  const together = new Set(up.received.map((q) => q.port));
  t.equal(together.size, 50, `50 queries in flight together came from ${together.size} source ports`);
  const sorted = [...together].sort((a, b) => a - b);
  t.ok(sorted[sorted.length - 1] - sorted[0] > 1000, `spread over ports ${sorted[0]}-${sorted[sorted.length - 1]}, not a sequence`);
  // 50 one after another: a socket carries a few queries, then a new port is taken.
  const first = up.received.length;
  for (let i = 0; i < 50; i++) t.equal(rcodeOf(await udpQuery(r.udpPort, { questions: [{ type: 'A', name: `s${i}.ports.test` }] })), 0);
  const perPort = new Map<number, number>();
  for (const q of up.received.slice(first)) perPort.set(q.port, (perPort.get(q.port) ?? 0) + 1);
  t.ok(perPort.size >= Math.ceil(50 / SOCKET_USES), `50 queries in a row came from ${perPort.size} source ports`);
  t.ok(Math.max(...perPort.values()) <= SOCKET_USES, `no port carried more than ${SOCKET_USES} queries`);
  // Unused sockets are closed within about two seconds: their ports can be bound again.
  await sleep(2500);
  const ports = [...together, ...perPort.keys()];
  let stillOpen = 0;
  for (const port of ports) {
    const probe = createSocket('udp4');
    const err = await new Promise<Error | null>((resolve) => {
      probe.once('error', resolve);
      probe.bind(port, '0.0.0.0', () => resolve(null));
    });
    if (err) stillOpen++;
    probe.close();
  }
  // Another process may have taken one of these ports since; one is allowed.
  t.ok(stillOpen <= 1, `${stillOpen} of ${ports.length} source ports still bound`);
});

t.test('forged answers are ignored: other source port or address, other ID, other question', async (t) => {
  const liar = createSocket('udp4');
  await new Promise<void>((resolve) => liar.bind(0, '127.0.0.1', resolve));
  t.teardown(() => liar.close());
  const elsewhere = createSocket('udp4');
  let forgedSent = 0;
  const up: FakeUpstream = await fakeUpstream(t, async (q) => {
    const name = q.packet.questions![0].name;
    const forged = (data: string, patch: Partial<dnsPacket.Packet> = {}) =>
      dnsPacket.encode({
        type: 'response',
        id: q.packet.id,
        flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED,
        questions: q.packet.questions,
        answers: [{ type: 'A', name, ttl: 300, data }],
        ...patch,
      });
    const toResponder = (from: UdpSocket, b: Buffer) => {
      from.send(b, q.port, '127.0.0.1');
      forgedSent++;
    };
    toResponder(liar, forged('6.6.6.1')); // right ID and question, another source port
    toResponder(elsewhere, forged('6.6.6.2')); // the upstream's port, another address
    toResponder(up.udp, forged('6.6.6.3', { id: (q.packet.id! + 1) & 0xffff }));
    toResponder(up.udp, forged('6.6.6.4', { questions: [{ type: 'A', name: 'other.test' }] }));
    toResponder(up.udp, forged('6.6.6.5', { questions: [{ type: 'AAAA', name }] }));
    toResponder(up.udp, forged('6.6.6.6', { questions: [{ type: 'A', name, class: 'CH' }] }));
    toResponder(up.udp, forged('6.6.6.7', { questions: [] }));
    toResponder(up.udp, forged('6.6.6.8', { questions: [q.packet.questions![0], q.packet.questions![0]] }));
    await sleep(150);
    // The real answer, the name in other letter case (still the question asked).
    return reply(q, [{ type: 'A', name, ttl: 300, data: '10.0.0.1' }], { questions: [{ type: 'A', name: name.toUpperCase() }] });
  });
  await new Promise<void>((resolve) => elsewhere.bind(up.port, '127.0.0.2', resolve));
  t.teardown(() => elsewhere.close());
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`], names: [], upstreamTimeoutMs: 2000 });
  const res = await dig(r.udpPort, 'target.test');
  t.equal(forgedSent, 8, 'eight forged answers were sent first');
  t.same(res.answers, ['target.test. 300 IN A 10.0.0.1'], 'the client got the real answer, with its own spelling');
  t.same(
    (await dig(r.udpPort, 'target.test')).answers.map((a) => a.split(' ').pop()),
    ['10.0.0.1'],
    'and so did the cache',
  );
  t.equal(up.received.length, 1, 'one upstream query');
});

t.test('an upstream that refuses (ICMP port unreachable) fails the try at once', async (t) => {
  const gone = createSocket('udp4');
  await new Promise<void>((resolve) => gone.bind(0, '127.0.0.1', resolve));
  const port = gone.address().port;
  gone.close();
  const up = await startDnsmasq(t, ['--address=/ext.test/10.9.8.7']);
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${port}`, `127.0.0.1:${up.port}`], upstreamTimeoutMs: 2500, names: [] });
  const res = await dig(r.udpPort, 'a.ext.test');
  t.same(res.answers, ['a.ext.test. 60 IN A 10.9.8.7'], 'the second upstream answered');
  t.ok(res.ms < 1500, `after ${res.ms} ms, not after the 2500 ms timeout`);
});
