// The README's first command, driven as a user drives it: `shoal demo`, then curl and dig against
// what it prints, an edit of the topology file, and Ctrl-C.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLI = new URL('../cli.ts', import.meta.url).pathname;

async function curl(url: string): Promise<string> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '3', url]);
  return stdout;
}

t.test('shoal demo: sidecar balances api, DNS answers its names, an edit is pushed, SIGINT stops it', async (t) => {
  // Port 0 for discover, admin and DNS; the workloads and the outbound listeners keep their fixed loopbacks.
  const child = spawn(process.execPath, [CLI, 'demo', '--discover-port', '0', '--admin-port', '0', '--dns-port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes('Ctrl-C stops everything') && Date.now() < deadline && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 50));
  t.match(out, /shoal demo is running/, `demo started (stderr: ${err.slice(0, 500)})`);
  const discover = /discover\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  const admin = /admin (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  const dnsPort = /DNS 127\.0\.0\.1:(\d+)/.exec(out)?.[1];
  const topology = /topology: ([^;]+);/.exec(out)?.[1];
  t.ok(discover && admin && dnsPort && topology, 'the banner names discover, admin, DNS port and topology file');
  if (!discover || !admin || !dnsPort || !topology) return;

  // Round robin over api-1..3 through the sidecar's outbound listener.
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) seen.push(await curl('http://127.0.0.2:8080/'));
  t.same(new Set(seen), new Set(['api-1', 'api-2', 'api-3']), 'all three api endpoints answer');
  t.equal(seen.filter((s) => s === seen[0]).length, 2, 'round robin: each endpoint twice in six requests');

  // DNS: every form of the name, answered authoritatively with the dependency's loopback.
  for (const name of ['api', 'api.default', 'api.default.svc', 'API.default.svc.cluster.local.']) {
    const { stdout } = await run('dig', ['@127.0.0.1', '-p', dnsPort, '+tries=1', '+time=2', name, 'A']);
    t.match(stdout, /status: NOERROR/, `${name}: NOERROR`);
    t.match(stdout, /flags: qr aa/, `${name}: authoritative`);
    t.match(stdout, /\sIN\s+A\s+127\.0\.0\.2\b/, `${name} -> 127.0.0.2`);
  }
  const cache = await run('dig', ['@127.0.0.1', '-p', dnsPort, '+short', 'cache.default.svc.cluster.local']);
  t.equal(cache.stdout.trim(), '127.0.0.3');

  // Inbound: the sidecar's listen port reaches the app; TCP dependency over L4.
  t.equal(await curl('http://127.0.0.1:65400/'), 'web');
  const tcp = await run('curl', ['-s', '--max-time', '1', 'telnet://127.0.0.3:6379']).catch((e: { stdout: string }) => e);
  t.match(tcp.stdout, /^cache-[12]\n$/);
  t.equal((await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `${admin}/ready`])).stdout, '200');

  // Edit the topology: api-3 leaves; the sidecar stops sending to it within a second.
  writeFileSync(topology, readFileSync(topology, 'utf8').replace(', 127.0.10.3:8080]', ']'));
  const until = Date.now() + 5000;
  let after: string[] = [];
  while (Date.now() < until) {
    after = [];
    for (let i = 0; i < 6; i++) after.push(await curl('http://127.0.0.2:8080/'));
    if (!after.includes('api-3')) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.same(new Set(after), new Set(['api-1', 'api-2']), 'after the edit only api-1 and api-2 answer');

  child.kill('SIGINT');
  t.equal(await exited, 0, 'Ctrl-C stops the demo cleanly');
  await t.rejects(curl('http://127.0.0.2:8080/'), 'nothing listens after the demo stopped');
});
