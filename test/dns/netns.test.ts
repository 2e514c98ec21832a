// A glibc client: getent ahosts inside a network namespace whose resolv.conf names the
// responder on 127.0.0.1:53 there, as a pod's does.
import t from 'tap';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function netnsUsable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return null;
  } catch (err) {
    return `ip netns unavailable: ${(err as Error).message}`;
  }
}

function getent(ns: string, ...args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', ns, 'getent', 'ahosts', ...args], { timeout: 10_000 }, (err, stdout) => {
      resolve({ code: err ? Number((err as NodeJS.ErrnoException).code ?? 1) : 0, stdout });
    });
  });
}

const why = netnsUsable();
if (why !== null) {
  if (process.env.CI === 'true') {
    t.fail(`the glibc client test needs ip netns and root: ${why}`);
  } else {
    console.error(`\n!!! SKIPPING the glibc (getent) DNS test: ${why}. CI=true makes this a failure. !!!\n`);
    t.pass(`skipped: ${why}`);
  }
} else {
  t.test('getent ahosts (glibc) resolves the local names through resolv.conf', async (t) => {
    const ns = `shoal-dnstest-${randomBytes(4).toString('hex')}`;
    const etc = join('/etc/netns', ns);
    let child: ReturnType<typeof spawn> | null = null;
    const cleanup = () => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
      rmSync(etc, { recursive: true, force: true });
    };
    // Also on a crash of this process: the namespace and its /etc folder never stay behind.
    process.once('exit', cleanup);
    t.teardown(cleanup);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    mkdirSync(etc, { recursive: true });
    const podResolv = 'nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:1\n';
    writeFileSync(join(etc, 'resolv.conf'), podResolv);

    child = spawn('ip', ['netns', 'exec', ns, process.execPath, join(here, 'netnsResponder.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
    const spawned = child;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      spawned.stdout!.on('data', (c) => {
        out += c;
        if (out.includes('ready 53')) resolve();
      });
      spawned.once('exit', (code) => reject(new Error(`responder in ${ns} exited ${code}: ${out}`)));
    });

    const api = await getent(ns, 'api');
    t.equal(api.code, 0, 'getent found api');
    t.match(api.stdout, /^127\.0\.0\.2\s+STREAM/m, 'api -> 127.0.0.2 (via the search list)');
    t.notMatch(api.stdout, /:/, 'no IPv6 address: AAAA was an empty answer');
    const cache = await getent(ns, 'cache.default');
    t.match(cache.stdout, /^127\.0\.0\.3\s/m, 'cache.default -> 127.0.0.3');
    const missing = await getent(ns, 'nothing-here');
    t.equal(missing.code, 2, 'an unknown name is not found (exit 2)');

    // Without a search list glibc asks the single label itself.
    writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:2 attempts:1\n');
    const bare = await getent(ns, 'api');
    t.match(bare.stdout, /^127\.0\.0\.2\s+STREAM/m, 'bare api -> 127.0.0.2');
    const wildcard = await getent(ns, 'shop.example.internal');
    t.match(wildcard.stdout, /^127\.0\.0\.4\s/m, 'a Domains wildcard resolves too');
  });
}
