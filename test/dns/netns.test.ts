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
    t.test('getent ahosts (glibc) resolves the local names through resolv.conf', { skip: why }, () => {});
  }
} else {
  t.test('getent ahosts (glibc) resolves the local names through resolv.conf', async (t) => {
    const ns = `shoal-dnstest-${randomBytes(4).toString('hex')}`;
    const etc = join('/etc/netns', ns);
    const children: ReturnType<typeof spawn>[] = [];
    const cleanup = () => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
      rmSync(etc, { recursive: true, force: true });
    };
    // Also on a crash of this process: the namespace and its /etc folder never stay behind.
    process.once('exit', cleanup);
    t.teardown(cleanup);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    mkdirSync(etc, { recursive: true });
    const podResolv =
      'nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:1\n';
    writeFileSync(join(etc, 'resolv.conf'), podResolv);

    const startInNs = (...args: string[]) => {
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, join(here, 'netnsResponder.ts'), ...args], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      return new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (c) => {
          out += c;
          if (/ready [0-9]+/.test(out)) resolve();
        });
        child.once('exit', (code) => reject(new Error(`responder in ${ns} exited ${code}: ${out}`)));
        setTimeout(() => reject(new Error(`responder in ${ns} not ready after 15 s: ${out}`)), 15_000).unref();
      });
    };
    await startInNs();

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

  t.test('listening on 0.0.0.0 it still answers only loopback clients', async (t) => {
    const ns = `shoal-dnstest-${randomBytes(4).toString('hex')}`;
    const children: ReturnType<typeof spawn>[] = [];
    const cleanup = () => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    };
    process.once('exit', cleanup);
    t.teardown(cleanup);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    // A non-loopback address that exists only inside this namespace.
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', '10.253.0.1/32', 'dev', 'lo']);
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, join(here, 'netnsResponder.ts'), '0.0.0.0', '5300'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c) => {
        out += c;
        if (out.includes('ready 5300')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`responder in ${ns} exited ${code}: ${out}`)));
      setTimeout(() => reject(new Error(`responder in ${ns} not ready after 15 s: ${out}`)), 15_000).unref();
    });
    const digIn = (...args: string[]) =>
      new Promise<string>((resolve) => {
        execFile('ip', ['netns', 'exec', ns, 'dig', '-p', '5300', '+time=1', '+tries=1', ...args], (_err, stdout) => resolve(stdout));
      });
    t.match(await digIn('@127.0.0.1', 'api'), /status: NOERROR[\s\S]*127\.0\.0\.2/, 'loopback client answered');
    t.match(
      await digIn('@10.253.0.1', '-b', '10.253.0.1', 'api'),
      /timed out|no servers could be reached/,
      'a client from 10.253.0.1 gets nothing',
    );
    t.match(
      await digIn('@10.253.0.1', '-b', '10.253.0.1', '+tcp', 'api'),
      /connection reset|end of file|timed out|no servers|communications error/i,
      'nor over TCP',
    );
  });
}
