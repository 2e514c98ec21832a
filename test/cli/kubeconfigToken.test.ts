// Which bearer token `shoal get` takes from a kubeconfig (files only, no cluster: the reads through a
// real API server are in test/discover/kubernetes/access.test.ts): the context chosen, $KUBECONFIG's
// files merged, a tokenFile relative to its kubeconfig, an exec plugin, and the users it refuses.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeconfigToken } from '../../cli/kubeconfigToken.ts';
import { getCommand } from '../../cli/get.ts';

const dir = mkdtempSync(join(tmpdir(), 'shoal-kubeconfig-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const cluster = { name: 'c', cluster: { server: 'https://127.0.0.1:1' } };
function kubeconfig(name: string, users: Array<{ name: string; user: unknown }>, current: string): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [cluster],
      users,
      contexts: users.map((u) => ({ name: u.name, context: { cluster: 'c', user: u.name } })),
      'current-context': current,
    }),
  );
  return file;
}

mkdirSync(join(dir, 'sub'));
writeFileSync(join(dir, 'sub', 'token'), 'from-file\n');
const main = kubeconfig(
  'main',
  [
    { name: 'tok', user: { token: 'inline' } },
    { name: 'file', user: { tokenFile: 'sub/token' } },
    {
      name: 'exec',
      user: {
        exec: {
          apiVersion: 'client.authentication.k8s.io/v1',
          command: 'sh',
          args: ['-c', 'echo \'{"kind":"ExecCredential","status":{"token":"from-exec"}}\''],
        },
      },
    },
    {
      name: 'broken-exec',
      user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'sh', args: ['-c', 'echo login expired >&2; exit 1'] } },
    },
    { name: 'cert', user: { 'client-certificate-data': 'Y2VydA==', 'client-key-data': 'a2V5' } },
    { name: 'basic', user: { username: 'u', password: 'p' } },
    { name: 'imp', user: { token: 'x', as: 'admin' } },
  ],
  'tok',
);
const second = kubeconfig('second', [{ name: 'other', user: { token: 'second-file' } }], 'other');

t.test("the current context's user, or --context's: token, tokenFile (relative to the kubeconfig), exec plugin", async (t) => {
  t.equal((await kubeconfigToken({ file: main, context: '' })).token, 'inline', 'the current context');
  t.equal(
    (await kubeconfigToken({ file: main, context: 'file' })).token,
    'from-file',
    "tokenFile, read relative to the kubeconfig's folder",
  );
  const e = await kubeconfigToken({ file: main, context: 'exec' });
  t.equal(e.token, 'from-exec', "an exec plugin's token");
  t.match(e.where, /kubeconfig user "exec" \(context "exec" in .*main\)/, 'named for messages');
});

t.test(
  '$KUBECONFIG: its files merged, the first current-context wins; an unknown --context is named with the ones there are',
  async (t) => {
    const saved = process.env.KUBECONFIG;
    t.teardown(() => {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    });
    process.env.KUBECONFIG = `${main}:${second}`;
    t.equal((await kubeconfigToken({ file: '', context: '' })).token, 'inline');
    t.equal((await kubeconfigToken({ file: '', context: 'other' })).token, 'second-file', 'a context of the second file');
    await t.rejects(kubeconfigToken({ file: '', context: 'nope' }), /has no context "nope" \(it has: tok, file, exec, .*other\)/);
    process.env.KUBECONFIG = join(dir, 'missing');
    await t.rejects(kubeconfigToken({ file: '', context: '' }), /no file of \$KUBECONFIG .* exists/);
    await t.rejects(kubeconfigToken({ file: join(dir, 'missing'), context: '' }), /--kubeconfig ".*missing" does not exist/);
  },
);

t.test('users that cannot be sent refuse with why and what to do', async (t) => {
  await t.rejects(
    kubeconfigToken({ file: main, context: 'cert' }),
    /client certificate only, which discover cannot check: .*TLS handshake with the API server.*kubectl create token/,
  );
  await t.rejects(kubeconfigToken({ file: main, context: 'basic' }), /username and password.*kubectl create token/);
  await t.rejects(kubeconfigToken({ file: main, context: 'imp' }), /impersonates "admin"/);
  await t.rejects(
    kubeconfigToken({ file: main, context: 'broken-exec' }),
    /cannot get a token for kubeconfig user "broken-exec".*login expired/,
  );
});

t.test(
  "shoal get: --token with --kubeconfig is a usage error; the kubeconfig's token goes only to a discover that asks for one",
  async (t) => {
    await t.rejects(getCommand(['a/b'], { discover: 'http://127.0.0.1:1', output: 'json', token: 't', kubeconfig: main, context: '' }), {
      name: 'UsageError',
      message: /not both/,
    });
    const seen: string[] = [];
    let wantToken = false;
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization ?? '(none)');
      if (wantToken && !req.headers.authorization) {
        res
          .writeHead(401, { 'www-authenticate': 'Bearer' })
          .end(JSON.stringify({ error: 'unauthorized', message: 'a bearer token is required' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ namespace: 'a', app: 'b' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const saved = process.env.KUBECONFIG;
    t.teardown(() => {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    });
    process.env.KUBECONFIG = main;
    const get = () => getCommand(['a/b'], { discover: url, output: 'json', token: '', 'token-file': '', kubeconfig: '', context: '' });
    t.match(JSON.parse(await get()), { namespace: 'a', app: 'b' });
    t.same(seen, ['(none)'], 'a discover that asks for no token gets none');
    seen.length = 0;
    wantToken = true;
    await get();
    t.same(seen, ['(none)', 'Bearer inline'], "after a 401, the kubeconfig user's token");
  },
);
