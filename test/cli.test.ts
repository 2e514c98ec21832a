// The shoal command as users run it: help, env twins, exit codes, shoal get.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TWO_APPS, withDiscover } from './lib/discover.ts';

const run = promisify(execFile);
const CLI = new URL('../cli.ts', import.meta.url).pathname;

async function shoal(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

t.test('help lists commands, and each command lists its flags with env twins', async (t) => {
  const top = await shoal(['--help']);
  t.equal(top.code, 0);
  for (const c of ['discover', 'proxy', 'dns', 'demo', 'get']) t.match(top.stdout, new RegExp(`\\n  ${c} `));
  const d = await shoal(['discover', '--help']);
  t.equal(d.code, 0);
  t.match(d.stdout, /--static <value>/);
  t.match(d.stdout, /env SHOAL_STATIC/);
  t.match(d.stdout, /--write-token <value>/);
  t.match(d.stdout, /env SHOAL_WRITE_TOKEN/);
  t.match(d.stdout, /--port <n>.*\(default: 6100\)/);
  const g = await shoal(['get', '--help']);
  t.match(g.stdout, /-o, --output <value>/);
  t.match(g.stdout, /env SHOAL_OUTPUT/);
  const unknown = await shoal(['nope']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "nope"/);
  const badFlag = await shoal(['discover', '--bogus']);
  t.equal(badFlag.code, 2);
  t.match(badFlag.stderr, /unknown flag --bogus/);
  const badPort = await shoal(['discover', '--static', 'x.yaml'], { SHOAL_PORT: 'abc' });
  t.equal(badPort.code, 2);
  t.match(badPort.stderr, /invalid SHOAL_PORT="abc": expected an integer/);
});

t.test('a topology with a bad option is refused at start: non-zero exit naming app, dependency and option', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-cli-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(
    file,
    TWO_APPS.replace(
      '{ depend_service_alias: api, port: 8080, protocol: http }',
      '{ depend_service_alias: api, port: 8080, protocol: http, options: { MaxRequests: ten } }',
    ),
  );
  const r = await shoal(['discover', '--static', file, '--port', '0', '--host', '127.0.0.1']);
  t.equal(r.code, 1);
  t.match(r.stderr, /invalid configuration: app default\/web, dependency api:8080: invalid option MaxRequests="ten": expected an integer/);
  const missing = await shoal(['discover', '--static', join(dir, 'none.yaml'), '--port', '0']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /ENOENT|no such file/);
  const noSource = await shoal(['discover']);
  t.equal(noSource.code, 2);
  t.match(noSource.stderr, /--static/);
});

t.test('shoal discover runs from env twins and stops cleanly on SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-cli-'));
  const file = join(dir, 'topo.yaml');
  writeFileSync(file, TWO_APPS);
  const child = spawn(process.execPath, [CLI, 'discover'], {
    env: { ...process.env, SHOAL_STATIC: file, SHOAL_PORT: '0', SHOAL_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listen line: ${out}`)), 15_000);
    child.stdout.on('data', () => {
      const m = /"port":([0-9]+),"msg":"discover listening"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.equal(res.status, 200);
  child.kill('SIGTERM');
  const code = await new Promise((r) => child.on('exit', (c) => r(c)));
  t.equal(code, 0, 'exit 0 after SIGTERM');
});

t.test('shoal get renders a table, JSON and YAML', async (t) => {
  const d = await withDiscover(t, TWO_APPS);
  const table = await shoal(['get', 'default/web', '--discover', d.url]);
  t.equal(table.code, 0);
  t.match(table.stdout, /APP default\/web/);
  t.match(table.stdout, /0\.0\.0\.0:65400\s+127\.0\.0\.1:8000\s+http/);
  t.match(table.stdout, /api\.default:8080\s+http\s+least_request\s+10\.0\.0\.1:8080 10\.0\.0\.2:8080 10\.0\.0\.3:8080/);
  t.match(table.stdout, /api api\.default api\.default\.svc api\.default\.svc\.cluster\.local/);
  const json = await shoal(['get', 'default/web', '-o', 'json'], { SHOAL_DISCOVER: d.url });
  t.equal(JSON.parse(json.stdout).app, 'web');
  const yaml = await shoal(['get', 'default/web', '-o=yaml', '--discover', d.url]);
  t.match(yaml.stdout, /^schemaVersion: 1$/m);
  const missing = await shoal(['get', 'default/nope', '--discover', d.url]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /has no app default\/nope/);
  const badArg = await shoal(['get', 'web']);
  t.equal(badArg.code, 2);
  const down = await shoal(['get', 'default/web', '--discover', 'http://127.0.0.1:1']);
  t.equal(down.code, 1);
  t.match(down.stderr, /cannot reach discover/);
});

t.test('shoal proxy: needs a discover URL; runs the sidecar with its DNS responder; SIGTERM drains and exits 0', async (t) => {
  const none = await shoal(['proxy', '--admin-port', '0', '--dns-port', '0'], { DISCOVER_URL: '', SHOAL_DISCOVER_URL: '' });
  t.equal(none.code, 1);
  t.match(none.stderr, /proxy needs --discover-url \(or DISCOVER_URL\)/);

  const d = await withDiscover(t, TWO_APPS);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-cli-proxy-'));
  const child = spawn(
    process.execPath,
    [
      CLI,
      'proxy',
      '--admin-host',
      '127.0.0.1',
      '--admin-port',
      '0',
      '--inbound-address',
      '127.0.0.1',
      '--dns-port',
      '0',
      '--state-file',
      join(dir, 'state.json'),
      '--drain-timeout',
      '1',
      '--log-level',
      'info',
    ],
    {
      env: { ...process.env, DISCOVER_URL: `${d.url}/v1/resources/default/worker/mesh` },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines: Array<Record<string, unknown>> = [];
  let buf = '';
  child.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line));
      } catch {
        /* not a log line */
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = Date.now() + 20_000;
  const find = (msg: string) => lines.find((l) => l.msg === msg);
  while (!(find('dns listening') && find('sidecar starting')) && Date.now() < until && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 50));
  const dnsPort = String(find('dns listening')?.port);
  const admin = String(find('sidecar starting')?.admin);
  t.match(admin, /^127\.0\.0\.1:\d+$/, 'admin address logged');
  t.match(dnsPort, /^\d+$/, 'DNS port logged');

  let ready = '';
  while (Date.now() < until && ready !== '200') {
    ready = (await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${admin}/ready`]).catch(() => ({ stdout: '' })))
      .stdout;
    if (ready !== '200') await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(ready, '200', 'ready once the first snapshot is applied');
  const snapshot = JSON.parse((await run('curl', ['-s', `${d.url}/v2/snapshot/default/worker`])).stdout) as {
    dns: Array<{ name: string; address: string }>;
  };
  const db = snapshot.dns.find((n) => n.name === 'db.default.svc.cluster.local');
  t.ok(db, 'the snapshot names db');
  const { stdout } = await run('dig', ['@127.0.0.1', '-p', dnsPort, '+short', '+tries=1', '+time=2', 'db']);
  t.equal(stdout.trim(), db?.address, "the hosted DNS responder answers the snapshot's names");
  t.ok(/^127\./.test(stdout.trim()) && stdout.trim() !== '127.0.0.1', 'a loopback address of its own');

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: drained and exited 0');
});
