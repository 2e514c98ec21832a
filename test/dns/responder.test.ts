// The responder driven by real clients: dig (bind9-dnsutils) and Node's own resolver, with a
// real dnsmasq on loopback as the upstream.
import t from 'tap';
import { Resolver } from 'node:dns/promises';
import { Registry } from 'prom-client';
import { dnsFlags, dnsOptionsFromFlags, parseStaticNames, startDnsResponder } from '../../dns/main.ts';
import { parseFlags } from '../../shared/flags.ts';
import { createLogger } from '../../shared/log.ts';
import { DEMO_NAMES, dig, rcodeOf, sleep, startDnsmasq, tcpQuery, udpQuery, withResponder } from './fixtures.ts';

const UPSTREAM_RECORDS = ['--address=/ext.test/10.9.8.7', '--host-record=www.upstream.test,10.9.8.1'];

t.test('dig: local names in every form answer A with aa; AAAA is NOERROR with no records', async (t) => {
  const r = await withResponder(t, { names: DEMO_NAMES });
  for (const name of ['api', 'API.default.svc.cluster.local.', 'api.default', 'Api.Default.Svc']) {
    const res = await dig(r.udpPort, name, 'A');
    t.equal(res.status, 'NOERROR', `${name}: NOERROR`);
    t.ok(res.flags.includes('aa'), `${name}: aa set`);
    t.match(
      res.answers,
      [new RegExp(`^${name.replace(/\.$/, '').replace(/\./g, '\\.')}\\. 5 IN A 127\\.0\\.0\\.2$`, 'i')],
      `${name}: A 127.0.0.2, TTL 5`,
    );
  }
  const explicit = await dig(r.udpPort, 'shop.example.internal', 'A');
  t.same(explicit.answers, ['shop.example.internal. 5 IN A 127.0.0.4'], 'wildcard Domains entry');
  t.ok(explicit.flags.includes('aa'));
  t.same((await dig(r.udpPort, 'api.example')).answers, ['api.example. 5 IN A 127.0.0.5'], 'explicit domain');
  const aaaa = await dig(r.udpPort, 'api', 'AAAA');
  t.equal(aaaa.status, 'NOERROR', 'AAAA of a known name: NOERROR, never NXDOMAIN');
  t.same(aaaa.answers, []);
  t.ok(aaaa.flags.includes('aa'));
  const tcp = await dig(r.udpPort, '+tcp', 'cache.default.svc.cluster.local');
  t.same(tcp.answers, ['cache.default.svc.cluster.local. 5 IN A 127.0.0.3'], 'over TCP on the same port');
  t.equal(r.tcpPort, r.udpPort);
});

t.test('dig: unknown names go upstream, come back, then come from the cache', async (t) => {
  const up = await startDnsmasq(t, UPSTREAM_RECORDS);
  const registry = new Registry();
  const r = await withResponder(t, { names: DEMO_NAMES, upstreams: [`127.0.0.1:${up.port}`], registry });
  const first = await dig(r.udpPort, 'www.upstream.test');
  t.equal(first.status, 'NOERROR');
  t.same(first.answers, ['www.upstream.test. 60 IN A 10.9.8.1'], "dnsmasq's answer relayed");
  t.equal(r.metrics.total('forwarded'), 1);
  await sleep(1100);
  const second = await dig(r.udpPort, 'WWW.upstream.test');
  t.match(second.answers, [/^WWW\.upstream\.test\. 5[0-9] IN A 10\.9\.8\.1$/], 'from the cache: TTL aged, client spelling kept');
  t.equal(r.metrics.total('cached'), 1);
  t.equal(r.metrics.total('forwarded'), 1, 'upstream not asked again');
  // With the upstream gone the cached name still answers.
  await up.stop();
  t.same((await dig(r.udpPort, 'www.upstream.test')).answers.length, 1);
  const text = await registry.metrics();
  t.match(text, /shoal_dns_queries_total\{type="A",result="cached"[^}]*\} 2/);
  t.match(text, /shoal_dns_queries_total\{type="A",result="forwarded"[^}]*\} 1/);
  t.match(text, /shoal_dns_upstream_duration_seconds_count\{upstream="127\.0\.0\.1:[0-9]+",outcome="answer"[^}]*\} 1/);
});

t.test('dig: a killed upstream gives SERVFAIL within the timeout', async (t) => {
  const up = await startDnsmasq(t, UPSTREAM_RECORDS);
  const r = await withResponder(t, { names: DEMO_NAMES, upstreams: [`127.0.0.1:${up.port}`], upstreamTimeoutMs: 300 });
  t.equal((await dig(r.udpPort, 'a.ext.test')).status, 'NOERROR');
  await up.stop();
  const res = await dig(r.udpPort, 'b.ext.test');
  t.equal(res.status, 'SERVFAIL');
  // Two tries of 300 ms each, well inside dig's own 3 s.
  t.ok(res.ms < 2000, `SERVFAIL after ${res.ms} ms`);
  t.equal(r.metrics.total('servfail'), 1);
  t.same((await dig(r.udpPort, 'api')).answers, ['api. 5 IN A 127.0.0.2'], 'local names still answer');
});

t.test("Node's dns.promises.Resolver resolves the local names", async (t) => {
  const up = await startDnsmasq(t, UPSTREAM_RECORDS);
  const r = await withResponder(t, { names: DEMO_NAMES, upstreams: [`127.0.0.1:${up.port}`] });
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${r.udpPort}`]);
  t.same(await resolver.resolve4('api'), ['127.0.0.2']);
  t.same(await resolver.resolve4('api.default.svc.cluster.local'), ['127.0.0.2']);
  t.same(await resolver.resolve4('cache'), ['127.0.0.3']);
  await t.rejects(resolver.resolve6('api'), { code: 'ENODATA' }, 'AAAA: no data, not "not found"');
  t.same(await resolver.resolve4('x.ext.test'), ['10.9.8.7'], 'forwarded');
});

t.test('a snapshot that removes a name takes effect at once', async (t) => {
  const up = await startDnsmasq(t, ['--address=/cache/10.1.1.1']);
  const r = await withResponder(t, { names: DEMO_NAMES, upstreams: [`127.0.0.1:${up.port}`] });
  t.same((await dig(r.udpPort, 'cache')).answers, ['cache. 5 IN A 127.0.0.3']);
  const started = Date.now();
  r.setNames(DEMO_NAMES.filter((n) => !n.name.startsWith('cache')));
  const after = await dig(r.udpPort, 'cache');
  const ms = Date.now() - started;
  t.same(after.answers, ['cache. 60 IN A 10.1.1.1'], "no longer answered locally: dnsmasq's answer");
  t.ok(ms < 100 + after.ms, `took ${ms} ms including dig`);
  t.same((await dig(r.udpPort, 'api')).answers, ['api. 5 IN A 127.0.0.2'], 'the rest stays');
});

t.test('before the first snapshot: SERVFAIL for names that may be local, the rest forwarded', async (t) => {
  const up = await startDnsmasq(t, UPSTREAM_RECORDS);
  const r = await withResponder(t, { upstreams: [`127.0.0.1:${up.port}`] });
  t.equal((await dig(r.udpPort, 'api')).status, 'SERVFAIL', 'single label');
  t.equal((await dig(r.udpPort, 'api.default.svc.cluster.local')).status, 'SERVFAIL', 'under the cluster domain');
  t.same((await dig(r.udpPort, 'x.ext.test')).answers, ['x.ext.test. 60 IN A 10.9.8.7']);
  r.setNames(DEMO_NAMES);
  t.same((await dig(r.udpPort, 'api')).answers, ['api. 5 IN A 127.0.0.2']);
});

t.test('refused: ANY, zone transfers, no upstream, other clients', async (t) => {
  const r = await withResponder(t, { names: DEMO_NAMES });
  t.equal((await dig(r.udpPort, 'api', 'ANY')).status, 'REFUSED');
  t.equal((await dig(r.udpPort, 'x.ext.test', 'ANY')).status, 'REFUSED');
  const axfr = await dig(r.udpPort, 'cluster.local', 'AXFR');
  t.match(axfr.stdout, /Transfer failed|REFUSED/, 'AXFR over TCP refused');
  t.equal(rcodeOf(await tcpQuery(r.tcpPort, { questions: [{ type: 'AXFR', name: 'default.svc.cluster.local' }] })), 5);
  t.equal((await dig(r.udpPort, 'google.com')).status, 'REFUSED', 'no upstream configured');
  t.equal((await dig(r.udpPort, 'api', '+noedns')).status, 'NOERROR', 'plain DNS without EDNS');
  t.equal((await dig(r.udpPort, 'api', '+opcode=notify')).status, 'NOTIMP', 'opcodes other than QUERY');
  t.equal((await dig(r.udpPort, 'api', '+edns=1', '+noednsnegotiation')).status, 'BADVERS', 'EDNS version 1');
  t.equal(r.metrics.total('notimp'), 1);
});

t.test('flags and their env twins give the options', async (t) => {
  const { values } = parseFlags([...dnsFlags], ['--dns-port', '5353', '--dns-names', 'api=127.0.0.2,*.example.internal=127.0.0.4'], {
    SHOAL_DNS_UPSTREAM: '10.96.0.10, 10.96.0.11:5353',
    SHOAL_CLUSTER_DOMAIN: 'corp.local',
  });
  const o = dnsOptionsFromFlags(values);
  t.match(o, {
    host: '127.0.0.1',
    port: 5353,
    upstreams: ['10.96.0.10', '10.96.0.11:5353'],
    clusterDomain: 'corp.local',
    ttl: 5,
    cacheSize: 10000,
    upstreamTimeoutMs: 2000,
    allowRemote: false,
    names: [
      { name: 'api', address: '127.0.0.2' },
      { name: '*.example.internal', address: '127.0.0.4' },
    ],
  });
  t.throws(() => parseStaticNames(['api']), /expected name=address/);
  const r = await withResponder(t, { ...o, port: 0, upstreams: [] });
  t.same((await dig(r.udpPort, 'x.example.internal')).answers, ['x.example.internal. 5 IN A 127.0.0.4'], '--dns-names answer');
  await t.rejects(
    startDnsResponder({ host: '127.0.0.1', port: 0, upstreams: [], ttl: -1, log: createLogger('dns', 'silent') }),
    /invalid dns option ttl=-1/,
  );
});

t.test('an upstream that is the responder itself is refused at start', async (t) => {
  const log = createLogger('dns', 'silent');
  await t.rejects(startDnsResponder({ host: '127.0.0.1', port: 5399, upstreams: ['127.0.0.1:5399'], log }), /is this responder itself/);
  await t.rejects(startDnsResponder({ host: '0.0.0.0', port: 5398, upstreams: ['127.0.0.53:5398'], log }), /is this responder itself/);
  await t.rejects(startDnsResponder({ host: '127.0.0.1', port: 0, upstreams: ['dns.example'], log }), /invalid DNS upstream "dns.example"/);
  // Port 0: the check runs again once the real port is known.
  const first = await withResponder(t, {});
  await t.rejects(
    startDnsResponder({ host: '127.0.0.1', port: first.udpPort, upstreams: [`127.0.0.1:${first.udpPort}`], log }),
    /is this responder itself/,
  );
  const other = await withResponder(t, { upstreams: [`127.0.0.1:${first.udpPort}`] });
  t.not(other.udpPort, first.udpPort, 'another responder as upstream is fine');
  t.equal(rcodeOf(await udpQuery(other.udpPort, { questions: [{ type: 'A', name: 'x.test' }] })), 5, 'chained: the first one refuses');
});
