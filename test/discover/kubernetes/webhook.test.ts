// `shoal discover --kubernetes --webhook` as a process: the injection webhook fed by the cluster's
// mesh configs (plugin env, listen ports) and recording Events through the API.
import t from 'tap';
import { meshConfigMap } from '../../lib/fakeKubeApi.ts';
import { makeCerts, patched, review, send } from '../webhook/fixtures.ts';
import { fakeCluster, OPERATOR_TOKEN, runCli, seedWebAndApi, stopCli, until } from './harness.ts';

t.test('shoal discover --kubernetes --webhook: one AdmissionReview over HTTPS, with the app\'s mesh config and an event on the pod', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api, 'shop');
  env.api.apply(meshConfigMap('shop', 'web', 'mesh', {
    base_ports: [{ port: 8080, listen_port: 65399, protocol: 'http' }],
    base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }],
    base_normal: { options: { LOG_FORMAT: 'json' } },
  }));
  const certs = makeCerts();
  t.teardown(() => certs.cleanup());
  const r = runCli(['discover', '--kubernetes', '--kubeconfig', env.kubeconfig, '--host', '127.0.0.1', '--port', '0', '--write-token', OPERATOR_TOKEN,
    '--webhook', '--webhook-port', '0', '--webhook-cert', certs.certFile, '--webhook-key', certs.keyFile,
    '--sidecar-image', 'ghcr.io/shoal-mesh/shoal:test', '--dns-upstream', '10.96.0.10']);
  t.teardown(() => stopCli(r));
  const webhookPort = (await r.line('webhook listening')).port as number;
  await r.line('first full state loaded: ready');

  const pod = {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { generateName: 'web-7d9f-', namespace: 'shop', labels: { app: 'web' }, annotations: { 'shoal.dev/proxy-cpu': 'lots' } },
    spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
  };
  const res = await send(webhookPort, certs.ca, review(pod, { namespace: 'shop' }));
  t.equal(res.status, 200);
  t.equal(res.body.response.allowed, true);
  const out = patched(pod, res.body.response);
  const sidecar = [...(out.spec.initContainers ?? []), ...out.spec.containers].find((c: { name: string }) => c.name !== 'web');
  t.ok(sidecar, 'a sidecar was injected');
  const envOf = Object.fromEntries((sidecar.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value]));
  t.equal(envOf.LOG_FORMAT, 'json', 'base_normal options reach the sidecar as env vars');
  t.equal(envOf.SERVICE_ALIAS, 'web');
  t.ok((sidecar.ports ?? []).some((p: { containerPort: number }) => p.containerPort === 65399), 'the listen_port of the mesh config is the sidecar\'s port');
  t.match(JSON.stringify(res.body.response.warnings), /proxy-cpu/, 'the bad annotation is a warning');
  await until('the event in the API', () => env.api.list('Event', 'shop').length > 0, 5000);
  const [event] = env.api.list('Event', 'shop');
  t.equal(event.reason, 'ShoalBadAnnotation');
  t.equal(event.involvedObject.kind, 'Pod');
  t.equal(event.involvedObject.name, 'web-7d9f-');
  t.match(event.message, /proxy-cpu="lots"/);
  t.equal(await stopCli(r), 0);
});
