// The hand-written wire code against packets built by an independent codec (dns-packet).
import t from 'tap';
import dnsPacket from 'dns-packet';
import { Query, aRecord, emptyAnswer, inspectAnswer, keyToName, localAnswer, nameKey, parseQuery } from '../../dns/wire.ts';
import { LocalZone } from '../../dns/localZone.ts';
import { AnswerCache, answerFlags, cacheQuestion } from '../../dns/cache.ts';

const query = (name: string, type: dnsPacket.RecordType = 'A', extra: Partial<dnsPacket.Packet> = {}): Buffer =>
  dnsPacket.encode({ type: 'query', id: 0x1234, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }], ...extra });

t.test('parseQuery reads the question and EDNS, and lower-cases the key', async (t) => {
  const q = new Query();
  t.ok(parseQuery(query('API.Default.svc'), q));
  t.equal(q.id, 0x1234);
  t.equal(q.qtype, 1);
  t.equal(q.qclass, 1);
  t.equal(q.labels, 3);
  t.equal(q.key, nameKey('api.default.svc'));
  t.equal(keyToName(q.key), 'api.default.svc');
  t.equal(q.hasOpt, false);
  t.equal(q.udpLimit, 512);
  const withOpt = query('x.example', 'AAAA', {
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: dnsPacket.DNSSEC_OK, options: [] } as unknown as dnsPacket.Answer],
  });
  t.ok(parseQuery(withOpt, q));
  t.equal(q.qtype, 28);
  t.equal(q.hasOpt, true);
  t.equal(q.dnssecOk, true);
  t.equal(q.udpLimit, 4096);
  t.equal(q.end, withOpt.length);
});

t.test('parseQuery refuses what is not one plain question', async (t) => {
  const q = new Query();
  const good = query('api');
  const cases: Record<string, Buffer> = {
    empty: Buffer.alloc(0),
    'header only': good.subarray(0, 12),
    'cut in the name': good.subarray(0, 14),
    'cut in the type': good.subarray(0, good.length - 2),
    response: dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'api' }] }),
    'two questions': dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [
        { type: 'A', name: 'a' },
        { type: 'A', name: 'b' },
      ],
    }),
    'an answer in a query': dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [{ type: 'A', name: 'a' }],
      answers: [{ type: 'A', name: 'a', data: '1.2.3.4' }],
    }),
    oversized: Buffer.concat([good, Buffer.alloc(5000)]),
  };
  const pointer = Buffer.from(good);
  pointer[12] = 0xc0;
  cases['compression pointer in the question'] = pointer;
  const longLabel = Buffer.from(good);
  longLabel[12] = 64;
  cases['label over 63'] = longLabel;
  for (const [name, msg] of Object.entries(cases)) t.notOk(parseQuery(msg, q), name);
});

t.test('localAnswer and emptyAnswer decode as the right answers', async (t) => {
  const q = new Query();
  const msg = query('Api.Default', 'A', {
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK, options: [] } as unknown as dnsPacket.Answer],
  });
  parseQuery(msg, q);
  const a = dnsPacket.decode(localAnswer(msg, q, aRecord('127.0.0.2', 5)));
  t.equal(a.id, 0x1234);
  t.ok(a.flag_qr && a.flag_aa && a.flag_rd && a.flag_ra);
  t.equal(a.questions![0].name, 'Api.Default', 'question spelling kept');
  t.same(
    (a.answers as dnsPacket.StringAnswer[]).map((r) => [r.name, r.type, r.ttl, r.data]),
    [['Api.Default', 'A', 5, '127.0.0.2']],
  );
  const opt = a.additionals![0] as dnsPacket.OptAnswer;
  t.equal(opt.type, 'OPT');
  t.equal(opt.flag_do, true, 'DO echoed');
  const empty = dnsPacket.decode(localAnswer(msg, q, null));
  t.equal(empty.answers!.length, 0);
  t.equal(empty.flag_aa, true);
  const refused = emptyAnswer(msg, q, 5);
  t.equal(refused[3] & 0x0f, 5);
  t.equal(dnsPacket.decode(refused).questions![0].name, 'Api.Default');
  t.throws(() => aRecord('300.1.1.1', 5), /invalid IPv4/);
});

t.test('inspectAnswer finds TTLs and the negative TTL of the SOA', async (t) => {
  const positive = dnsPacket.encode({
    type: 'response',
    id: 1,
    flags: dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'A', name: 'a.test' }],
    answers: [
      { type: 'A', name: 'a.test', ttl: 300, data: '10.0.0.1' },
      { type: 'A', name: 'a.test', ttl: 120, data: '10.0.0.2' },
    ],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [] } as unknown as dnsPacket.Answer],
  });
  const f = inspectAnswer(positive)!;
  t.equal(f.cacheTtl, 120, 'smallest TTL');
  t.same(f.ttls, [300, 120], 'OPT has no TTL to age');
  t.equal(positive.readUInt32BE(f.ttlOffsets[1]), 120);
  const negative = Buffer.from(
    dnsPacket.encode({
      type: 'response',
      id: 1,
      questions: [{ type: 'A', name: 'no.test' }],
      authorities: [
        {
          type: 'SOA',
          name: 'test',
          ttl: 900,
          data: { mname: 'ns.test', rname: 'h.test', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 30 },
        },
      ],
    }),
  );
  negative[3] = (negative[3] & 0xf0) | 3;
  const n = inspectAnswer(negative)!;
  t.equal(n.rcode, 3);
  t.equal(n.cacheTtl, 30, 'min(SOA TTL, SOA MINIMUM)');
  const noSoa = Buffer.from(dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'no.test' }] }));
  noSoa[3] |= 3;
  t.equal(inspectAnswer(noSoa)!.cacheTtl, -1, 'no SOA: not cached');
  t.equal(inspectAnswer(positive.subarray(0, positive.length - 15)), null, 'truncated record');
});

t.test('the local zone: exact names, wildcards below their domain, never a bare *', async (t) => {
  const { zone, skipped } = LocalZone.build(
    [
      { name: 'api', address: '127.0.0.2' },
      { name: 'API.default.', address: '127.0.0.2' },
      { name: '*.example.internal', address: '127.0.0.4' },
      { name: '*.deep.example.internal', address: '127.0.0.7' },
      { name: '*', address: '127.0.0.6' },
      { name: 'bad name', address: '127.0.0.6' },
    ],
    5,
  );
  t.same(skipped, ['*', 'bad name']);
  t.equal(zone.lookup(nameKey('api'))?.address, '127.0.0.2');
  t.equal(zone.lookup(nameKey('api.default'))?.address, '127.0.0.2');
  t.equal(zone.lookup(nameKey('x.example.internal'))?.address, '127.0.0.4');
  t.equal(zone.lookup(nameKey('a.b.example.internal'))?.address, '127.0.0.4');
  t.equal(zone.lookup(nameKey('a.deep.example.internal'))?.address, '127.0.0.7', 'the closest wildcard wins');
  t.equal(zone.lookup(nameKey('example.internal')), undefined, '*.x does not answer x');
  t.equal(zone.lookup(nameKey('google.com')), undefined, 'bare * answers nothing');
  t.equal(zone.lookup(nameKey('api.default.svc.cluster.local.default.svc.cluster.local')), undefined);
});

t.test('the cache ages TTLs, patches the ID and question, evicts the oldest, expires', async (t) => {
  let now = 1_000_000;
  const cache = new AnswerCache({ maxEntries: 2, maxBytes: 1 << 20, maxTtl: 3600, maxNegativeTtl: 60, now: () => now });
  const answer = dnsPacket.encode({
    type: 'response',
    id: 7,
    questions: [{ type: 'A', name: 'a.test' }],
    answers: [{ type: 'A', name: 'a.test', ttl: 100, data: '10.0.0.1' }],
  });
  const f = inspectAnswer(answer)!;
  const parsed = (name: string, type: dnsPacket.RecordType = 'A') => {
    const msg = query(name, type);
    const q = new Query();
    parseQuery(msg, q);
    return { msg, q, question: cacheQuestion(msg, q, answerFlags(q)) };
  };
  const hit = (name: string, type: dnsPacket.RecordType = 'A') => {
    const { msg, q } = parsed(name, type);
    return cache.answer(msg, q, answerFlags(q));
  };
  cache.store(parsed('a.test').question, answer, f.ttlOffsets, f.ttls, f.cacheTtl, false);
  now += 30_500;
  const got = dnsPacket.decode(hit('A.TEST')!);
  t.equal(got.id, 0x1234);
  t.equal(got.questions![0].name, 'A.TEST', "the client's spelling");
  t.equal((got.answers![0] as dnsPacket.StringAnswer).ttl, 70, '30 s later');
  t.equal(hit('a.test', 'AAAA'), null, 'another type is another answer');
  t.equal(hit('b.test'), null);
  cache.store(parsed('b.test').question, answer, f.ttlOffsets, f.ttls, 100, false);
  cache.store(parsed('c.test').question, answer, f.ttlOffsets, f.ttls, 100, false);
  t.equal(cache.size, 2);
  t.equal(hit('a.test'), null, 'oldest evicted');
  cache.store(parsed('neg.test').question, answer, f.ttlOffsets, f.ttls, 3000, true);
  now += 61_000;
  t.equal(hit('neg.test'), null, 'negative answers capped at maxNegativeTtl');
  t.ok(hit('c.test'), 'c still there');
  now += 40_000;
  t.equal(hit('c.test'), null, 'expired after its TTL');

  const small = new AnswerCache({ maxEntries: 100, maxBytes: answer.length * 3, maxTtl: 3600, maxNegativeTtl: 60, now: () => now });
  for (const k of ['k1', 'k2', 'k3', 'k4']) small.store(parsed(`${k}.test`).question, answer, f.ttlOffsets, f.ttls, 100, false);
  t.equal(small.size, 3, 'the byte bound holds three answers');
  t.equal(small.sizeBytes, answer.length * 3);
  const k1 = parsed('k1.test');
  t.equal(small.answer(k1.msg, k1.q, answerFlags(k1.q)), null, 'the oldest went first');
  small.store(parsed('huge.test').question, Buffer.alloc(answer.length * 4), [], [], 100, false);
  t.equal(small.size, 3, 'an answer larger than the whole budget is not stored');
});
