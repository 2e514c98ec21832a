// The real command: `shoal discover --kubernetes --kubeconfig FILE` (and `--webhook`) as a process,
// `shoal get` against it, usage errors; and the in-cluster path (loadFromCluster, CA and token
// under a temporary prefix).
import t from 'tap';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { meshConfigMap } from '../../lib/fakeKubeApi.ts';
import { makeCerts, patched, review, send } from '../webhook/fixtures.ts';
import { call, endpointsOf, fakeCluster, OPERATOR_TOKEN, seedWebAndApi, sidecarToken, snapshot, startKubeDiscover, until } from './harness.ts';

const execFileAsync = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
const cli = join(root, 'cli.ts');

interface Running {
  child: ChildProcess;
  logs: Array<Record<string, any>>;
  stderr: string[];
  /** The first log line with this msg. */
  line(msg: string, ms?: number): Promise<Record<string, any>>;
}

function run(args: string[]): Running {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
  const logs: Array<Record<string, any>> = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try { logs.push(JSON.parse(l)); } catch { logs.push({ msg: l }); }
  });
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  return {
    child, logs, stderr,
    async line(msg, ms = 20_000) {
      await until(`log line "${msg}" (stderr: ${stderr.join(' | ')})`, () => logs.some((l) => l.msg === msg) || child.exitCode !== null, ms);
      const found = logs.find((l) => l.msg === msg);
      if (!found) throw new Error(`discover exited ${child.exitCode} before "${msg}": ${stderr.join('\n')}`);
      return found;
    },
  };
}

async function stop(r: Running): Promise<number | null> {
  if (r.child.exitCode !== null) return r.child.exitCode;
  const exited = once(r.child, 'exit');
  r.child.kill('SIGTERM');
  const [code] = await exited;
  return code as number | null;
}

t.test('shoal discover --kubernetes --kubeconfig FILE: serves, shoal get reads it with a token, SIGTERM stops it cleanly', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const r = run(['discover', '--kubernetes', '--kubeconfig', env.kubeconfig, '--host', '127.0.0.1', '--port', '0', '--write-token', OPERATOR_TOKEN, '--stale-after', '30']);
  t.teardown(() => stop(r));
  const port = (await r.line('discover listening')).port as number;
  const base = `http://127.0.0.1:${port}`;
  await r.line('first full state loaded: ready');
  t.equal((await call(base, 'GET', '/readyz')).status, 200, 'ready');
  const s = await call(base, 'GET', '/v2/snapshot/default/web', { token: sidecarToken(env.api, 'default', 'web') });
  t.equal(s.status, 200, 'a sidecar token of web reads web');
  t.same(endpointsOf(s.json as Snapshot, 'api.default:8080'), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  t.equal((await call(base, 'GET', '/v2/snapshot/default/web')).status, 401, 'no token: 401');

  const tokenFile = join(env.dir, 'operator-token');
  writeFileSync(tokenFile, `${OPERATOR_TOKEN}\n`);
  const got = await execFileAsync(process.execPath, [cli, 'get', 'default/web', '--discover', base, '--token-file', tokenFile]);
  t.match(got.stdout, /APP default\/web/);
  t.match(got.stdout, /api\.default:8080\s+http\s+\S+\s+10\.0\.0\.1:8080 10\.0\.0\.2:8080 10\.0\.0\.3:8080/, 'shoal get lists the endpoints');
  const denied = await execFileAsync(process.execPath, [cli, 'get', 'default/web', '--discover', base]).catch((e: { code: number; stderr: string }) => e);
  t.equal((denied as { code: number }).code, 1, 'shoal get without a token fails');
  t.match((denied as { stderr: string }).stderr, /wants a token/);

  t.equal(await stop(r), 0, 'SIGTERM: exit 0');
  t.same(r.logs.filter((l) => l.level >= 40 && !/stopping/.test(l.msg)).map((l) => l.msg), [], 'no warning or error logged, stop included');
  await until('the watches closed', () => env.api.watchCount() === 0, 5000);
});

t.test('usage errors: --webhook without --kubernetes, both token flags, an unreadable token file', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['discover', '--static', '/nonexistent.yaml', '--webhook'], /--webhook needs --kubernetes/],
    [['discover', '--kubernetes', '--write-token', 'a', '--write-token-file', '/etc/hostname'], /not both/],
    [['discover', '--kubernetes', '--write-token-file', '/nonexistent/token'], /cannot read --write-token-file/],
  ];
  // In parallel: each is a cold start of the CLI.
  const results = await Promise.all(cases.map(([args]) => execFileAsync(process.execPath, [cli, ...args]).catch((e: { code: number; stderr: string }) => e)));
  cases.forEach(([args, pattern], i) => {
    const r = results[i] as { code: number; stderr: string };
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, pattern);
  });
});

t.test('in-cluster: loadFromCluster with the service account\'s token, CA and namespace under a temporary prefix', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const token = 'in-cluster-token';
  env.api.addToken(token, { namespace: 'shoal', serviceAccount: 'shoal-discover-in-cluster' });
  const files = await env.api.writeInClusterFiles(env.dir, token, 'shoal');
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  Object.assign(process.env, files.env);
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const d = await startKubeDiscover(t, env, { kubernetes: { kubeconfigFile: undefined, inClusterPathPrefix: files.pathPrefix } });
  t.same(endpointsOf((await snapshot(d, 'default', 'web')).json as Snapshot, 'api.default:8080').length, 3, 'listed over HTTPS with the mounted CA');
  const users = new Set(env.api.requests({ path: /endpointslices|services|configmaps/ }).map((e) => e.user));
  t.same([...users], ['system:serviceaccount:shoal:shoal-discover-in-cluster'], 'every request carried the mounted token');
  t.equal((await snapshot(d, 'default', 'web', sidecarToken(env.api, 'default', 'web'))).status, 200, 'TokenReview works in-cluster too');
});

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
  const r = run(['discover', '--kubernetes', '--kubeconfig', env.kubeconfig, '--host', '127.0.0.1', '--port', '0', '--write-token', OPERATOR_TOKEN,
    '--webhook', '--webhook-port', '0', '--webhook-cert', certs.certFile, '--webhook-key', certs.keyFile,
    '--sidecar-image', 'ghcr.io/shoal-mesh/shoal:test', '--dns-upstream', '10.96.0.10']);
  t.teardown(() => stop(r));
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
  t.equal(await stop(r), 0);
});
