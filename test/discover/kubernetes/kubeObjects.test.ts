// Kubernetes objects to the model: ports one by one, conditions, duplicates, ExternalName, ConfigMaps.
import t from 'tap';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { appFromConfigMap, portProtocol, serviceModel } from '../../../discover/source/kubernetes/kubeObjects.ts';

const svc = (ports: Array<{ name?: string; port: number; appProtocol?: string }>, extra: Partial<V1Service['spec']> = {}): V1Service => ({
  metadata: { namespace: 'shop', name: 'api' },
  spec: { ports: ports.map((p) => ({ ...p, protocol: 'TCP' })), ...extra },
});

const slice = (name: string, ports: Array<{ name?: string; port: number }>, endpoints: V1EndpointSlice['endpoints']): V1EndpointSlice => ({
  metadata: { namespace: 'shop', name, labels: { 'kubernetes.io/service-name': 'api' } },
  addressType: 'IPv4',
  ports: ports.map((p) => ({ ...p, protocol: 'TCP' })),
  endpoints,
});

t.test('protocol from appProtocol, then the port name, else tcp', async (t) => {
  t.equal(portProtocol('kubernetes.io/h2c', 'web'), 'http2');
  t.equal(portProtocol(undefined, 'http-web'), 'http');
  t.equal(portProtocol(undefined, 'grpc'), 'grpc');
  t.equal(portProtocol('HTTP', undefined), 'http');
  t.equal(portProtocol(undefined, 'metrics'), 'tcp');
  t.equal(portProtocol(undefined, undefined), 'tcp');
});

t.test('multi-port Services map port by port, across slices, with conditions', async (t) => {
  const s = serviceModel(
    svc([
      { name: 'http', port: 80 },
      { name: 'admin', port: 9000 },
    ]),
    [
      slice(
        'api-a',
        [
          { name: 'http', port: 8080 },
          { name: 'admin', port: 9090 },
        ],
        [
          { addresses: ['10.0.0.1'], conditions: { ready: true } },
          { addresses: ['10.0.0.2'], conditions: {} },
        ],
      ),
      slice(
        'api-b',
        [
          { name: 'http', port: 8080 },
          { name: 'admin', port: 9090 },
        ],
        [
          { addresses: ['10.0.0.3'], conditions: { ready: false, serving: true, terminating: true }, zone: 'z1' },
          { addresses: ['10.0.0.1'], conditions: { ready: false } },
        ],
      ),
    ],
  );
  t.same(
    s.ports.map((p) => [p.name, p.port, p.protocol]),
    [
      ['http', 80, 'http'],
      ['admin', 9000, 'tcp'],
    ],
  );
  const http = s.endpoints.get(80)!;
  t.same(
    http.map((e) => `${e.address}:${e.port}`),
    ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080'],
    'service port 80 gets target 8080 only, a duplicate merged',
  );
  t.same(
    s.endpoints.get(9000)!.map((e) => e.port),
    [9090, 9090, 9090],
  );
  t.equal(http[0].ready, true, 'the ready copy of a duplicate wins');
  t.same(
    http[1],
    { address: '10.0.0.2', port: 8080, weight: 1, zone: '', ready: true, serving: true, terminating: false },
    'nil conditions mean true',
  );
  t.same(http[2], { address: '10.0.0.3', port: 8080, weight: 1, zone: 'z1', ready: false, serving: true, terminating: true });
});

t.test('IPv6 slices are skipped; ExternalName points at the name; the loopback pin annotation', async (t) => {
  const v6: V1EndpointSlice = { ...slice('v6', [{ port: 80 }], [{ addresses: ['fd00::1'] }]), addressType: 'IPv6' };
  t.same(serviceModel(svc([{ port: 80 }]), [v6]).endpoints.get(80), []);
  const ext = serviceModel(svc([{ port: 443, name: 'https' }], { type: 'ExternalName', externalName: 'db.example.com.' }), []);
  t.same(ext.endpoints.get(443), [
    { address: 'db.example.com', port: 443, weight: 1, zone: '', ready: true, serving: true, terminating: false },
  ]);
  const pinned = serviceModel(
    { ...svc([{ port: 80 }]), metadata: { namespace: 'shop', name: 'api', annotations: { 'shoal.dev/loopback-address': '127.0.0.9' } } },
    [],
  );
  t.equal(pinned.address, '127.0.0.9');
});

t.test('mesh ConfigMaps: good, bad JSON, bad option, bad label', async (t) => {
  const cm = (data: Record<string, string>, app = 'web') => ({
    metadata: { namespace: 'shop', name: 'mesh-web', labels: { 'shoal.dev/app': app, 'shoal.dev/plugin-id': 'p1' } },
    data,
  });
  const good = appFromConfigMap(cm({ 'plugin-config': JSON.stringify({ base_services: [{ depend_service_alias: 'api', port: 80 }] }) }));
  t.equal(good.error, null);
  t.equal(good.app?.pluginId, 'p1');
  t.equal(good.app?.config.dependencies[0].namespace, 'shop');
  t.match(appFromConfigMap(cm({ 'plugin-config': '{' })).error, /ConfigMap shop\/mesh-web: plugin-config is not JSON/);
  t.match(
    appFromConfigMap(
      cm({
        'plugin-config': JSON.stringify({ base_services: [{ depend_service_alias: 'api', port: 80, options: { MaxRequests: 'ten' } }] }),
      }),
    ).error,
    /ConfigMap shop\/mesh-web: app shop\/web, dependency api:80: invalid option MaxRequests="ten"/,
  );
  t.match(appFromConfigMap(cm({})).error, /data key plugin-config is missing/);
  t.match(appFromConfigMap(cm({ 'plugin-config': '{}' }, 'Web!')).error, /is not an app name/);
});
