// The Service half of the webhook over HTTPS: numeric targetPorts move to the sidecars' listen ports
// (the same rule the pod injector uses); named ones are left alone.
import t from 'tap';
import { Service } from 'kubernetes-models/v1';
import { preferredListenPort } from '../../../shared/loopbackAndListenPorts.ts';
import { decodePatch, patched, review, send, startTestWebhook } from './fixtures.ts';

function service(name: string, ports: any[], extra: any = {}): any {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'shop', labels: { 'app.kubernetes.io/name': name }, ...(extra.metadata ?? {}) },
    spec: {
      type: 'ClusterIP',
      selector: { 'app.kubernetes.io/name': name },
      ports,
      sessionAffinity: 'None',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
      ...(extra.spec ?? {}),
    },
  };
}

t.test('Services through the webhook', async (t) => {
  const w = await startTestWebhook();
  t.teardown(() => w.close());
  const admitService = async (svc: any, operation = 'CREATE') => {
    const req = review(svc, { kind: 'Service', operation, name: svc.metadata.name });
    const res = await send(w.webhook.port, w.certs.ca, req);
    t.equal(res.status, 200);
    t.equal(res.body.response.uid, req.request.uid);
    t.equal(res.body.response.allowed, true);
    return res.body.response;
  };

  t.test('numeric targetPort: rewritten to the listen port, origin labelled', async (t) => {
    const svc = service('checkout', [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
      { name: 'admin', port: 9090, protocol: 'TCP' },
      { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
    ]);
    const response = await admitService(svc);
    t.equal(response.patchType, 'JSONPatch');
    const out = patched(svc, response);
    t.doesNotThrow(() => new Service(out).validate(), 'the patched Service validates against the Kubernetes schema');
    t.equal(out.spec.ports[0].targetPort, 65380);
    t.equal(out.spec.ports[0].targetPort, preferredListenPort(8080), 'the shared rule');
    t.equal(out.spec.ports[0].port, 80, 'the Service port is unchanged');
    t.equal(out.spec.ports[1].targetPort, 65390, 'an absent targetPort means port: rewritten too');
    t.equal(out.spec.ports[2].targetPort, 5353, 'UDP untouched');
    t.equal(out.metadata.labels.origin_port, '8080_9090');
    t.equal(out.metadata.labels['app.kubernetes.io/name'], 'checkout', 'existing labels kept');
    t.same(JSON.parse(out.metadata.annotations['shoal.dev/port-map']), { 8080: 65380, 9090: 65390 });
    t.ok(
      decodePatch(response).some((o: any) => o.path === '/metadata/annotations'),
      'annotations created when absent',
    );
    t.match(response.warnings, [/8080->65380.*without a sidecar refuse/], 'the warning says what happens to unmeshed pods');

    const again = await admitService(out, 'UPDATE');
    t.equal(again.patch, undefined, 'submitting the result again changes nothing');
  });

  t.test('kubectl apply after a rewrite: the original number comes back and is rewritten again', async (t) => {
    const svc = service('checkout', [
      { name: 'http', port: 80, targetPort: 8080 },
      { name: 'grpc', port: 9000, targetPort: 65301 },
    ]);
    svc.metadata.labels.origin_port = '8080';
    svc.metadata.annotations = { 'shoal.dev/port-map': '{"8080":65380,"9001":65301}' };
    const out = patched(svc, await admitService(svc, 'UPDATE'));
    t.equal(out.spec.ports[0].targetPort, 65380);
    t.equal(out.spec.ports[1].targetPort, 65301, 'a listen port is left alone');
    t.same(JSON.parse(out.metadata.annotations['shoal.dev/port-map']), { 8080: 65380, 9001: 65301 });
    t.equal(out.metadata.labels.origin_port, '8080_9001');
  });

  t.test('numeric targets that share a preferred listen port probe to the next one', async (t) => {
    const svc = service('pair', [
      { name: 'a', port: 8080, targetPort: 8080 },
      { name: 'b', port: 9080, targetPort: 9080 },
    ]);
    const out = patched(svc, await admitService(svc));
    t.same(
      out.spec.ports.map((p: any) => p.targetPort),
      [65380, 65381],
    );
  });

  t.test('named targetPort: nothing to rewrite', async (t) => {
    const svc = service('catalog', [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
    const response = await admitService(svc);
    t.equal(response.patch, undefined, "no patch: the sidecar's port carries the name");
    t.equal(response.warnings, undefined);
  });

  t.test("headless, selectorless, opted-out and shoal's own Services are left alone", async (t) => {
    const ports = [{ name: 'http', port: 80, targetPort: 8080 }];
    t.equal((await admitService(service('db', ports, { spec: { clusterIP: 'None' } }))).patch, undefined, 'headless');
    t.equal((await admitService(service('external', ports, { spec: { selector: undefined } }))).patch, undefined, 'no selector');
    t.equal(
      (await admitService(service('legacy', ports, { metadata: { annotations: { 'shoal.dev/inject': 'false' } } }))).patch,
      undefined,
      'opted out',
    );
    t.equal(
      (await admitService(service('shoal-discover', ports, { metadata: { labels: { 'app.kubernetes.io/part-of': 'shoal' } } }))).patch,
      undefined,
      "shoal's own",
    );
    t.equal(
      (
        await admitService(
          service('ext', [{ name: 'x', port: 443 }], {
            spec: { type: 'ExternalName', externalName: 'api.example.com', selector: undefined },
          }),
        )
      ).patch,
      undefined,
      'ExternalName',
    );
  });
});
