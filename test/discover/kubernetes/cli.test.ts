// The real command: `shoal discover --kubernetes --kubeconfig FILE` as a process, `shoal get`
// against it with a token file, SIGTERM, and usage errors.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { call, endpointsOf, execCli, fakeCluster, OPERATOR_TOKEN, runCli, seedWebAndApi, sidecarToken, stopCli, until } from './harness.ts';

t.test('shoal discover --kubernetes --kubeconfig FILE: serves, shoal get reads it with a token, SIGTERM stops it cleanly', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const r = runCli(['discover', '--kubernetes', '--kubeconfig', env.kubeconfig, '--host', '127.0.0.1', '--port', '0', '--write-token', OPERATOR_TOKEN, '--stale-after', '30']);
  t.teardown(() => stopCli(r));
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
  const got = await execCli(['get', 'default/web', '--discover', base, '--token-file', tokenFile]);
  t.match(got.stdout, /APP default\/web/);
  t.match(got.stdout, /api\.default:8080\s+http\s+\S+\s+10\.0\.0\.1:8080 10\.0\.0\.2:8080 10\.0\.0\.3:8080/, 'shoal get lists the endpoints');
  const denied = await execCli(['get', 'default/web', '--discover', base]).catch((e: { code: number; stderr: string }) => e);
  t.equal((denied as { code: number }).code, 1, 'shoal get without a token fails');
  t.match((denied as { stderr: string }).stderr, /wants a token/);

  t.equal(await stopCli(r), 0, 'SIGTERM: exit 0');
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
  const results = await Promise.all(cases.map(([args]) => execCli([...args]).catch((e: { code: number; stderr: string }) => e)));
  cases.forEach(([args, pattern], i) => {
    const r = results[i] as { code: number; stderr: string };
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, pattern);
  });
});

