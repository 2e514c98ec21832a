// The webhook's HTTPS server: what it refuses (400, 404, 405, 413), what it passes through, and the
// certificate reload a rotation relies on.
import t from 'tap';
import { copyFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { startWebhook } from '../../../discover/webhook/webhookServer.ts';
import { webhookFlags, webhookOptionsFromFlags } from '../../../discover/webhook/webhookFlags.ts';
import { parseFlags, type FlagSpec } from '../../../shared/flags.ts';
import { injectorConfig, issueServerCert, makeCerts, review, send, startTestWebhook } from './fixtures.ts';

t.test('malformed requests get 4xx and a reason', async (t) => {
  const w = await startTestWebhook({ bodyLimitBytes: 64 * 1024 });
  t.teardown(() => w.close());
  const { port } = w.webhook;
  const { ca } = w.certs;

  const notJson = await send(port, ca, undefined, { raw: '{"apiVersion": ' });
  t.equal(notJson.status, 400);
  t.match(notJson.body.message, /not JSON/);

  const v1beta1 = review({ kind: 'Pod', metadata: {}, spec: { containers: [] } });
  v1beta1.apiVersion = 'admission.k8s.io/v1beta1';
  const old = await send(port, ca, v1beta1);
  t.equal(old.status, 400);
  t.match(old.body.message, /apiVersion must be admission\.k8s\.io\/v1/);

  const noUid = review({ kind: 'Pod', metadata: {}, spec: { containers: [] } });
  delete noUid.request.uid;
  const r = await send(port, ca, noUid);
  t.equal(r.status, 400);
  t.match(r.body.message, /request\.uid/);

  const noObject = review({ kind: 'Pod' });
  delete noObject.request.object;
  t.equal((await send(port, ca, noObject)).status, 400, 'CREATE without an object');

  t.equal((await send(port, ca, [1, 2])).status, 400, 'not an object');
  t.equal((await send(port, ca, undefined, { method: 'GET' })).status, 405, 'GET /inject');
  t.equal((await send(port, ca, {}, { path: '/mutate' })).status, 404, 'other paths');
  const big = await send(port, ca, undefined, { raw: `{"pad":"${'x'.repeat(70 * 1024)}"}` });
  t.equal(big.status, 413, 'over the body limit');
  const health = await send(port, ca, undefined, { method: 'GET', path: '/healthz' });
  t.equal(health.status, 200);

  const cm = review(
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: {} },
    { kind: 'ConfigMap', resource: 'configmaps' },
  );
  const ignored = await send(port, ca, cm);
  t.equal(ignored.status, 200, 'other kinds are allowed untouched');
  t.same(ignored.body.response, { uid: cm.request.uid, allowed: true });

  const del = review({ kind: 'Pod' }, { operation: 'DELETE' });
  delete del.request.object;
  const delRes = await send(port, ca, del);
  t.equal(delRes.status, 200);
  t.equal(delRes.body.response.patch, undefined, 'a DELETE gets no patch');

  const weird = review({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: 'nope' } });
  const weirdRes = await send(port, ca, weird);
  t.equal(weirdRes.status, 200, 'a pod the injector cannot read is still admitted');
  t.equal(weirdRes.body.response.allowed, true);
  t.equal(weirdRes.body.response.patch, undefined);
});

t.test('refuses to start without a usable certificate or settings', async (t) => {
  const certs = makeCerts();
  t.teardown(() => certs.cleanup());
  const log = pino({ level: 'silent' });
  await t.rejects(
    startWebhook({
      port: 0,
      host: '127.0.0.1',
      certFile: join(certs.dir, 'missing.crt'),
      keyFile: certs.keyFile,
      injector: injectorConfig,
      log,
    }),
    /ENOENT/,
  );
  await t.rejects(
    startWebhook({
      port: 0,
      host: '127.0.0.1',
      certFile: certs.certFile,
      keyFile: join(certs.dir, 'ca.key'),
      injector: injectorConfig,
      log,
    }),
    /mismatch|key values/i,
    'a key that does not match the certificate',
  );
  await t.rejects(
    startWebhook({
      port: 0,
      host: '127.0.0.1',
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      injector: { ...injectorConfig, dnsUpstream: '' },
      log,
    }),
    /--dns-upstream/,
  );
  await t.rejects(
    startWebhook({
      port: 0,
      host: '127.0.0.1',
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      injector: { ...injectorConfig, sidecarImage: '' },
      log,
    }),
    /--sidecar-image/,
  );
  await t.rejects(
    startWebhook({
      port: 0,
      host: '127.0.0.1',
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      injector: { ...injectorConfig, dnsUpstream: 'kube-dns.kube-system' },
      log,
    }),
    /not an IP address/,
    'a nameserver must be an IP',
  );
  await t.rejects(
    startWebhook({
      port: 0,
      host: '127.0.0.1',
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      injector: { ...injectorConfig, proxyMemoryLimit: 'lots' },
      log,
    }),
    /--proxy-memory-limit "lots" is not a Kubernetes quantity/,
  );
});

t.test('a rotated certificate is served without a restart; a half-rotated pair is not', async (t) => {
  const w = await startTestWebhook({ certPollIntervalMs: 50 });
  t.teardown(() => w.close());
  const { port } = w.webhook;
  const { ca, dir } = w.certs;
  const pod = review({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }, { kind: 'ConfigMap' });
  const before = (await send(port, ca, pod)).peerFingerprint;

  issueServerCert(dir, 'next');
  // Half a rotation: the new certificate beside the old key. The old pair keeps serving.
  copyFileSync(join(dir, 'next.crt'), join(dir, 'tls.crt.tmp'));
  renameSync(join(dir, 'tls.crt.tmp'), join(dir, 'tls.crt'));
  await sleep(300);
  const half = await send(port, ca, pod);
  t.equal(half.status, 200, 'still serving mid-rotation');
  t.equal(half.peerFingerprint, before, 'the old certificate until the key matches');

  copyFileSync(join(dir, 'next.key'), join(dir, 'tls.key.tmp'));
  renameSync(join(dir, 'tls.key.tmp'), join(dir, 'tls.key'));
  let after = before;
  for (let i = 0; i < 100 && after === before; i++) {
    await sleep(50);
    after = (await send(port, ca, pod)).peerFingerprint;
  }
  t.not(after, before, 'the new certificate is served');
});

t.test('flags and their SHOAL_* twins give the webhook options', async (t) => {
  const discoverOwn: FlagSpec[] = [
    { name: 'cluster-domain', type: 'string', default: 'cluster.local', description: '' },
    { name: 'token-audience', type: 'string', default: 'shoal', description: '' },
    { name: 'host', type: 'string', default: '0.0.0.0', description: '' },
  ];
  const { values } = parseFlags(
    [...discoverOwn, ...webhookFlags],
    ['--webhook', '--sidecar-image=ghcr.io/x/shoal:1', '--legacy-sidecar', '--cluster-domain=corp.local'],
    { SHOAL_DNS_UPSTREAM: '10.0.0.10', SHOAL_PROXY_CPU: '50m' },
  );
  t.equal(values.webhook, true);
  const o = webhookOptionsFromFlags(values);
  t.equal(o.port, 6443, 'port 6443 by default');
  t.equal(o.certFile, '/etc/shoal/webhook/tls.crt');
  t.equal(o.injector.sidecarImage, 'ghcr.io/x/shoal:1');
  t.equal(o.injector.dnsUpstream, '10.0.0.10', 'env twin');
  t.equal(o.injector.proxyCpu, '50m');
  t.equal(o.injector.proxyMemory, '64Mi');
  t.equal(o.injector.proxyCpuLimit, '', 'no CPU limit by default');
  t.equal(o.injector.clusterDomain, 'corp.local', "discover's --cluster-domain");
  t.equal(o.injector.tokenAudience, 'shoal');
  t.equal(o.injector.legacySidecar, true);
  t.equal(o.injector.appKeepsPortNames, false);
  t.equal(o.injector.discoverUrl, 'http://shoal-discover.shoal.svc:6100');
  t.throws(() => webhookOptionsFromFlags({ ...values, 'sidecar-image-pull-policy': 'Sometimes' }), /sidecar-image-pull-policy/);
  t.equal(o.injector.otlpEndpoint, '', 'no tracing by default');
  const traced = webhookOptionsFromFlags({ ...values, 'sidecar-otlp-endpoint': 'http://otel:4318', 'sidecar-trace-sample-ratio': '0.05' });
  t.same([traced.injector.otlpEndpoint, traced.injector.traceSampleRatio], ['http://otel:4318', '0.05']);
  t.throws(
    () => webhookOptionsFromFlags({ ...values, 'sidecar-otlp-endpoint': 'otel:4318' }),
    /invalid --sidecar-otlp-endpoint: .*http:\/\/ or https:\/\/ URL/,
    'a collector that is not a URL stops discover, naming the flag',
  );
  t.throws(
    () => webhookOptionsFromFlags({ ...values, 'sidecar-otlp-endpoint': 'http://otel:4318', 'sidecar-trace-sample-ratio': '5%' }),
    /invalid --sidecar-trace-sample-ratio: .*0 to 1/,
  );
  t.throws(
    () => webhookOptionsFromFlags({ ...values, 'sidecar-trace-sample-ratio': '0.5' }),
    /needs --sidecar-otlp-endpoint/,
    'a ratio without a collector is a mistake, said so',
  );
});
